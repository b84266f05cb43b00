"""Write the files of a data root one by one (small, valid content), for check-layout tests.

Shapes come from docs/reproduction.md §1–2 and §5 (not from gtacli's own code): SMPL (6890, 3) template, regressors
(9|17, 6890), mean params pose (144,) shape (10,) cam (3,), GMM (8, 69), fits (N, 82), HumanData keys.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Dict, Optional

import cv2
import numpy as np

from gtacli.layout import DataLayout

N_V, N_F, N_J = 6890, 13776, 24
SPIN_SETS = ("h36m", "mpi_inf_3dhp", "lsp", "lspet", "mpii", "coco")
ANN_NAMES = {
    "h36m": "spin_h36m_train.npz",
    "mpi_inf_3dhp": "spin_mpi_inf_3dhp_train.npz",
    "lsp": "spin_lsp_train.npz",
    "lspet": "spin_lspet_train.npz",
    "mpii": "spin_mpii_train.npz",
    "coco": "spin_coco_2014_train.npz",
    "gta": "gta_human_4x.npz",
}


TINY_JPEG = cv2.imencode(".jpg", np.full((8, 8, 3), 127, np.uint8))[1].tobytes()


class TreeBuilder:
    def __init__(self, root: Path, n: int = 6):
        self.root = Path(root)
        self.layout = DataLayout(self.root)
        self.n = n

    def _mk(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def smpl(self, gender: str, num_vertices: int = N_V) -> Path:
        rng = np.random.default_rng(len(gender))
        model = {
            "v_template": rng.normal(0, 0.3, (num_vertices, 3)),
            "shapedirs": np.zeros((num_vertices, 3, 10)),
            "posedirs": np.zeros((num_vertices, 3, 207)),
            "J_regressor": np.full((N_J, num_vertices), 1.0 / num_vertices),
            "weights": np.full((num_vertices, N_J), 1.0 / N_J),
            "kintree_table": np.stack([np.arange(-1, N_J - 1), np.arange(N_J)]),
            "f": rng.integers(0, num_vertices, (N_F, 3)).astype(np.uint32),
        }
        path = self._mk(self.layout.smpl_model(gender))
        path.write_bytes(pickle.dumps(model, protocol=4))
        return path

    def regressor(self, which: str) -> Path:
        rows = {"extra": 9, "h36m": 17}[which]
        path = self._mk(self.layout.j_regressor_extra if which == "extra" else self.layout.j_regressor_h36m)
        np.save(path, np.full((rows, N_V), 1.0 / N_V))
        return path

    def mean_params(self) -> Path:
        path = self._mk(self.layout.smpl_mean_params)
        np.savez(
            path,
            pose=np.zeros(144, np.float32),
            shape=np.zeros(10, np.float32),
            cam=np.array([0.9, 0, 0], np.float32),
        )
        return path

    def gmm(self) -> Path:
        path = self._mk(self.layout.gmm_prior)
        data = {
            "means": np.zeros((8, 69)),
            "covars": np.tile(np.eye(69), (8, 1, 1)),
            "weights": np.full(8, 0.125),
        }
        path.write_bytes(pickle.dumps(data, protocol=4))
        return path

    def checkpoint(
        self,
        path: Optional[Path] = None,
        keys=("backbone.conv1.weight", "head.fc1.weight", "head.decpose.weight"),
    ) -> Path:
        import torch

        path = self._mk(path or self.layout.spin_official)
        torch.save({"state_dict": {k: torch.zeros(1) for k in keys}}, path)
        return path

    def annotation(
        self,
        dataset: str,
        name: Optional[str] = None,
        *,
        smpl: bool = False,
        gender: bool = False,
        legacy: bool = False,
    ) -> Path:
        n = self.n
        paths = [f"images/{dataset}_{i:04d}.jpg" for i in range(n)]
        fields: Dict[str, object] = {
            "image_path": np.array(paths),
            "bbox_xywh": np.tile(np.array([10.0, 10.0, 100.0, 120.0, 1.0]), (n, 1)),
            "keypoints2d": np.zeros((n, 190, 3), np.float32),
            "config": np.array(dataset),
        }
        if legacy:
            fields["__temporal_len__"] = np.array(n)
        else:
            fields["__data_len__"] = np.array(n)
        if smpl:
            fields["smpl"] = np.array(
                {
                    "body_pose": np.zeros((n, 23, 3)),
                    "global_orient": np.zeros((n, 3)),
                    "betas": np.zeros((n, 10)),
                },
                dtype=object,
            )
        if gender:
            fields["meta"] = np.array(
                {"gender": np.array(["m", "f"] * (n // 2) + ["m"] * (n % 2))}, dtype=object
            )
        path = self._mk(self.layout.preprocessed / (name or ANN_NAMES.get(dataset, f"{dataset}_test.npz")))
        np.savez_compressed(path, **fields)
        return path

    def images(self, dataset: str, skip: int = -1) -> None:
        for i in range(self.n):
            if i == skip:
                continue
            p = self._mk(self.layout.image(dataset, f"images/{dataset}_{i:04d}.jpg"))
            p.write_bytes(TINY_JPEG)  # a real (tiny) JPEG: check-layout --deep decodes images

    def fits(self, dataset: str, rows: Optional[int] = None) -> Path:
        path = self._mk(self.layout.static_fits(dataset))
        np.save(path, np.zeros((self.n if rows is None else rows, 82)))
        return path

    def cache(self) -> None:
        self.layout.cache.mkdir(parents=True, exist_ok=True)

    # whole jobs -----------------------------------------------------------------------------------
    def demo(self) -> None:
        self.smpl("neutral")
        self.mean_params()
        self.checkpoint(self.layout.models / "my_model.pth")

    def eval_pw3d(self) -> None:
        for g in ("neutral", "male", "female"):
            self.smpl(g)
        self.regressor("h36m")
        self.mean_params()
        self.annotation("pw3d", "pw3d_test.npz", smpl=True, gender=True)
        self.images("pw3d")
        self.checkpoint(self.layout.models / "my_model.pth")

    def finetune(self) -> None:
        self.smpl("neutral")
        self.regressor("extra")
        self.mean_params()
        self.gmm()
        self.checkpoint()
        for ds in SPIN_SETS:
            self.annotation(ds)
            self.images(ds)
            self.fits(ds)
        self.annotation("gta", smpl=True, legacy=True)
        self.images("gta")
        self.cache()
