"""Processing after a file is in place: the memory-mapped cache of large HumanData annotations."""

from __future__ import annotations

from pathlib import Path

from gtacli.assets.manifest import Asset
from gtacli.data import human_data
from gtacli.layout import DataLayout


def prepare_human_data_cache(asset: Asset, dest: Path, layout: DataLayout) -> str:
    """Build the memory-mapped cache of a large HumanData file right after its download.

    Opening a GTA-size annotation (1.4 M frames) the first time means inflating ~1 GB and unpickling its
    `smpl` dict (10-20 s); paying that once here makes every later open (eval, training, check-layout) take
    milliseconds. Best effort: a cache that cannot be written (read-only cache/, full disk) is not an error,
    readers fall back to decoding the npz. Whatever goes wrong here is reported, never raised: the
    file is already in place.
    """
    if (asset.validator or {}).get("kind") != "human_data":
        return ""
    if dest.stat().st_size < human_data.CACHE_MIN_BYTES:
        return ""
    try:
        folder = human_data.ensure_cache(dest, cache_root=layout.cache)
    except Exception as exc:  # the file is already in place: never abort the run here; readers fall back
        return f"no memory-mapped cache ({type(exc).__name__}: {exc})"
    return f"memory-mapped cache in {folder}"
