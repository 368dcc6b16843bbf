"""The one JAX <-> PyTorch name and layout table, shared by export_torch and import_torch.

The NNX attribute tree mirrors the reference module tree (docs/architecture.md), so a
PyTorch key is the dotted NNX path with three kinds of rewrite, all listed here:
- module prefixes that differ (PREFIX_RULES: mmdet's ConvModule `.conv` level, the renderer's
  `pts_bbox_head.render_model.field` home);
- leaf names (LEAF_NAMES: Flax `kernel`/`scale`/`mean`/`var`/`embedding`);
- layouts of kernels (KERNEL_PERMS by rank: Dense (in, out) -> (out, in), Conv2d HWIO -> OIHW,
  depthwise (7, 7, 1, C) -> (C, 1, 7, 7) by the same permutation, Conv3d DHWIO -> OIDHW).
Every BatchNorm (a module with `mean` and `var` batch stats) also gets `num_batches_tracked`.
"""

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

PREFIX_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # mmdet FPN wraps each conv in a ConvModule: lateral_convs.{i}.conv.weight.
    (
        re.compile(r"^img_neck\.(lateral_convs|fpn_convs)\.(\d+)\.(?!conv\.)"),
        r"img_neck.\1.\2.conv.",
    ),
    # The reference keeps the SDF field under its render head.
    (re.compile(r"^render_model\."), "pts_bbox_head.render_model.field."),
)
LEAF_NAMES: dict[str, str] = {
    "kernel": "weight",
    "scale": "weight",
    "embedding": "weight",
    "mean": "running_mean",
    "var": "running_var",
}
KERNEL_PERMS: dict[int, tuple[int, ...]] = {
    2: (1, 0),  # Dense (in, out) -> Linear (out, in)
    4: (3, 2, 0, 1),  # Conv2d (H, W, I, O) -> (O, I, H, W); depthwise I = 1
    5: (4, 3, 0, 1, 2),  # Conv3d (D, H, W, I, O) -> (O, I, D, H, W)
}
BN_COUNTER = "num_batches_tracked"
# Heads of the non-default pre-training objectives (built only when their weight is > 0):
# exported under their own prefixes, outside the reference layout, and listed in the report.
OBJECTIVE_HEAD_PREFIXES = ("croco_decoder.", "pc_head.")


def is_objective_head(key: str) -> bool:
    """A torch key (or its mmcv EMA copy `ema_<key with . -> _>`) of an objective head."""
    return any(
        key.startswith(p) or key.startswith("ema_" + p[:-1] + "_") for p in OBJECTIVE_HEAD_PREFIXES
    )


JaxPath = tuple[str, ...]


def torch_key(path: JaxPath) -> str:
    """Dotted PyTorch key of an NNX pure-dict path (keys as str; list indices as digits)."""
    *module, leaf = (str(p) for p in path)
    prefix = "".join(f"{m}." for m in module)
    for pattern, replacement in PREFIX_RULES:
        prefix = pattern.sub(replacement, prefix)
    return prefix + LEAF_NAMES.get(leaf, leaf)


def _perm(path: JaxPath, ndim: int) -> tuple[int, ...] | None:
    if str(path[-1]) != "kernel":
        return None
    if ndim not in KERNEL_PERMS:
        raise ValueError(
            f"no PyTorch layout for a rank-{ndim} kernel at {'.'.join(map(str, path))}"
        )
    return KERNEL_PERMS[ndim]


def torch_shape(path: JaxPath, shape: tuple[int, ...]) -> tuple[int, ...]:
    perm = _perm(path, len(shape))
    return tuple(shape) if perm is None else tuple(shape[i] for i in perm)


def to_torch_layout(path: JaxPath, array: Any) -> np.ndarray:
    """A new, writable, C-contiguous float32 array in the PyTorch layout (torch.from_numpy
    shares it without copying or warning; device arrays are read-only views)."""
    x = np.asarray(array, dtype=np.float32)
    perm = _perm(path, x.ndim)
    return np.array(x if perm is None else x.transpose(perm), order="C", copy=True)


def from_torch_layout(path: JaxPath, tensor: np.ndarray) -> np.ndarray:
    x = np.asarray(tensor, dtype=np.float32)
    perm = _perm(path, x.ndim)
    return x if perm is None else np.ascontiguousarray(x.transpose(np.argsort(perm)))


def flatten(tree: Mapping[Any, Any]) -> dict[JaxPath, Any]:
    """Nested pure dict -> {path of str: leaf}; int keys (NNX lists) and Orbax's str keys agree."""
    return {tuple(str(p) for p in path): leaf for path, leaf in _flatten_raw(tree)}


