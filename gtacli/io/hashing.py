"""Streaming checksums of files and byte streams: sha256, MD5 and CRC-64/XZ.

sha256 and MD5 come from hashlib. CRC-64/XZ (also called CRC-64/GO-ECMA; the `x-oss-hash-crc64ecma`
header of Alibaba OSS, where mmhuman3d's files live) is computed here: reflected polynomial
0xC96C5795D7870F42, initial value and final XOR 0xFFFFFFFFFFFFFFFF. Check value: CRC-64/XZ(b"123456789")
= 0x995DC9BBDF1939FA.

A byte-at-a-time loop in Python is far too slow for multi-GB downloads. `Crc64` therefore
splits each large block into many equal "lanes", runs the table-driven byte loop on all lanes at once with
numpy (one vector step per byte position), and joins the lane CRCs with the GF(2)-linear "append n zero
bytes" operator, also applied through byte tables. hashlib's MD5/sha256 are faster still, so downloads use
CRC-64 only when the server offers no MD5.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import BinaryIO, Dict, Iterable, List, Optional, Union

import numpy as np

CRC64_XZ_POLY_REFLECTED = 0xC96C5795D7870F42
CRC64_XZ_INIT = 0xFFFFFFFFFFFFFFFF
CRC64_XZ_XOROUT = 0xFFFFFFFFFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
READ_CHUNK_BYTES = 1 << 20  # 1 MiB: large enough for numpy lanes to pay off, small enough for progress
_LANES = 8192  # parallel lanes per vectorised block (power of two, so lanes join in a balanced tree)
_MIN_VECTOR_BYTES = 64 * 1024  # below this the plain byte loop is faster than setting up lanes


def _make_table() -> List[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ CRC64_XZ_POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE: List[int] = _make_table()
_TABLE_NP = np.array(_TABLE, dtype=np.uint64)


def _advance_zero_byte(reg: int) -> int:
    """The register after one zero byte: a linear map of `reg` over GF(2)."""
    return _TABLE[reg & 0xFF] ^ (reg >> 8)


def _apply(columns: List[int], vec: int) -> int:
    """Matrix (given by its 64 columns) times bit-vector `vec` over GF(2)."""
    out = 0
    i = 0
    while vec:
        if vec & 1:
            out ^= columns[i]
        vec >>= 1
        i += 1
    return out


def _compose(a: List[int], b: List[int]) -> List[int]:
    """Columns of the matrix product A·B."""
    return [_apply(a, col) for col in b]


class _ZeroShift:
    """Operators "append n zero bytes" to a raw CRC register, cached by n, as 8 byte-lookup tables."""

    def __init__(self) -> None:
        one_byte = [_advance_zero_byte(1 << i) for i in range(64)]
        self._pow2: List[List[int]] = [one_byte]  # columns of M^(2^k)
        self._tables: Dict[int, np.ndarray] = {}
        self._lock = threading.Lock()  # downloads hash in several threads; the caches grow in place

    def _columns(self, n: int) -> List[int]:
        result: Optional[List[int]] = None
        k = 0
        while n:
            while len(self._pow2) <= k:
                last = self._pow2[-1]
                self._pow2.append(_compose(last, last))
            if n & 1:
                result = self._pow2[k] if result is None else _compose(self._pow2[k], result)
            n >>= 1
            k += 1
        return result if result is not None else [1 << i for i in range(64)]

    def tables(self, n: int) -> np.ndarray:
        """(8, 256) uint64: row j maps byte j of the register to its image under M^n."""
        cached = self._tables.get(n)
        if cached is not None:
            return cached
        with self._lock:
            cols = np.array(self._columns(n), dtype=np.uint64)  # (64,)
        byte_values = np.arange(256, dtype=np.uint64)
        tables = np.zeros((8, 256), dtype=np.uint64)
        for j in range(8):
            for bit in range(8):
                has_bit = ((byte_values >> np.uint64(bit)) & np.uint64(1)).astype(bool)
                tables[j, has_bit] ^= cols[8 * j + bit]
        with self._lock:
            if len(self._tables) > 256:  # many distinct block sizes: keep memory bounded
                self._tables.clear()
            self._tables[n] = tables
        return tables

    def apply(self, regs: np.ndarray, n: int) -> np.ndarray:
        """M^n applied to every element of `regs` (uint64 array)."""
        tables = self.tables(n)
        out = np.zeros_like(regs)
        for j in range(8):
            out ^= tables[j][((regs >> np.uint64(8 * j)) & np.uint64(0xFF)).astype(np.intp)]
        return out

    def apply_one(self, reg: int, n: int) -> int:
        return int(self.apply(np.array([reg], dtype=np.uint64), n)[0])


_SHIFT = _ZeroShift()


def _raw_bytewise(reg: int, data: bytes) -> int:
    table = _TABLE
    for byte in data:
        reg = table[(reg ^ byte) & 0xFF] ^ (reg >> 8)
    return reg


def _raw_lanes(block: memoryview, lanes: int) -> int:
    """Raw CRC register (start 0) of `block`, whose length is a multiple of `lanes`."""
    length = len(block) // lanes
    # (length, lanes): row t holds byte t of every lane, contiguous for the vector step.
    columns = np.frombuffer(block, dtype=np.uint8).reshape(lanes, length).T.copy()
    regs = np.zeros(lanes, dtype=np.uint64)
    eight = np.uint64(8)
    low = np.uint64(0xFF)
    table = _TABLE_NP
    for t in range(length):
        idx = ((regs ^ columns[t]) & low).astype(np.intp)
        regs = table[idx] ^ (regs >> eight)
    # Join neighbours: raw(A || B) = M^len(B) raw(A) xor raw(B); all lanes have equal length.
    span = length
    while regs.size > 1:
        regs = _SHIFT.apply(regs[0::2], span) ^ regs[1::2]
        span *= 2
    return int(regs[0])


class Crc64:
    """Incremental CRC-64/XZ: `update(bytes)` any number of times, then `.value` (int) or `.hexdigest()`."""

    def __init__(self) -> None:
        self._reg = CRC64_XZ_INIT
        self.length = 0

    def update(self, data: Union[bytes, bytearray, memoryview]) -> None:
        view = memoryview(data).cast("B")
        n = len(view)
        if n >= _MIN_VECTOR_BYTES:
            main = (n // _LANES) * _LANES
            # The register after `main` bytes = (shifted old register) xor (raw CRC of the bytes).
            self._reg = _SHIFT.apply_one(self._reg, main) ^ _raw_lanes(view[:main], _LANES)
            tail = view[main:]
        else:
            tail = view
        self._reg = _raw_bytewise(self._reg, bytes(tail))
        self.length += n

    @property
    def value(self) -> int:
        return (self._reg ^ CRC64_XZ_XOROUT) & _MASK64

    def hexdigest(self) -> str:
        return f"{self.value:016x}"


def crc64_xz(data: Union[bytes, bytearray, memoryview]) -> int:
    """CRC-64/XZ of a byte string (check: crc64_xz(b"123456789") == 0x995DC9BBDF1939FA)."""
    crc = Crc64()
    crc.update(data)
    return crc.value


def crc64_xz_reference(data: bytes) -> int:
    """The plain byte-at-a-time definition (slow; used to test the fast path)."""
    return _raw_bytewise(CRC64_XZ_INIT, data) ^ CRC64_XZ_XOROUT


class MultiHasher:
    """Feed bytes once, get several digests: sha256 always, md5 and crc64 on request."""

    def __init__(self, *, md5: bool = False, crc64: bool = False) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.crc64 = Crc64() if crc64 else None
        self.length = 0

    def update(self, data: Union[bytes, bytearray, memoryview]) -> None:
        self.sha256.update(data)
        if self.md5 is not None:
            self.md5.update(data)
        if self.crc64 is not None:
            self.crc64.update(data)
        self.length += len(data)

    def update_from_file(self, fp: BinaryIO, limit: Optional[int] = None) -> int:
        """Hash up to `limit` bytes (all when None) read from `fp`; returns the number read."""
        done = 0
        while limit is None or done < limit:
            want = READ_CHUNK_BYTES if limit is None else min(READ_CHUNK_BYTES, limit - done)
            chunk = fp.read(want)
            if not chunk:
                break
            self.update(chunk)
            done += len(chunk)
        return done


def iter_file_chunks(path: Union[str, Path], chunk_bytes: int = READ_CHUNK_BYTES) -> Iterable[bytes]:
    with open(path, "rb") as fp:
        while True:
            chunk = fp.read(chunk_bytes)
            if not chunk:
                return
            yield chunk


def sha256_file(path: Union[str, Path]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    for chunk in iter_file_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def md5_file(path: Union[str, Path]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in iter_file_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def crc64_file(path: Union[str, Path]) -> int:
    crc = Crc64()
    for chunk in iter_file_chunks(path):
        crc.update(chunk)
    return crc.value


def hash_file(path: Union[str, Path], *, md5: bool = False, crc64: bool = False) -> MultiHasher:
    """One pass over a file for several digests."""
    hasher = MultiHasher(md5=md5, crc64=crc64)
    with open(path, "rb") as fp:
        hasher.update_from_file(fp)
    return hasher
