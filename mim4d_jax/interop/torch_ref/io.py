"""Reading and writing PyTorch checkpoint files safely (.pth pickles and safetensors).

A `.pth` is a pickle, and unpickling can run arbitrary code: it is only ever opened with
`torch.load(..., weights_only=True)`, which refuses anything but tensors and plain containers.
"""

import json
import pathlib
import pickle
from collections.abc import Mapping
from typing import Any

import safetensors.torch
import torch

from mim4d_jax.atomic_files import atomic_path
from mim4d_jax.user_errors import BadInputError, OutputError

# Wrappers a state dict is commonly found under (mmcv: state_dict; official ConvNeXt: model).
WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model")


class UnsafeCheckpointError(BadInputError):
    """The file is a pickle that needs more than tensors to load (it could run code)."""

    default_hint = "re-save it as a plain state dict (torch.save(state_dict)) or safetensors"


def _damaged(path: pathlib.Path, kind: str, error: BaseException) -> BadInputError:
    lines = str(error).strip().splitlines()
    detail = lines[0][:300] if lines else type(error).__name__
    return BadInputError(
        f"{path} cannot be read as a {kind} file: it is truncated or damaged "
        f"({type(error).__name__}: {detail})",
        hint="download or export the file again",
    )


def is_safetensors(path: pathlib.Path) -> bool:
    """By content, not name: torch.save writes a zip (PK..) or, in legacy mode, a pickle (0x80);
    a safetensors file starts with its 8-byte header length followed by '{'."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and not head.startswith((b"PK", b"\x80"))


def read_state_dict(path: str | pathlib.Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Returns ({key: tensor}, meta) of a .pth or .safetensors file.

    The state dict may be bare or under a `state_dict`/`model` wrapper; a DataParallel
    `module.` prefix is stripped (as mmcv's loader does). `meta` is the checkpoint's `meta`
    dict (safetensors: the JSON in its `meta` metadata string), {} when absent.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise BadInputError(f"{path} does not exist or is not a file", hint="check the path")
    if is_safetensors(path):
        try:
            tensors = safetensors.torch.load_file(str(path))
            with safetensors.safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            meta = json.loads(metadata.get("meta", "{}"))
        except Exception as e:  # SafetensorError, JSON errors: the message names no file
            raise _damaged(path, "safetensors", e) from e
        return _strip_module(tensors), meta
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "truncated" in str(e) or "EOF" in str(e):
            raise _damaged(path, ".pth", e) from e
        raise UnsafeCheckpointError(
            f"{path} was refused: it is a pickle that needs code beyond tensors to load "
            f"(torch.load weights_only=True). Re-save it as a plain state dict or safetensors. "
            f"Detail: {str(e).splitlines()[0]}"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:  # a cut zip or pickle
        raise _damaged(path, ".pth", e) from e
    if not isinstance(obj, Mapping):
        raise BadInputError(f"{path} holds a {type(obj).__name__}, not a state dict")
    meta = obj.get("meta", {}) if isinstance(obj.get("meta"), Mapping) else {}
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    tensors = _strip_module(obj)
    bad = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise BadInputError(f"{path}: entries that are not tensors: {bad[:10]}")
    return tensors, dict(meta)


def _strip_module(tensors: Mapping[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("module."): v for k, v in tensors.items()}


def write_state_dict(
    path: str | pathlib.Path,
    tensors: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
    fmt: str = "pth",
) -> None:
    """`{'state_dict': ..., 'meta': ...}` as a .pth, or a flat safetensors file whose
    metadata holds the meta dict as one JSON string under `meta`.

    Written under a temporary name in the same folder, then renamed: an existing file is
    replaced whole or not at all. An unwritable place is an OutputError naming the path."""
    if fmt not in ("pth", "safetensors"):
        raise ValueError(f"unknown checkpoint format {fmt!r} (pth or safetensors)")
    path = pathlib.Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            if fmt == "safetensors":
                safetensors.torch.save_file(
                    dict(tensors), str(tmp), metadata={"meta": json.dumps(meta)}
                )
            else:
                torch.save({"state_dict": dict(tensors), "meta": dict(meta)}, str(tmp))
    except (OSError, RuntimeError) as e:  # torch's error for a read-only folder has no path
        raise OutputError(
            f"cannot write {path} ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})"
        ) from e
