"""`python -m mim4d_jax.import_torch`: entry point; the code is in mim4d_jax/interop/."""

from mim4d_jax.interop.import_torch import cli

if __name__ == "__main__":
    cli()
