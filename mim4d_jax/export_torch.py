"""`python -m mim4d_jax.export_torch`: entry point; the code is in mim4d_jax/interop/."""

import sys

from mim4d_jax.interop.export_torch import main

if __name__ == "__main__":
    sys.exit(main())
