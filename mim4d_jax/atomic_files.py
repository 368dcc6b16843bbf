"""Publish files whole or not at all: write a temporary sibling, then rename it over the
target (atomic on POSIX file systems; on object stores such as gs:// a copy + delete that
readers still never see half-written). Used for every result file the project writes."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

from etils import epath


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[epath.Path]:
    """Yields a temporary path beside `path` (same suffix, so writers that pick a format from
    it still work); on success it replaces `path`, on error it is removed."""
    target = epath.Path(path)
    tmp = target.parent / f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}"
    try:
        yield tmp
        tmp.replace(target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
