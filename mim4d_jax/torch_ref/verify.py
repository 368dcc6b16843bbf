"""`python -m mim4d_jax.torch_ref.verify`: entry point; the code is in
mim4d_jax/interop/torch_ref/verify.py."""

import sys

from mim4d_jax.interop.torch_ref.verify import main

if __name__ == "__main__":
    sys.exit(main())
