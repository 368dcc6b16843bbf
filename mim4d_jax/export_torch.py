"""`python -m mim4d_jax.export_torch`: entry point; the code is in mim4d_jax/interop/."""

from mim4d_jax.interop.export_torch import cli

if __name__ == "__main__":
    cli()
