"""One conversion request: every option of a nuScenes -> TFRecord run, validated in one place.

The command line (data_prep/convert_nuscenes.py), the Python entry points and the Beam launcher
all build a `ConvertRequest`; a bad value fails here, before any file is read, with a
`RequestError` naming the command-line flag, the value and the allowed range.
"""

from __future__ import annotations

import dataclasses
import pathlib

from data_prep.convert.items import ON_ERROR_CHOICES, RequestError

MAX_JPEG_SIDE = 65535  # the JPEG frame header stores width and height in 16 bits


def _flag(field: str) -> str:
    return "--out" if field == "out_dir" else "--" + field.replace("_", "-")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_image_size(text: str) -> tuple[int, int]:
    """ "WxH" -> (W, H); the range is checked by ConvertRequest."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RequestError(f"--image-size {text!r}: expected WxH, e.g. 800x450") from None
    return width, height


@dataclasses.dataclass(frozen=True)
class ConvertRequest:
    """What to convert and how. `image_size` is (W, H), or None to pass the source JPEG bytes
    through; `num_shards` is per split, None for about 256 MB per shard (multiple of 8)."""

    dataroot: str | pathlib.Path
    version: str
    out_dir: str | pathlib.Path
    frames: int = 3
    image_size: tuple[int, int] | None = None
    num_shards: int | None = None
    workers: int = 1
    resume: bool = False
    on_error: str = "fail"
    scene_list: str | pathlib.Path | None = None
    verify_jpeg: bool = False

    def __post_init__(self) -> None:
        for field in ("dataroot", "version", "out_dir"):
            value = getattr(self, field)
            if not isinstance(value, str | pathlib.PurePath) or not str(value):
                raise RequestError(f"{_flag(field)} {value!r}: must be a non-empty path or name")
        for field, value in (("frames", self.frames), ("workers", self.workers)):
            if not _is_int(value) or value < 1:
                raise RequestError(f"{_flag(field)} {value!r}: must be an integer >= 1")
        if self.num_shards is not None and (not _is_int(self.num_shards) or self.num_shards < 1):
            raise RequestError(
                f"--num-shards {self.num_shards!r}: must be an integer >= 1 shards per split "
                "(leave it out for the default of about 256 MB per shard)"
            )
        if self.image_size is not None:
            size = tuple(self.image_size)
            if len(size) != 2 or not all(_is_int(v) and 1 <= v <= MAX_JPEG_SIDE for v in size):
                shown = "x".join(str(v) for v in size)
                raise RequestError(
                    f"--image-size {shown}: width and height must be integers in "
                    f"1..{MAX_JPEG_SIDE} (WxH, e.g. 800x450)"
                )
            object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        if self.on_error not in ON_ERROR_CHOICES:
            raise RequestError(
                f"--on-error {self.on_error!r}: expected one of {', '.join(ON_ERROR_CHOICES)}"
            )
        for field in ("resume", "verify_jpeg"):
            if not isinstance(getattr(self, field), bool):
                raise RequestError(f"{_flag(field)} {getattr(self, field)!r}: must be True/False")
        if self.scene_list is not None and not str(self.scene_list):
            raise RequestError("--scene-list '': must name a JSON file")
