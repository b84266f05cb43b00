"""CRC-64/XZ, sha256 and MD5 streaming checksums against published check values."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from gtacli.io.hashing import (
    Crc64,
    MultiHasher,
    crc64_file,
    crc64_xz,
    crc64_xz_reference,
    hash_file,
    md5_file,
    sha256_file,
)

# CRC-64/XZ check value from the CRC catalogue (reveng): CRC of the ASCII string "123456789".
CRC64_XZ_CHECK = 0x995DC9BBDF1939FA
# FIPS 180-2 / RFC 1321 test vectors for "abc".
SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
MD5_ABC = "900150983cd24fb0d6963f7d28e17f72"


def test_crc64_xz_check_value():
    assert crc64_xz(b"123456789") == CRC64_XZ_CHECK
    assert crc64_xz_reference(b"123456789") == CRC64_XZ_CHECK


def test_crc64_of_empty_input_is_zero():
    # init and xorout are both all-ones, so no data gives 0
    assert crc64_xz(b"") == 0


@pytest.mark.parametrize("size", [1, 255, 65535, 65536, 65537, 4096 * 40 + 3, 300_001])
def test_crc64_fast_path_equals_bytewise_definition(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc64_xz(data) == crc64_xz_reference(data)


def test_crc64_incremental_updates_in_odd_pieces():
    data = np.random.default_rng(1).integers(0, 256, 400_000, dtype=np.uint8).tobytes()
    crc = Crc64()
    for start in range(0, len(data), 70_001):  # pieces that cross the lane/tail boundaries
        crc.update(data[start : start + 70_001])
    assert crc.value == crc64_xz_reference(data)
    assert crc.hexdigest() == f"{crc64_xz_reference(data):016x}"


def test_file_digests_match_hashlib_and_known_vectors(tmp_path):
    small = tmp_path / "abc.bin"
    small.write_bytes(b"abc")
    assert sha256_file(small) == SHA256_ABC
    assert md5_file(small) == MD5_ABC
    big = tmp_path / "big.bin"
    data = np.random.default_rng(2).integers(0, 256, 3 * (1 << 20) + 17, dtype=np.uint8).tobytes()
    big.write_bytes(data)
    h = hash_file(big, md5=True, crc64=True)
    assert h.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    assert h.md5.hexdigest() == hashlib.md5(data).hexdigest()
    assert h.crc64.value == crc64_file(big) == crc64_xz_reference(data[:1000] + data[1000:])
    assert h.length == len(data)


def test_multihasher_reads_only_the_limit(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"0123456789")
    h = MultiHasher()
    with open(path, "rb") as fp:
        assert h.update_from_file(fp, limit=4) == 4
    assert h.sha256.hexdigest() == hashlib.sha256(b"0123").hexdigest()