def to_state_dict(
    params: Mapping[Any, Any], batch_stats: Mapping[Any, Any], num_batches_tracked: int
) -> dict[str, np.ndarray]:
    """NNX pure dicts -> {torch key: float32 array in torch layout} (+ int64 BN counters)."""
    sd: dict[str, np.ndarray] = {}
    stats = flatten(batch_stats)
    for path, value in list(flatten(params).items()) + list(stats.items()):
        key = torch_key(path)
        if key in sd:
            raise ValueError(f"two JAX parameters map to the PyTorch key {key!r}")
        sd[key] = to_torch_layout(path, value)
    for path in stats:
        if path[-1] == "mean" and path[:-1] + ("var",) in stats:
            counter = torch_key(path[:-1] + (BN_COUNTER,))
            sd[counter] = np.asarray(num_batches_tracked, dtype=np.int64)
    return sd


@dataclasses.dataclass(frozen=True)
class KeyReport:
    """Differences between an expected and an actual {key: shape} set."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # key, expected, got
    objective_heads: tuple[str, ...] = ()  # exported beside the reference layout, not in it

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def format(self) -> str:
        heads = ""
        if self.objective_heads:
            prefixes = sorted({k.split(".")[0] for k in self.objective_heads if "." in k})
            heads = (
                f"; objective heads exported under {', '.join(p + '.*' for p in prefixes)} "
                f"({len(self.objective_heads)} tensors): " + ", ".join(self.objective_heads)
            )
        if self.ok:
            return "all keys and shapes match" + heads
        lines = [f"missing ({len(self.missing)}): {k}" for k in self.missing]
        lines += [f"unexpected ({len(self.unexpected)}): {k}" for k in self.unexpected]
        lines += [f"shape mismatch: {k} expected {e} got {g}" for k, e, g in self.mismatched]
        return "\n".join(lines) + heads


def compare(
    expected: Mapping[str, Iterable[int]], actual: Mapping[str, Iterable[int]]
) -> KeyReport:
    """Key and shape differences; objective-head keys of `actual` are listed apart (the
    reference layout has none of them)."""
    exp = {k: tuple(v) for k, v in expected.items()}
    act = {k: tuple(v) for k, v in actual.items() if k in exp or not is_objective_head(k)}
    return KeyReport(
        objective_heads=tuple(natural_sorted(k for k in actual if k not in act)),
        missing=tuple(natural_sorted(exp.keys() - act.keys())),
        unexpected=tuple(natural_sorted(act.keys() - exp.keys())),
        mismatched=tuple(
            (k, exp[k], act[k]) for k in natural_sorted(exp.keys() & act.keys()) if exp[k] != act[k]
        ),
    )


def natural_sorted(keys: Iterable[str]) -> list[str]:
    """stages.2.10 after stages.2.9 (digit runs compare as numbers)."""
    return sorted(keys, key=lambda k: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)])


def from_state_dict(
    tensors: Mapping[str, np.ndarray], expected: Mapping[Any, Any], prefix: str = ""
) -> tuple[dict[Any, Any], KeyReport]:
    """{torch key: array} -> nested pure dict shaped like `expected` (arrays or
    ShapeDtypeStructs; its key objects, e.g. int list indices, are kept), plus the key report.

    `prefix` is prepended to every expected torch key ("img_backbone." for a detector export).
    The returned dict is only complete when the report is ok.
    """
    by_key: dict[str, tuple[tuple[Any, ...], JaxPath, Any]] = {}
    for raw_path, leaf in _flatten_raw(expected):
        path = tuple(str(p) for p in raw_path)
        by_key[prefix + torch_key(path)] = (raw_path, path, leaf)
    report = compare(
        {k: torch_shape(path, tuple(leaf.shape)) for k, (_, path, leaf) in by_key.items()},
        {k: tuple(np.shape(v)) for k, v in tensors.items()},
    )
    out: dict[Any, Any] = {}
    bad = set(report.missing) | {k for k, _, _ in report.mismatched}
    for key, (raw_path, path, leaf) in by_key.items():
        if key in bad:
            continue
        node = out
        for part in raw_path[:-1]:
            node = node.setdefault(part, {})
        node[raw_path[-1]] = from_torch_layout(path, tensors[key]).astype(leaf.dtype)
    return out, report


def _flatten_raw(
    tree: Mapping[Any, Any], prefix: tuple[Any, ...] = ()
) -> list[tuple[tuple[Any, ...], Any]]:
    items: list[tuple[tuple[Any, ...], Any]] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            items.extend(_flatten_raw(value, prefix + (key,)))
        else:
            items.append((prefix + (key,), value))
    return items
