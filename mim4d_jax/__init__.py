"""mim4d_jax: MIM4D masked multi-view video pre-training for driving, in JAX/Flax NNX."""
