"""Random access to TFRecord shards: a header-only index per file, then reads by offset.

Random access is what makes resume cheap: the epoch order is a permutation of record indices,
so restoring a position reads no skipped record at all (not even its bytes).

Every read is checked as TensorFlow's own reader checks it: the masked CRC32C of the length
header while indexing, and the masked CRC32C of the record's data on every `read`, so a
flipped byte anywhere in a shard is an error naming the shard and record, never a wrong
example. The data CRC runs in `google_crc32c`'s compiled code when that wheel is installed;
otherwise in the NumPy lane implementation below (both give the same values, tested).
"""

from __future__ import annotations

import functools
import os
import struct
import threading

import numpy as np
import tensorflow as tf

from mim4d_jax.user_errors import BadInputError

_HEADER_BYTES = 12  # uint64 length + uint32 masked CRC32C of the length
_FOOTER_BYTES = 4  # uint32 masked CRC32C of the data
_POLY_REFLECTED = 0x82F63B78  # Castagnoli
_LANE_BYTES = 1024  # chunk length of the NumPy implementation (see _crc32c_numpy)
# Data CRCs are always checked in training and evaluation; benchmarks/input_bench.py turns
# this off only to measure what the check costs.
VERIFY_DATA_CRC = True


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_POLY_REFLECTED if crc & 1 else 0)
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()
_CRC_TABLE_NP = np.array(_CRC_TABLE, np.uint32)


def _register_python(register: int, data: bytes) -> int:
    """The reflected CRC register after `data` (no initial or final inversion)."""
    table = _CRC_TABLE
    for byte in data:
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


@functools.lru_cache(maxsize=4)
def _shift_tables(length: int) -> tuple[list[int], ...]:
    """Four 256-entry tables of the linear map 'feed `length` zero bytes' on the register,
    one per register byte: shift(r) = T0[r & 255] ^ T1[r >> 8 & 255] ^ T2[..] ^ T3[r >> 24]."""
    basis_32 = np.array([1 << bit for bit in range(32)], np.uint32)
    for _ in range(length):  # the 32 basis registers through `length` zero bytes, at once
        basis_32 = _CRC_TABLE_NP[basis_32 & 0xFF] ^ (basis_32 >> 8)
    images = [int(v) for v in basis_32]
    tables = []
    for k in range(4):
        table = [0] * 256
        for value in range(1, 256):
            low = value & -value  # lowest set bit: table[v] = table[v - low] ^ image(low)
            table[value] = table[value ^ low] ^ images[8 * k + low.bit_length() - 1]
        tables.append(table)
    return tuple(tables)


def _crc32c_numpy(data: bytes) -> int:
    """CRC32C with NumPy: the data is cut into K chunks of _LANE_BYTES, every chunk's register
    (from 0; chunk 0 from the initial value) is computed in one vectorised pass over the chunk
    positions, then the chunks are chained with the 'shift by one chunk' map, which is linear:
    reg(a || b) = shift_len(b)(reg(a)) ^ reg_from_0(b)."""
    register = 0xFFFFFFFF
    lanes = len(data) // _LANE_BYTES
    if lanes >= 2:
        chunks_lk = np.frombuffer(data, np.uint8, count=lanes * _LANE_BYTES)
        chunks_lk = np.ascontiguousarray(chunks_lk.reshape(lanes, _LANE_BYTES).T)
        registers_k = np.zeros(lanes, np.uint32)
        registers_k[0] = register
        table = _CRC_TABLE_NP
        for column_k in chunks_lk:
            registers_k = table[(registers_k ^ column_k) & 0xFF] ^ (registers_k >> 8)
        t0, t1, t2, t3 = _shift_tables(_LANE_BYTES)
        register = 0
        for value in registers_k.tolist():
            register = (
                t0[register & 0xFF]
                ^ t1[(register >> 8) & 0xFF]
                ^ t2[(register >> 16) & 0xFF]
                ^ t3[register >> 24]
            ) ^ value
        data = data[lanes * _LANE_BYTES :]
    return _register_python(register, data) ^ 0xFFFFFFFF


def crc32c_python(data: bytes) -> int:
    """CRC32C, table-driven pure Python: the reference the fast paths are tested against."""
    return _register_python(0xFFFFFFFF, data) ^ 0xFFFFFFFF


try:  # the compiled implementation, when its wheel is installed with its C extension
    import google_crc32c as _google_crc32c

    if _google_crc32c.implementation != "c":
        raise ImportError("google_crc32c without its C extension")

    def _crc32c_fast(data: bytes) -> int:
        return _google_crc32c.value(data)

    CRC32C_IMPLEMENTATION = "google_crc32c"
except ImportError:
    _crc32c_fast = _crc32c_numpy
    CRC32C_IMPLEMENTATION = "numpy"


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli) of `data`, with the fastest implementation available."""
    return _crc32c_fast(bytes(data)) if len(data) > 64 else crc32c_python(data)


def mask(crc: int) -> int:
    """TFRecord's masking of a CRC (rotate right by 15, add a constant)."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of `data`."""
    return mask(crc32c(data))


class CorruptRecordError(BadInputError):
    """A record that cannot be read or parsed; the message names the shard and record index."""

    default_hint = (
        "the shard is damaged: re-run the converter for it (data_prep.convert_nuscenes "
        "--resume rewrites missing shards) or restore it from a copy"
    )


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
        """Record `index`'s data, after checking its masked CRC32C (CorruptRecordError)."""
        offset, length = self._offsets[index], self._lengths[index]
        want = length + _FOOTER_BYTES
        if self._local:
            blob = os.pread(self._fd, want, offset)
        else:  # remote file systems: a short-lived handle per read keeps threads independent
            with tf.io.gfile.GFile(self.path, "rb") as f:
                f.seek(offset)
                blob = f.read(want)
        if len(blob) != want:
            raise CorruptRecordError(f"short read of record {index} of shard {self.path}")
        data = blob[:length]
        (stored,) = struct.unpack("<I", blob[length:])
        if VERIFY_DATA_CRC and stored != masked_crc32c(data):
            raise CorruptRecordError(
                f"data checksum mismatch in record {index} of shard {self.path} "
                f"(bytes {offset}..{offset + length}): the record's bytes changed after "
                "it was written"
            )
        return data

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
