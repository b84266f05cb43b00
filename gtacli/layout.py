"""Where every file lives under a data root (the tree of docs/reproduction.md §1.2). Pure path arithmetic, no I/O.

Every module asks this object for paths instead of joining strings itself, so the tree is defined once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

# Training datasets in config order: name -> (annotation file, static fits file or None).
TRAIN_DATASETS: Dict[str, Tuple[str, str]] = {
    "h36m": ("spin_h36m_train.npz", "h36m_fits.npy"),
    "mpi_inf_3dhp": ("spin_mpi_inf_3dhp_train.npz", "mpi_inf_3dhp_fits.npy"),
    "lsp": ("spin_lsp_train.npz", "lsp_fits.npy"),
    "lspet": ("spin_lspet_train.npz", "lspet_fits.npy"),
    "mpii": ("spin_mpii_train.npz", "mpii_fits.npy"),
    "coco": ("spin_coco_2014_train.npz", "coco_fits.npy"),
    "gta": ("gta_human_4x.npz", "gta_fits.npy"),
}
# Accepted alternatives (docs/reproduction.md decision 1-2), tried in order after the main name.
ANNOTATION_ALIASES: Dict[str, Tuple[str, ...]] = {
    "h36m": ("spin_h36m_train.npz", "h36m_mosh_train.npz", "h36m_train.npz"),
    "pw3d": ("pw3d_test.npz", "spin_pw3d_test.npz"),
}
TEST_DATASETS: Dict[str, str] = {"pw3d": "pw3d_test.npz"}
GENDERS = ("neutral", "male", "female")
SYNTHETIC_MARKER = "SYNTHETIC_DATA.json"


@dataclass(frozen=True)
class DataLayout:
    root: Path

    def __init__(self, root) -> None:  # accept str or Path
        object.__setattr__(self, "root", Path(root))

    # body models and extras
    @property
    def body_models(self) -> Path:
        return self.root / "body_models"

    @property
    def smpl_dir(self) -> Path:
        return self.body_models / "smpl"

    def smpl_model(self, gender: str = "neutral") -> Path:
        return self.smpl_dir / f"SMPL_{gender.upper()}.pkl"

    @property
    def j_regressor_extra(self) -> Path:
        return self.body_models / "J_regressor_extra.npy"

    @property
    def j_regressor_h36m(self) -> Path:
        return self.body_models / "J_regressor_h36m.npy"

    @property
    def smpl_mean_params(self) -> Path:
        return self.body_models / "smpl_mean_params.npz"

    @property
    def gmm_prior(self) -> Path:
        return self.root / "gmm_08.pkl"

    # checkpoints
    @property
    def pretrained_models(self) -> Path:
        return self.root / "pretrained_models"

    @property
    def spin_official(self) -> Path:
        return self.pretrained_models / "spin_official.pth"

    @property
    def models(self) -> Path:
        return self.root / "models"

    # annotations, fits, images
    @property
    def preprocessed(self) -> Path:
        return self.root / "preprocessed_datasets"

    def annotation(self, dataset: str) -> Path:
        """The annotation file of a dataset; for datasets with aliases, the first one that exists."""
        names = ANNOTATION_ALIASES.get(dataset)
        if names is None:
            name = TRAIN_DATASETS[dataset][0] if dataset in TRAIN_DATASETS else TEST_DATASETS[dataset]
            return self.preprocessed / name
        for name in names:
            if (self.preprocessed / name).exists():
                return self.preprocessed / name
        return self.preprocessed / names[0]

    @property
    def static_fits_dir(self) -> Path:
        return self.root / "static_fits"

    def static_fits(self, dataset: str) -> Path:
        return self.static_fits_dir / TRAIN_DATASETS[dataset][1]

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def image_root(self, dataset: str) -> Path:
        return self.root / "datasets" / dataset

    def image(self, dataset: str, relative: str) -> Path:
        return self.image_root(dataset) / relative

    # bookkeeping
    @property
    def lock_file(self) -> Path:
        return self.root / "gtacli.lock.json"

    @property
    def synthetic_marker(self) -> Path:
        return self.root / SYNTHETIC_MARKER

    @property
    def is_synthetic(self) -> bool:
        return self.synthetic_marker.exists()
