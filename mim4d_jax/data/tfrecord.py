"""Random access to TFRecord shards: a header-only index per file, then reads by offset.

Random access is what makes resume cheap: the epoch order is a permutation of record indices,
so restoring a position reads no skipped record at all (not even its bytes).
"""

from __future__ import annotations

import os
import struct
import threading

import tensorflow as tf

_HEADER_BYTES = 12  # uint64 length + uint32 masked CRC32C of the length
_FOOTER_BYTES = 4  # uint32 masked CRC32C of the data


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C; pure Python, used on the 8-byte length headers only."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class CorruptRecordError(ValueError):
    """A record that cannot be read or parsed; the message names the shard and record index."""


class RecordFile:
    """One TFRecord shard: `len()` records, `read(i)` returns record i's bytes (thread safe)."""

    def __init__(self, path: str):
        self.path = path
        self._local = "://" not in path
        self._lock = threading.Lock()
        self._offsets, self._lengths = self._index()
        self._fd = os.open(path, os.O_RDONLY) if self._local else None

    def __len__(self) -> int:
        return len(self._offsets)

    def _index(self) -> tuple[list[int], list[int]]:
        offsets, lengths = [], []
        size = tf.io.gfile.stat(self.path).length
        with tf.io.gfile.GFile(self.path, "rb") as f:
            pos = 0
            while pos < size:
                header = f.read(_HEADER_BYTES)
                where = f"record {len(offsets)} of shard {self.path} (byte {pos})"
                if len(header) < _HEADER_BYTES:
                    raise CorruptRecordError(f"truncated header at {where}")
                (length,) = struct.unpack("<Q", header[:8])
                if struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]):
                    raise CorruptRecordError(f"length checksum mismatch at {where}")
                end = pos + _HEADER_BYTES + length + _FOOTER_BYTES
                if end > size:
                    raise CorruptRecordError(
                        f"{where} claims {length} bytes, past the end of the file ({size} bytes)"
                    )
                offsets.append(pos + _HEADER_BYTES)
                lengths.append(length)
                pos = end
                f.seek(pos)
        return offsets, lengths

    def read(self, index: int) -> bytes:
        offset, length = self._offsets[index], self._lengths[index]
        if self._local:
            data = os.pread(self._fd, length, offset)
        else:  # remote file systems: a short-lived handle per read keeps threads independent
            with tf.io.gfile.GFile(self.path, "rb") as f:
                f.seek(offset)
                data = f.read(length)
        if len(data) != length:
            raise CorruptRecordError(f"short read of record {index} of shard {self.path}")
        return data

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
