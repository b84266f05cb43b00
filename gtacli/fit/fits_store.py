"""The static-fits store: one `(N, 82)` float64 array per dataset (`[pose72 | betas10]`, docs/reproduction.md §7.2).

Rows are kept in the canonical frame of the original image (unflipped, unrotated), row index = `sample_idx`.
`lookup` brings a row into the augmented frame of a training sample (docs/reproduction.md §7.1 step 3: flip first with the
SMPL pose flip of §3.5, then rotate the global orient `R ← R_z(−r)·R`, the data pipeline's order);
`update` does the inverse (undo the rotation, then the flip) before writing (docs/reproduction.md §7.4).

Datasets whose every sample carries GT SMPL (e.g. `gta`, docs/reproduction.md decision 3) can be declared `missing_ok`: their
fits file may be absent and rows read as zeros. Such a dataset allocates nothing (GTA has ~1.4 M samples: a dense
zero array would take ~1 GB and go into every checkpoint); rows written to it are kept individually.
`lookup` is only asked for rows of samples *without* GT SMPL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist

from gtacli.body.rotations import flip_smpl_pose, rotate_global_orient
from gtacli.errors import BadFileError, MissingFileError, PathLike
from gtacli.io.atomic import atomic_path
from gtacli.io.safe import load_npy
from gtacli.layout import TRAIN_DATASETS, DataLayout

FIT_COLUMNS = 82  # 72 pose (axis-angle, 24 joints) + 10 betas
POSE_DIM = 72
BETAS_DIM = 10


def fits_file_name(dataset: str) -> str:
    """`<ds>_fits.npy` — the name docs/reproduction.md §1.2 gives (TRAIN_DATASETS) or the same pattern for other datasets."""
    return TRAIN_DATASETS[dataset][1] if dataset in TRAIN_DATASETS else f"{dataset}_fits.npy"


def check_fits_array(array: np.ndarray, path: PathLike, expected_rows: Optional[int] = None) -> np.ndarray:
    """Validate a fits array: 2-D, 82 columns, finite, optionally `expected_rows` rows. Returns float64."""
    if array.ndim != 2 or array.shape[1] != FIT_COLUMNS:
        raise BadFileError(
            f"fits array has shape {tuple(array.shape)}, expected (N, {FIT_COLUMNS}) = [pose72 | betas10]",
            path=path,
            fix="download the static fits again, or create them with `gtacli fit --dataset NAME`",
        )
    if expected_rows is not None and array.shape[0] != expected_rows:
        raise BadFileError(
            f"fits file has {array.shape[0]} rows but the annotation has {expected_rows} samples",
            path=path,
            fix="use the fits made for this annotation file, or re-create them with `gtacli fit --dataset NAME --force`",
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise BadFileError(f"fits array has dtype {array.dtype}, expected floating point", path=path)
    array = np.asarray(array, np.float64)
    if not np.isfinite(array).all():
        raise BadFileError("fits array contains NaN or inf", path=path, fix="re-create the fits file")
    return array


def load_fits_file(path: PathLike, expected_rows: Optional[int] = None) -> np.ndarray:
    """Read one `<ds>_fits.npy` (restricted, no pickle) and validate it -> (N, 82) float64 (a writable copy)."""
    return np.array(check_fits_array(load_npy(path), path, expected_rows), dtype=np.float64, copy=True)


def save_fits_file(path: PathLike, fits: np.ndarray) -> Path:
    """Write a (N, 82) array as float64 `.npy`, atomically (never a half-written file at `path`)."""
    fits = check_fits_array(np.asarray(fits), path)
    with atomic_path(path) as tmp:
        np.save(tmp, np.ascontiguousarray(fits, dtype=np.float64), allow_pickle=False)
    return Path(path)


def to_augmented_frame(
    pose72: torch.Tensor, rotation_deg: torch.Tensor, is_flipped: torch.Tensor
) -> torch.Tensor:
    """Canonical -> augmented frame (docs/reproduction.md §7.1 step 3): flip (where flagged), then `R_go ← R_z(−r)·R_go`.

    pose72 (B, 72), rotation_deg (B,), is_flipped (B,) -> (B, 72).
    """
    flipped = is_flipped.reshape(-1).to(torch.bool)
    pose = torch.where(flipped[:, None], flip_smpl_pose(pose72), pose72)
    global_orient = rotate_global_orient(pose[:, :3], rotation_deg.reshape(-1).to(pose.dtype))
    return torch.cat([global_orient, pose[:, 3:]], dim=1)


def to_canonical_frame(
    pose72: torch.Tensor, rotation_deg: torch.Tensor, is_flipped: torch.Tensor
) -> torch.Tensor:
    """Augmented -> canonical frame (docs/reproduction.md §7.4): undo the rotation (`R_z(+r)·R_go`), then undo the flip."""
    global_orient = rotate_global_orient(pose72[:, :3], -rotation_deg.reshape(-1).to(pose72.dtype))
    pose = torch.cat([global_orient, pose72[:, 3:]], dim=1)
    flipped = is_flipped.reshape(-1).to(torch.bool)
    return torch.where(flipped[:, None], flip_smpl_pose(pose), pose)


class FitsStore:
    """Per-dataset `(N, 82)` float64 fits in RAM, with frame-aware lookup/update (docs/reproduction.md §7.1–7.4).

    Build it with `FitsStore.from_layout(layout, datasets, lengths=..., missing_ok=("gta",))` or directly
    from a `{name: array}` mapping.
    """

    def __init__(
        self,
        fits: Mapping[str, np.ndarray],
        *,
        lengths: Optional[Mapping[str, int]] = None,
        zero_filled: Iterable[str] = (),
        sources: Optional[Mapping[str, PathLike]] = None,
    ):
        self._fits: Dict[str, np.ndarray] = {}
        self._lengths = dict(lengths or {})
        # zero-filled datasets: no array, only the rows written since ({row index: (82,) row})
        self._virtual: Dict[str, Dict[int, np.ndarray]] = {
            name: {} for name in zero_filled if name not in fits
        }
        self._sources = {k: str(v) for k, v in (sources or {}).items()}
        for name, array in fits.items():
            where = self._sources.get(name, f"fits[{name}]")
            self._fits[name] = np.array(
                check_fits_array(np.asarray(array), where, self._lengths.get(name)), copy=True
            )
        # rows written by `update` since the last `take_updates()` (for cross-rank synchronisation)
        self._pending: Dict[str, set] = {name: set() for name in self.datasets}

    # construction ---------------------------------------------------------------------------------------
    @classmethod
    def from_layout(
        cls,
        layout: DataLayout,
        datasets: Sequence[str],
        *,
        lengths: Optional[Mapping[str, int]] = None,
        missing_ok: Sequence[str] = (),
    ) -> FitsStore:
        """Load `static_fits/<ds>_fits.npy` for every dataset; check rows == `lengths[ds]` when given.

        A dataset in `missing_ok` reads as zeros whether or not its file exists (nothing allocated or loaded;
        bounds checked against `lengths` when known). Any other absent file is a `MissingFileError` pointing to check-layout.
        """
        lengths = dict(lengths or {})
        arrays: Dict[str, np.ndarray] = {}
        zero_filled: List[str] = []
        sources: Dict[str, Path] = {}
        for name in datasets:
            path = layout.static_fits_dir / fits_file_name(name)
            sources[name] = path
            if name in missing_ok:
                # every sample has GT SMPL, so its fits are never read (docs/reproduction.md §7.2, decision 3): do not load a
                # present file either (gta_fits.npy is ~0.9 GB per process); check-layout validates it.
                zero_filled.append(name)
            elif path.is_file():
                arrays[name] = load_fits_file(path, lengths.get(name))
            else:
                raise MissingFileError(
                    f"static fits for '{name}' not found",
                    path=path,
                    fix=f"run `gtacli check-layout` (fetch them) or create them with `gtacli fit --dataset {name}`",
                )
        return cls(arrays, lengths=lengths, zero_filled=zero_filled, sources=sources)

    # inspection -----------------------------------------------------------------------------------------
    @property
    def datasets(self) -> List[str]:
        return list(self._fits) + list(self._virtual)

    def array(self, dataset: str) -> np.ndarray:
        """The canonical (N, 82) float64 array of one dataset: the store's own array for loaded datasets, a
        materialised copy (zeros plus written rows) for a zero-filled one."""
        if dataset in self._virtual:
            return self._materialise(dataset)
        return self._fits[self._require(dataset)]

    def is_zero_filled(self, dataset: str) -> bool:
        return dataset in self._virtual

    def __len__(self) -> int:
        return len(self._fits) + len(self._virtual)

    def __contains__(self, dataset: object) -> bool:
        return dataset in self._fits or dataset in self._virtual

    # lookup / update ------------------------------------------------------------------------------------
    def rows(self, dataset_names: Sequence[str], sample_idx: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
        """Canonical rows (B, 82) float64 for (dataset, index) pairs."""
        idx = _as_numpy_index(sample_idx)
        if len(dataset_names) != idx.shape[0]:
            raise ValueError(f"{len(dataset_names)} dataset names for {idx.shape[0]} sample indices")
        out = np.zeros((idx.shape[0], FIT_COLUMNS), np.float64)
        for name, positions in _group(dataset_names).items():
            rows = idx[positions]
            self._check_bounds(name, rows)
            if name in self._virtual:
                written = self._virtual[name]
                for pos, i in zip(positions, rows):
                    if int(i) in written:
                        out[pos] = written[int(i)]
            else:
                out[positions] = self._fits[name][rows]
        return out

    def lookup(
        self,
        dataset_names: Sequence[str],
        sample_idx: torch.Tensor,
        rotation_deg: torch.Tensor,
        is_flipped: torch.Tensor,
        *,
        dtype: torch.dtype = torch.float32,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Fits of a batch in its augmented frame -> (pose (B, 72), betas (B, 10)) on `sample_idx`'s device.

        The transform runs in float64 and is cast to `dtype` at the end.
        """
        device = sample_idx.device if isinstance(sample_idx, torch.Tensor) else torch.device("cpu")
        rows = torch.from_numpy(self.rows(dataset_names, sample_idx))
        rotation = torch.as_tensor(rotation_deg).detach().to("cpu", torch.float64).reshape(-1)
        flipped = torch.as_tensor(is_flipped).detach().to("cpu").reshape(-1)
        pose = to_augmented_frame(rows[:, :POSE_DIM], rotation, flipped)
        betas = rows[:, POSE_DIM:]
        return pose.to(device=device, dtype=dtype), betas.to(device=device, dtype=dtype)

    def update(
        self,
        dataset_names: Sequence[str],
        sample_idx: torch.Tensor,
        rotation_deg: torch.Tensor,
        is_flipped: torch.Tensor,
        pose: torch.Tensor,
        betas: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
    ) -> int:
        """Store fitted (pose (B, 72), betas (B, 10)) given in the augmented frame, where `mask` (B,) is True.

        Undoes the rotation then the flip (docs/reproduction.md §7.4) and writes canonical rows. Returns the number written.
        """
        idx = _as_numpy_index(sample_idx)
        keep = np.ones(idx.shape[0], bool) if mask is None else _as_numpy_bool(mask)
        if not keep.any():
            return 0
        rotation = torch.as_tensor(rotation_deg).detach().to("cpu", torch.float64).reshape(-1)
        flipped = torch.as_tensor(is_flipped).detach().to("cpu").reshape(-1)
        pose64 = pose.detach().to("cpu", torch.float64).reshape(-1, POSE_DIM)
        canonical = to_canonical_frame(pose64, rotation, flipped).numpy()
        betas64 = betas.detach().to("cpu", torch.float64).reshape(-1, BETAS_DIM).numpy()
        rows = np.concatenate([canonical, betas64], axis=1)
        names = [n for n, k in zip(dataset_names, keep) if k]
        self.set_rows(names, idx[keep], rows[keep])
        return int(keep.sum())

    def set_rows(self, dataset_names: Sequence[str], sample_idx: np.ndarray, rows: np.ndarray) -> None:
        """Write canonical rows (B, 82) as they are (no frame transform) and remember them as pending updates."""
        idx = _as_numpy_index(sample_idx)
        rows = np.asarray(rows, np.float64).reshape(-1, FIT_COLUMNS)
        for name, positions in _group(dataset_names).items():
            self._write(name, idx[positions], rows[positions])
            self._pending.setdefault(name, set()).update(int(i) for i in idx[positions])

    # synchronisation ------------------------------------------------------------------------------------
    def take_updates(self) -> Dict[str, np.ndarray]:
        """Indices updated since the last call, per dataset (and forget them)."""
        out = {name: np.array(sorted(rows), np.int64) for name, rows in self._pending.items() if rows}
        self._pending = {name: set() for name in self._fits}
        return out

    def all_reduce_updates(self, group: object = None) -> int:
        """Make every rank hold the rows any rank updated since the last call (no-op when not distributed).

        Each rank contributes `(dataset id, row index, rank, row)` records; all ranks apply all records in rank
        order, so when two ranks updated the same row the highest rank wins on every rank alike.
        Returns the number of rows received from other ranks.
        """
        updates = self.take_updates()
        if not (dist.is_available() and dist.is_initialized()):
            return 0
        names = sorted(self.datasets)
        local = [(names.index(n), int(i)) for n, idxs in updates.items() for i in idxs]
        payload = [(d, i, self.rows([names[d]], np.array([i]))[0].tolist()) for d, i in local]
        gathered: List[object] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, payload, group=group)
        me = dist.get_rank(group)
        received = 0
        for rank, records in enumerate(gathered):
            for d, i, row in records or []:
                self._write(names[d], np.array([i]), np.asarray(row, np.float64)[None])
                received += rank != me
        return received

    # persistence ----------------------------------------------------------------------------------------
    def state_dict(self, as_tensors: bool = False) -> Dict[str, Union[np.ndarray, torch.Tensor]]:
        """{dataset: (N, 82) float64 copy} — goes into checkpoints. Zero-filled datasets nobody wrote to are
        left out (they are all zeros). `as_tensors=True` gives CPU float64 tensors (they load back with
        `torch.load(weights_only=True)` without allowing numpy globals)."""
        arrays = {name: array.copy() for name, array in self._fits.items()}
        arrays.update({name: self._materialise(name) for name, rows in self._virtual.items() if rows})
        if as_tensors:
            return {name: torch.from_numpy(array) for name, array in arrays.items()}
        return arrays

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Replace the arrays of the datasets in `state` (shapes checked against known lengths)."""
        for name, array in state.items():
            array = np.asarray(array.cpu().numpy() if isinstance(array, torch.Tensor) else array)
            self._fits[name] = np.array(
                check_fits_array(array, f"state_dict[{name}]", self._lengths.get(name)), np.float64, copy=True
            )
            self._virtual.pop(name, None)
            self._pending.setdefault(name, set())

    def save(self, folder: PathLike, datasets: Optional[Sequence[str]] = None) -> List[Path]:
        """Write `<folder>/<ds>_fits.npy` for every dataset (or those given), each atomically. By default
        zero-filled datasets nobody wrote to are skipped."""
        folder = Path(folder)
        if datasets is None:
            datasets = list(self._fits) + [name for name, rows in self._virtual.items() if rows]
        return [save_fits_file(folder / fits_file_name(name), self.array(name)) for name in datasets]

    # helpers --------------------------------------------------------------------------------------------
    def _require(self, dataset: str) -> str:
        if dataset not in self:
            raise KeyError(f"no fits loaded for dataset '{dataset}' (loaded: {sorted(self.datasets)})")
        return dataset

    def _num_rows(self, dataset: str) -> Optional[int]:
        if dataset in self._fits:
            return self._fits[dataset].shape[0]
        return self._lengths.get(dataset)

    def _check_bounds(self, dataset: str, idx: np.ndarray) -> None:
        self._require(dataset)
        if not idx.size:
            return
        rows = self._num_rows(dataset)
        if idx.min() < 0 or (rows is not None and idx.max() >= rows):
            bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
            raise IndexError(f"sample index {bad} out of range for {dataset} fits ({rows} rows)")

    def _write(self, dataset: str, idx: np.ndarray, rows: np.ndarray) -> None:
        self._check_bounds(dataset, idx)
        if dataset in self._virtual:
            for i, row in zip(idx, rows):
                self._virtual[dataset][int(i)] = np.array(row, np.float64, copy=True)
        else:
            self._fits[dataset][idx] = rows

    def _materialise(self, dataset: str) -> np.ndarray:
        written = self._virtual[dataset]
        rows = self._lengths.get(dataset, max(written, default=-1) + 1)
        out = np.zeros((rows, FIT_COLUMNS), np.float64)
        for i, row in written.items():
            out[i] = row
        return out


def _as_numpy_index(sample_idx: Union[torch.Tensor, np.ndarray, Sequence[int]]) -> np.ndarray:
    if isinstance(sample_idx, torch.Tensor):
        sample_idx = sample_idx.detach().cpu().numpy()
    return np.asarray(sample_idx).reshape(-1).astype(np.int64)


def _as_numpy_bool(mask: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask).reshape(-1).astype(bool)


def _group(dataset_names: Sequence[str]) -> Dict[str, np.ndarray]:
    """{name: positions in the batch}, in first-seen order."""
    groups: Dict[str, List[int]] = {}
    for position, name in enumerate(dataset_names):
        groups.setdefault(name, []).append(position)
    return {name: np.asarray(pos, np.int64) for name, pos in groups.items()}
