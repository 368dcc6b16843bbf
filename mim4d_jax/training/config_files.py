"""Loading big_vision-style config files outside absl (tests, evaluate, export).

A config file `configs/<name>.py` defines `get_config(arg=None) -> ml_collections.ConfigDict`.
`load_config("configs/x.py:variant", ["a.b=1"])` returns it locked, so an unknown key is an
error that names the key. The training CLI uses `ml_collections.config_flags` for the same
`--config=configs/x.py:variant --config.a.b=1` syntax.
"""

from __future__ import annotations

import ast
import importlib.util
import pathlib

import ml_collections


def load_config(
    spec: str, overrides: list[str] | tuple[str, ...] = ()
) -> ml_collections.ConfigDict:
    """Loads `path[:arg]`, applies `key=value` overrides and returns the locked config."""
    path_str, _, arg = spec.partition(":")
    path = pathlib.Path(path_str)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    config.lock()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"config override {item!r} is not of the form key=value")
        set_by_path(config, key, _parse_value(value))
    return config


def set_by_path(config: ml_collections.ConfigDict, key: str, value) -> None:
    """Sets a dotted key; raises KeyError naming the key when it does not exist."""
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
        if part not in node:
            raise KeyError(f"unknown config key {'.'.join(parents[: i + 1])!r} (in {key!r})")
        node = node[part]
    if leaf not in node:
        raise KeyError(f"unknown config key {key!r}")
    node[leaf] = value


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
