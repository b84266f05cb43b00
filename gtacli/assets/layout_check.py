"""`check-layout`: does a data root hold what a job needs, at content level?

Per job (docs/reproduction.md §1.1–1.2, "Product decisions" 1–2):

* `eval-pw3d`: SMPL neutral+male+female, J_regressor_h36m, smpl_mean_params, the 3DPW annotation
  (`pw3d_test.npz`, or `spin_pw3d_test.npz` if it carries `smpl` and `meta.gender`), its images, a checkpoint;
* `finetune`: neutral SMPL, J_regressor_extra, smpl_mean_params, gmm_08.pkl (only the SMPLify fitter uses
  it), spin_official.pth, the seven annotation files and their images, the static fits of the six SPIN
  datasets (rows = annotation length; GTA fits optional because GT SMPL overrides them), `cache/`;
* `train`: finetune's list for the six SPIN datasets (no GTA), with gmm_08.pkl required;
* `demo`: neutral SMPL, smpl_mean_params, a checkpoint;
* `all`: the union.

Each check returns a `CheckItem` (item, path, ok, detail, fix command, required). Files the lock file
records are compared with it (size and mtime; sha256 with `deep`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from gtacli.assets.lockfile import read_lock_file
from gtacli.assets.manifest import (
    Asset,
    Manifest,
    load_manifest,
    validate_asset,
    validate_checkpoint,
    validate_human_data,
    validate_npy,
)
from gtacli.assets.smpl_import import SMPL_SOURCES, check_smpl_arrays
from gtacli.body.smpl import load_smpl_arrays
from gtacli.data.annotation_checks import check_gt_smpl
from gtacli.data.human_data import HumanData
from gtacli.errors import GtacliError, UsageError
from gtacli.io.hashing import sha256_file
from gtacli.io.image_check import check_image_decodes, check_image_header
from gtacli.io.safe import load_npy, load_npz
from gtacli.layout import ANNOTATION_ALIASES, TRAIN_DATASETS, DataLayout

JOBS = ("eval-pw3d", "finetune", "train", "demo", "all")
SPIN_DATASETS = ("h36m", "mpi_inf_3dhp", "lsp", "lspet", "mpii", "coco")  # config order, no GTA
FINETUNE_DATASETS = SPIN_DATASETS + ("gta",)
IMAGE_SAMPLE_SIZE = 16  # image paths checked per dataset without --deep
DECODE_SAMPLE_SIZE = (
    32  # images decoded per dataset with --deep (every header is read; all decoded: --decode-all)
)
FITS_SCAN_ROWS = 1 << 16  # rows of a static-fits file read at once when scanning for NaN/inf
FITS_COLUMNS = 82  # 72 pose (axis-angle) + 10 betas per row (docs/reproduction.md §7)
CHECKPOINT_KEYS = ("head.fc1.weight", "head.decpose.weight", "backbone.conv1.weight")


@dataclass
class CheckItem:
    item: str
    path: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        if not self.required:
            return "warn"
        return "MISSING" if self.detail.startswith(("not found", "absent")) else "FAIL"

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status
        return d


@dataclass
class LayoutReport:
    job: str
    root: str
    synthetic: bool
    items: List[CheckItem]

    @property
    def ok(self) -> bool:
        return all(i.ok or not i.required for i in self.items)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "job": self.job,
            "data_root": self.root,
            "synthetic": self.synthetic,
            "ok": self.ok,
            "items": [i.to_dict() for i in self.items],
        }


class _Checker:
    def __init__(self, layout: DataLayout, manifest: Manifest, deep: bool, decode_all: bool = False):
        self.layout = layout
        self.manifest = manifest
        self.deep = deep
        self.decode_all = decode_all
        self.lock = _read_lock(layout)
        self._done: Dict[str, CheckItem] = {}
        self._lengths: Dict[str, Optional[int]] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def once(self, key: str, fn: Callable[[], CheckItem]) -> CheckItem:
        if key not in self._done:
            self._done[key] = fn()
        return self._done[key]

    def _asset_for(self, path: Path) -> Optional[Asset]:
        try:
            rel = path.relative_to(self.layout.root)
        except ValueError:
            return None
        return self.manifest.by_dest(rel.as_posix())

    def _lock_check(self, path: Path, asset: Optional[Asset]) -> str:
        """'' when fine/not recorded, else why the file differs from what was fetched (raises)."""
        if asset is None:
            return ""
        record = self.lock.get(asset.name)
        st = path.stat()
        if record:
            if self.deep or record.get("size") != st.st_size:
                sha = sha256_file(path)
                if sha != record.get("sha256"):
                    raise GtacliError(
                        "sha256 differs from the lock file (the file changed after it was fetched)",
                        fix=f"gtacli fetch --force {asset.name}",
                    )
                return "; sha256 = lock file"
            if record.get("mtime_ns") != st.st_mtime_ns:
                return "; modified since fetched (run with --deep to re-hash)"
            return "; matches lock file"
        # A synthetic tree's stand-ins never match the published hashes; only real trees are compared.
        if self.deep and (asset.sha256 or asset.sha256_prefix) and not self.layout.is_synthetic:
            if not asset.check_sha256(sha256_file(path)):
                raise GtacliError(
                    "sha256 does not match the manifest", fix=f"gtacli fetch --force {asset.name}"
                )
            return "; sha256 = manifest"
        return ""

    def file_item(
        self,
        label: str,
        path: Path,
        check: Callable[[Path], str],
        fix: str,
        required: bool = True,
        note: str = "",
    ) -> CheckItem:
        if not path.is_file():
            detail = "not found" + (f" ({note})" if note else "")
            return CheckItem(label, str(path), False, detail, fix, required)
        try:
            detail = check(path)
            detail += self._lock_check(path, self._asset_for(path))
            if note:
                detail += f" ({note})"
            return CheckItem(label, str(path), True, detail, "", required)
        except GtacliError as exc:
            return CheckItem(label, str(path), False, exc.problem, exc.fix or fix, required)
        except Exception as exc:  # an unreadable file of a kind we did not foresee: say so, do not crash
            return CheckItem(label, str(path), False, f"{type(exc).__name__}: {exc}", fix, required)

    def asset_item(self, name: str, required: bool = True, note: str = "") -> CheckItem:
        asset = self.manifest.get(name)
        path = asset.path(self.layout.root)
        return self.once(
            f"asset:{name}",
            lambda: self.file_item(
                f"{name}", path, lambda p: validate_asset(asset, p), asset.fix_command, required, note
            ),
        )

    # -- body models -----------------------------------------------------------------------------
    def smpl(self, gender: str) -> CheckItem:
        path = self.layout.smpl_model(gender)
        fix = f"gtacli fetch --smpl-from <SMPL zip>  (get it from {SMPL_SOURCES[gender]})"

        def check(p: Path) -> str:
            try:
                return _check_smpl_file(p)
            except GtacliError as exc:
                raise GtacliError(exc.problem, fix=fix) from None

        return self.once(f"smpl:{gender}", lambda: self.file_item(f"SMPL {gender}", path, check, fix))

    # -- annotations -----------------------------------------------------------------------------
    def annotation(self, dataset: str, required: bool = True) -> Tuple[CheckItem, Optional[Path]]:
        key = f"ann:{dataset}"
        if key in self._done:
            item = self._done[key]
            return item, Path(item.path) if item.ok else None
        if dataset == "pw3d":
            item, path = self._pw3d_annotation()
        else:
            path = self.layout.annotation(dataset)
            names = ANNOTATION_ALIASES.get(dataset, (path.name,))
            asset = self.manifest.by_dest(f"preprocessed_datasets/{names[0]}")
            fix = f"gtacli fetch {asset.name}" if asset else f"place {names[0]} in {self.layout.preprocessed}"
            note = f"alias of {names[0]}" if path.name != names[0] else ""
            item = self.file_item(
                f"annotation {dataset}",
                path,
                lambda p: self._check_annotation(dataset, p),
                fix,
                required,
                note,
            )
        self._done[key] = item
        return item, path if item.ok else None

    def _check_annotation(self, dataset: str, path: Path) -> str:
        n, detail = validate_human_data(path, ("image_path", "bbox_xywh"), deep=self.deep)
        self._lengths[dataset] = n
        if dataset == "h36m":
            with load_npz(path) as npz:
                has_smpl = "smpl" in npz
            detail += (
                ", carries SMPL"
                if has_smpl
                else ", no SMPL (H36M supervised by h36m_fits.npy, docs/reproduction.md §2.5)"
            )
        if dataset == "gta":
            with load_npz(path) as npz:
                if "smpl" not in npz:
                    raise GtacliError("gta annotation lacks 'smpl' (GT SMPL is required for GTA)", path=path)
        return detail

    def _pw3d_annotation(self) -> Tuple[CheckItem, Optional[Path]]:
        names = ANNOTATION_ALIASES["pw3d"]
        tried: List[CheckItem] = []
        for name in names:
            path = self.layout.preprocessed / name
            if not path.is_file():
                continue
            note = "" if name == names[0] else f"alias of {names[0]}"
            item = self.file_item(
                "annotation pw3d", path, self._check_pw3d, f"gtacli fetch {names[0][:-4]}", True, note
            )
            if item.ok:
                return item, path
            tried.append(item)
        if tried:
            return tried[0], None
        path = self.layout.preprocessed / names[0]
        return CheckItem(
            "annotation pw3d", str(path), False, f"not found (nor {names[1]})", "gtacli fetch pw3d_test"
        ), None

    def _check_pw3d(self, path: Path) -> str:
        n, detail = validate_human_data(path, ("image_path", "bbox_xywh"), deep=self.deep)
        self._lengths["pw3d"] = n
        with load_npz(path) as npz:
            if "smpl" not in npz or "meta" not in npz:
                raise GtacliError(
                    "has no 'smpl' and 'meta' (gendered GT SMPL is needed for the 3DPW protocol)",
                    path=path,
                    fix="gtacli fetch pw3d_test",
                )
            smpl, meta = npz["smpl"], npz["meta"]
        if not isinstance(smpl, dict) or not isinstance(meta, dict):
            raise GtacliError("'smpl'/'meta' are not dicts", path=path, fix="gtacli fetch pw3d_test")
        # the checks eval applies before scoring (shapes, NaN/inf in the ground truth, genders)
        gender = check_gt_smpl(HumanData.load(path, use_cache=False), path)
        return f"{detail}, gendered SMPL ({gender.count('m')} m / {gender.count('f')} f)"

    def length(self, dataset: str) -> Optional[int]:
        return self._lengths.get(dataset)

    # -- images ----------------------------------------------------------------------------------
    def images(self, dataset: str, ann_path: Optional[Path], required: bool = True) -> CheckItem:
        root = self.layout.image_root(dataset)
        fix = f"put the {dataset} images under {root}/ (docs/reproduction.md §1.1 image paths)"

        def run() -> CheckItem:
            label = f"images {dataset}"
            if ann_path is None:
                return CheckItem(
                    label, str(root), False, "not checked: the annotation is not usable", fix, required
                )
            try:
                with load_npz(ann_path) as npz:
                    paths = npz["image_path"]
            except GtacliError as exc:
                return CheckItem(label, str(root), False, exc.problem, fix, required)
            paths = [p.decode() if isinstance(p, bytes) else str(p) for p in np.asarray(paths).ravel()]
            if not paths:
                return CheckItem(label, str(root), False, "the annotation lists no images", fix, required)
            if self.deep:
                picked = sorted(set(paths))
            else:
                idx = np.unique(
                    np.linspace(0, len(paths) - 1, min(IMAGE_SAMPLE_SIZE, len(paths))).astype(int)
                )
                picked = [paths[i] for i in idx]
            missing = [p for p in picked if not (root / p).is_file()]
            what = f"all {len(picked)} distinct" if self.deep else f"{len(picked)} sampled"
            if missing:
                return CheckItem(
                    label,
                    str(root),
                    False,
                    f"{len(missing)} of {what} image paths absent, e.g. {root / missing[0]}",
                    fix,
                    required,
                )
            if self.deep:
                bad = self._unreadable_images(root, picked)
                if bad:
                    examples = ", ".join(f"{p} ({why})" for p, why in bad[:3])
                    return CheckItem(
                        label,
                        str(root),
                        False,
                        f"{len(bad)} of {what} images unreadable, e.g. {examples}",
                        f"replace those files (download or extract the {dataset} images again)",
                        required,
                    )
                decoded = (
                    "all decoded" if self.decode_all else f"{min(DECODE_SAMPLE_SIZE, len(picked))} decoded"
                )
                return CheckItem(
                    label, str(root), True, f"{what} image paths exist, headers ok, {decoded}", "", required
                )
            return CheckItem(label, str(root), True, f"{what} image paths exist", "", required)

        return self.once(f"img:{dataset}", run)

    def _unreadable_images(self, root: Path, paths: Sequence[str]) -> List[Tuple[str, str]]:
        """(path, why) of images whose header is not a JPEG/PNG's, or that do not decode (a spread sample of
        DECODE_SAMPLE_SIZE, or all with `decode_all`)."""
        bad = [(p, why) for p in paths if (why := check_image_header(root / p))]
        failed = {p for p, _ in bad}
        left = [p for p in paths if p not in failed]
        if not self.decode_all and len(left) > DECODE_SAMPLE_SIZE:
            left = [left[i] for i in np.unique(np.linspace(0, len(left) - 1, DECODE_SAMPLE_SIZE).astype(int))]
        bad += [(p, why) for p in left if (why := check_image_decodes(root / p))]
        return bad

    # -- fits ------------------------------------------------------------------------------------
    def fits(self, dataset: str, required: bool = True, note: str = "") -> CheckItem:
        path = self.layout.static_fits(dataset)
        name = f"{dataset}_fits"

        def check(p: Path) -> str:
            detail = validate_npy(p, (None, FITS_COLUMNS), "float", fix=f"gtacli fetch --force {name}")
            rows, bad = fits_rows_and_non_finite(p)
            if bad:
                raise GtacliError(
                    f"{bad} of {rows} rows hold NaN/inf (finetune refuses such fits)",
                    fix=f"gtacli fetch --force {name}, or re-create the fits",
                )
            n = self.length(dataset)
            if n is None:
                return detail + "; annotation length unknown (annotation not usable)"
            if not required and rows > n:
                # optional fits (gta: GT SMPL overrides them) only need a row per sample (docs/reproduction.md §7.2: >= N)
                return detail + f"; {rows} rows >= annotation length {n}"
            if rows != n:
                raise GtacliError(
                    f"{rows} rows but the {dataset} annotation has {n} frames (fits must match it row by row)",
                    fix=f"gtacli fetch --force {name}, or fetch the annotation that belongs to these fits",
                )
            return detail + f"; rows = annotation length {n}"

        return self.once(
            f"fits:{dataset}",
            lambda: self.file_item(
                f"static fits {dataset}", path, check, f"gtacli fetch {name}", required, note
            ),
        )

    # -- checkpoints -----------------------------------------------------------------------------
    def any_checkpoint(self) -> CheckItem:
        def run() -> CheckItem:
            published = self.manifest.get("resnet50_spin_gta_ft").path(self.layout.root)
            candidates = [published]
            for folder in (self.layout.models, self.layout.pretrained_models):
                if folder.is_dir():
                    candidates += sorted(p for p in folder.glob("*.pth") if p != published)
            candidates.append(self.layout.spin_official)
            seen = set()
            first_bad: Optional[CheckItem] = None
            for path in candidates:
                if path in seen or not path.is_file():
                    continue
                seen.add(path)
                item = self.file_item(
                    "checkpoint",
                    path,
                    lambda p: validate_checkpoint(p, CHECKPOINT_KEYS),
                    "gtacli fetch resnet50_spin_gta_ft",
                )
                if item.ok:
                    return item
                first_bad = first_bad or item
            return first_bad or CheckItem(
                "checkpoint",
                str(published),
                False,
                "not found (no .pth in models/ or pretrained_models/)",
                "gtacli fetch resnet50_spin_gta_ft",
            )

        return self.once("checkpoint", run)

    def cache_dir(self) -> CheckItem:
        path = self.layout.cache

        def run() -> CheckItem:
            if not path.is_dir():
                # mmhuman3d's data trees often have no cache/: training creates it when the root is writable
                if os.access(path.parent, os.W_OK):
                    return CheckItem("cache folder", str(path), True, "absent; created on first run")
                return CheckItem(
                    "cache folder",
                    str(path),
                    False,
                    "absent and the data root is not writable (training writes its caches here)",
                    f"mkdir -p {path}",
                )
            if not os.access(path, os.W_OK):
                return CheckItem("cache folder", str(path), False, "not writable", f"chmod u+w {path}")
            return CheckItem("cache folder", str(path), True, "exists, writable")

        return self.once("cache", run)


def fits_rows_and_non_finite(path: Path) -> Tuple[int, int]:
    """(rows, rows holding NaN/inf) of a static-fits array, scanned memory-mapped in chunks."""
    arr = load_npy(path, mmap=True)
    rows = int(arr.shape[0])
    bad = 0
    for start in range(0, rows, FITS_SCAN_ROWS):
        chunk = np.asarray(arr[start : start + FITS_SCAN_ROWS])
        bad += int((~np.isfinite(chunk).all(axis=1)).sum())
    del arr
    return rows, bad


def _read_lock(layout: DataLayout) -> Dict[str, Any]:
    return read_lock_file(layout)


def _check_smpl_file(path: Path) -> str:
    """Load a body model the way every job will (`body.smpl.load_smpl_arrays`: plain numpy or the official
    chumpy pickle read in place through inert stand-ins)."""
    arrays = check_smpl_arrays(load_smpl_arrays(path), path)  # SMPL proper: 6890 vertices
    legacy = _has_legacy_classes(path)
    detail = f"{arrays['v_template'].shape[0]} vertices, {arrays['shapedirs'].shape[2]} shape components"
    return detail + (", official pickle read in place" if legacy else "")


def _has_legacy_classes(path: Path) -> bool:
    with open(path, "rb") as fp:
        return any(marker in fp.read() for marker in (b"chumpy", b"scipy.sparse"))


# --------------------------------------------------------------------------------------------------


def _job_items(c: _Checker, job: str) -> List[CheckItem]:
    items: List[CheckItem] = []
    if job == "eval-pw3d":
        items += [c.smpl("neutral"), c.smpl("male"), c.smpl("female")]
        items += [c.asset_item("J_regressor_h36m"), c.asset_item("smpl_mean_params")]
        ann, path = c.annotation("pw3d")
        items += [ann, c.images("pw3d", path), c.any_checkpoint()]
    elif job in ("finetune", "train"):
        datasets = FINETUNE_DATASETS if job == "finetune" else SPIN_DATASETS
        items += [c.smpl("neutral"), c.asset_item("J_regressor_extra"), c.asset_item("smpl_mean_params")]
        if job == "finetune":
            items.append(
                c.asset_item(
                    "gmm_08", required=False, note="only the SMPLify fitter uses it; static fits do not"
                )
            )
        else:
            items.append(c.asset_item("gmm_08", note="GMM pose prior of the in-the-loop SMPLify fits"))
        if job == "finetune":
            items.append(c.asset_item("spin_official"))
        else:  # the spin recipe starts from ImageNet weights unless --init PATH is given
            items.append(
                c.asset_item(
                    "resnet50_imagenet",
                    required=False,
                    note="only for --init imagenet (the spin recipe's default)",
                )
            )
        for ds in datasets:
            ann, path = c.annotation(ds)
            items += [ann, c.images(ds, path)]
        for ds in datasets:
            if ds == "gta":
                if c.layout.static_fits("gta").exists():
                    items.append(c.fits("gta", required=False, note="optional: GTA's GT SMPL overrides fits"))
            else:
                items.append(c.fits(ds))
        items.append(c.cache_dir())
    elif job == "demo":
        items += [c.smpl("neutral"), c.asset_item("smpl_mean_params"), c.any_checkpoint()]
    else:
        raise GtacliError(f"unknown job '{job}'", fix=f"use one of: {', '.join(JOBS)}")
    return items


def check_layout(
    root: Any,
    job: str = "all",
    *,
    deep: bool = False,
    decode_all: bool = False,
    manifest: Optional[Manifest] = None,
) -> LayoutReport:
    """Check the data root for `job` ('eval-pw3d' | 'finetune' | 'train' | 'demo' | 'all')."""
    if job not in JOBS:
        raise UsageError(f"unknown job '{job}'", fix=f"use --for one of: {', '.join(JOBS)}")
    layout = DataLayout(root)
    checker = _Checker(layout, manifest or load_manifest(), deep or decode_all, decode_all)
    # 'train' before 'finetune' so that items both share take train's stricter requirement (gmm_08).
    jobs: Sequence[str] = ("eval-pw3d", "train", "finetune", "demo") if job == "all" else (job,)
    items: List[CheckItem] = []
    seen = set()
    for j in jobs:
        for item in _job_items(checker, j):
            if id(item) not in seen:  # shared items (e.g. SMPL neutral) appear once
                seen.add(id(item))
                items.append(item)
    return LayoutReport(job, str(layout.root), layout.is_synthetic, items)


__all__ = ["CheckItem", "LayoutReport", "check_layout", "JOBS", "TRAIN_DATASETS"]
