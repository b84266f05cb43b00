"""`io/sizes.format_bytes` is the one byte formatter; the three it replaced are kept here, inline, and give the
same text wherever their ranges overlap."""

from __future__ import annotations

import pytest

from gtacli.io.sizes import format_bytes


def _old_transfer_human_bytes(n: float) -> str:  # assets/transfer.py
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _old_fetch_size(n: int) -> str:  # cli/fetch.py (stopped at GiB)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


SIZES = [0, 1, 1023, 1024, 1536, 10**6, 64 << 20, 169_000_000, 3 * 2**30 + 5, 1023 * 2**30]


@pytest.mark.parametrize("n", SIZES)
def test_same_text_as_the_formatters_it_replaced(n):
    assert format_bytes(n) == _old_transfer_human_bytes(n) == _old_fetch_size(n)


@pytest.mark.parametrize("n", [0, 999_999, 4_000_000, 2_000_000, 123_456_789])
def test_pinned_units_keep_the_documented_wording(n):
    assert format_bytes(n, "MB") == f"{n / 1e6:.1f} MB"  # io/atomic.py's full-disk error, the fetch summary
    assert format_bytes(n, "MiB") == f"{n / 2**20:.1f} MiB"  # sample-data's summary line


def test_large_and_negative():
    assert format_bytes(5 * 2**40) == "5.0 TiB"
    assert format_bytes(2**50) == "1024.0 TiB"
    assert format_bytes(-2048) == "-2.0 KiB"


def test_unknown_size_is_empty():
    assert format_bytes(None) == "" and format_bytes(None, "MB") == ""
