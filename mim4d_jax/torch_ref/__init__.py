"""Entry-point package for `python -m mim4d_jax.torch_ref.verify`; the PyTorch reference
modules live in mim4d_jax/interop/torch_ref/."""
