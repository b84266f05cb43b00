"""Byte counts in messages: the one formatter, so every command writes sizes the same way."""

from __future__ import annotations

from typing import Optional

BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_FIXED = {"MB": 1e6, "MiB": float(1 << 20)}  # units a message may pin (its documented wording uses them)


def format_bytes(n: Optional[float], unit: Optional[str] = None) -> str:
    """`n` bytes for a person: '512 B', '1.5 KiB', '3.2 GiB' (the largest binary unit below 1024, up to TiB);
    '' when the size is unknown (None).

    `unit` pins the unit where a message's wording is fixed: 'MB' (10^6 bytes: the fetch summary, the full-disk
    error) or 'MiB' (the sample tree's size), always with one decimal.
    """
    if n is None:
        return ""
    if unit is not None:
        return f"{n / _FIXED[unit]:.1f} {unit}"
    for name in BINARY_UNITS:
        if abs(n) < 1024 or name == BINARY_UNITS[-1]:
            return f"{n:.0f} {name}" if name == "B" else f"{n:.1f} {name}"
        n /= 1024
    raise AssertionError("unreachable")
