"""`python -m mim4d_jax.evaluate`: entry point; the code is in mim4d_jax/evaluation/."""

from mim4d_jax.evaluation.evaluate import cli

if __name__ == "__main__":
    cli()
