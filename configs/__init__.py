"""ml_collections config files: `get_config(arg=None)` in each; see README.md."""
