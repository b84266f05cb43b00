"""Which SMPLify fits best, and how fast: gtacli's default against SPIN's and mmhuman3d's formulations.

One command:  python benchmarks/bench_fitter.py [--batch 32] [--repeats 2] [--lsp-samples 64] [--spin-src PATH]

Body model: the synthetic 6890-vertex SMPL of `gtacli.sample.synthetic_smpl` (the real SMPL is licensed and
not available here) with the real J_regressor_extra.npy and the real gmm_08.pkl from ../shared/assets
(GTACLI_SHARED_ASSETS). Everything runs on the CPU with one torch thread per fit (what `gtacli fit` uses
for batches up to 128).

A. Synthetic problem with known ground truth (`--batch` bodies): body poses drawn from the GMM prior
   itself, upright bodies turned up to ±86° about the vertical, betas ~ N(0, 1), 40–55 m from the f = 5000
   crop camera; keypoints as a real annotation has them: the 14 LSP joints (3 px noise, confidence 1) and
   OpenPose's 25 (6 px noise, confidence 0.3–0.95, 15 % missed). The start plays a network prediction
   (pose + 0.2 rad noise, zero betas) with the translation by least squares on the keypoints.
   Reported: MPJPE and PA-MPJPE (mm, 24 joints smpl_49[25:], pelvis = mean of the hips) and wall time, for
   the start, `--method spin`, `--method mmhuman3d`, `--method gtacli` (the default), each the median of
   `--repeats` interleaved runs; with `--spin-src` also SPIN's own `smplify/smplify.py` (its code, imported
   from that checkout at run time) on the same inputs.

B. Real 2D keypoints: the first `--lsp-samples` of SPIN's LSP training annotations (lsp_dataset_original_train.npz:
   ground-truth 14 joints + OpenPose, cropped with the annotation's centre and scale·200 px side), fitted
   from the mean parameters. Each fit, and SPIN's published static fit of the same sample
   (lsp-orig_fits.npy), is placed by `estimate_translation` on the ground-truth joints (as training places
   a fit); reported: mean 2D reprojection error of the confident ground-truth joints in the 224 crop and the
   GMM prior value (unweighted). NOTE: SPIN's fits were made with the real SMPL and are evaluated here with
   the synthetic one, so their error includes the body-model difference; read B as "our fits explain the
   keypoints as well as published fits explain them", not as a like-for-like comparison.

Results go to benchmarks/results/fitter.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch

from gtacli.body.camera import estimate_translation
from gtacli.body.rotations import axis_angle_to_matrix, axis_angle_to_matrix_np
from gtacli.body.smpl import BodyModel
from gtacli.evaluate.metrics import compute_similarity_transform
from gtacli.fit.batch import mean_init
from gtacli.fit.config import RegistrationConfig
from gtacli.fit.methods import build_fitter
from gtacli.fit.priors import MaxMixturePrior, load_gmm
from gtacli.fit.runner import DEFAULT_METHOD, crop_keypoints
from gtacli.io.atomic import atomic_write_text
from gtacli.sample.poses import matrix_to_axis_angle_np, rot_x, rot_y
from gtacli.sample.synthetic_smpl import make_synthetic_smpl, write_synthetic_smpl

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GTACLI_SHARED_ASSETS", REPO.parent / "shared" / "assets"))
RESULT = REPO / "benchmarks" / "results" / "fitter.json"
LSP14 = list(range(25, 39))  # smpl_49 slots of LSP's 14 annotated joints
METHODS = ("spin", "mmhuman3d", "gtacli")
SPIN_CROP_UNIT = 200.0  # SPIN's `scale` is the box side / 200 px
NEAR_TRUTH_DEG = 15.0  # a near-truth start's global orient is at most this far from the truth
TURNED_DEG = 90.0  # a fit whose global orient is farther than this from the truth is turned around


# --- inputs ---------------------------------------------------------------------------------------------
def synthetic_problem(body_model: BodyModel, gmm: Dict[str, np.ndarray], n: int, seed: int) -> Dict[str, Any]:
    rng = np.random.default_rng(seed)
    weights = gmm["weights"] / gmm["weights"].sum()
    comp = rng.choice(len(weights), n, p=weights)
    chol = np.linalg.cholesky(gmm["covars"])
    body_pose = gmm["means"][comp] + np.einsum("nij,nj->ni", chol[comp], rng.normal(size=(n, 69)))
    orient = np.stack(
        [
            matrix_to_axis_angle_np(rot_y(rng.uniform(-1.5, 1.5)) @ rot_x(math.pi + rng.uniform(-0.2, 0.2)))
            for _ in range(n)
        ]
    )
    betas = rng.normal(0, 1, (n, 10))
    transl = np.stack([rng.normal(0, 0.1, n), rng.normal(0, 0.1, n), rng.uniform(40, 55, n)], 1)
    t32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        joints = body_model(t32(betas), t32(body_pose), t32(orient)).joints + t32(transl)[:, None]
    uv = 5000.0 * joints[..., :2] / joints[..., 2:] + 112.0
    kp = torch.zeros(n, 49, 3)
    kp[:, LSP14, :2] = uv[:, LSP14] + 3.0 * t32(rng.normal(size=(n, 14, 2)))
    kp[:, LSP14, 2] = 1.0
    conf = t32(rng.uniform(0.3, 0.95, (n, 25)))
    missed = t32(rng.uniform(size=(n, 25))) < 0.15
    conf[missed] = 0.0
    kp[:, :25, :2] = torch.where(missed[..., None], 0.0, uv[:, :25] + 6.0 * t32(rng.normal(size=(n, 25, 2))))
    kp[:, :25, 2] = conf
    pose = t32(np.concatenate([orient, body_pose], 1))
    # near-truth start (a network's prediction): body pose + 0.2 rad noise, the global orient turned about a
    # random axis by at most NEAR_TRUTH_DEG
    near = pose + 0.2 * t32(rng.normal(size=(n, 72)))
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    tilt = axis * np.radians(rng.uniform(0, NEAR_TRUTH_DEG, (n, 1)))
    near[:, :3] = t32(
        np.stack(
            [
                matrix_to_axis_angle_np(axis_angle_to_matrix_np(t) @ axis_angle_to_matrix_np(o))
                for t, o in zip(tilt, orient)
            ]
        )
    )
    starts = {"near_truth": near, "mean_pose": mean_pose(n)}
    inits = {}
    for name, init_pose in starts.items():
        init_betas = torch.zeros(n, 10)
        with torch.no_grad():
            start_joints = body_model(init_betas, init_pose[:, 3:], init_pose[:, :3]).joints
        init_t, _ = estimate_translation(start_joints, kp)
        inits[name] = {"pose": init_pose, "betas": init_betas, "transl": init_t}
    return {"truth": {"pose": pose, "betas": t32(betas)}, "inits": inits, "kp": kp}


def mean_pose(n: int) -> torch.Tensor:
    """(n, 72) the mean parameters' pose (SMPLify's start without a network), facing the camera."""
    params = {
        "pose": np.load(SHARED / "smpl_mean_params.npz")["pose"],
        "shape": np.zeros(10),
        "cam": np.zeros(3),
    }
    return mean_init(params, n)["pose"].float().clone()


def concat_problems(problems: List[Dict[str, Any]]) -> Dict[str, Any]:
    cat = lambda items: {k: torch.cat([i[k] for i in items]) for k in items[0]}  # noqa: E731
    return {
        "truth": cat([p["truth"] for p in problems]),
        "kp": torch.cat([p["kp"] for p in problems]),
        "inits": {name: cat([p["inits"][name] for p in problems]) for name in problems[0]["inits"]},
    }


def lsp_problem(n: int) -> Dict[str, Any]:
    data = np.load(SHARED / "lsp_dataset_original_train.npz", allow_pickle=False)
    kp_image = np.zeros((n, 49, 3))
    kp_image[:, :25] = data["openpose"][:n]
    kp_image[:, 25:] = data["part"][:n]
    sides = SPIN_CROP_UNIT * data["scale"][:n]
    kp = crop_keypoints(kp_image, data["center"][:n], sides)
    fits = np.load(SHARED / "lsp-orig_fits.npy", allow_pickle=False)[:n]
    return {"kp": torch.as_tensor(kp, dtype=torch.float32), "spin_fits": fits}


# --- metrics --------------------------------------------------------------------------------------------
def joint_errors_mm(body_model: BodyModel, truth: Dict[str, torch.Tensor], pose, betas) -> Dict[str, float]:
    with torch.no_grad():
        gt = body_model(truth["betas"], truth["pose"][:, 3:], truth["pose"][:, :3]).joints[:, 25:].double()
        fit = body_model(betas.float(), pose[:, 3:].float(), pose[:, :3].float()).joints[:, 25:].double()
    pelvis = lambda j: j[:, 2:4].mean(1, keepdim=True)  # noqa: E731  right/left hip of smpl_24
    mpjpe = ((fit - pelvis(fit)) - (gt - pelvis(gt))).norm(dim=-1).mean(-1) * 1000
    aligned = compute_similarity_transform(fit, gt)
    pa = (aligned - gt).norm(dim=-1).mean(-1) * 1000
    angle = orientation_error_deg(pose[:, :3].float(), truth["pose"][:, :3])
    return {
        "mpjpe_mm": float(mpjpe.mean()),
        "pa_mpjpe_mm": float(pa.mean()),
        "turned_around": int((angle > TURNED_DEG).sum()),
        "orient_error_deg_median": float(angle.median()),
    }


def orientation_error_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) angle of the rotation between two global orients (axis-angle (N, 3)), degrees."""
    rel = axis_angle_to_matrix(a).transpose(-1, -2) @ axis_angle_to_matrix(b)
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.acos(cos))


def reprojection_gt_px(body_model: BodyModel, pose, betas, kp: torch.Tensor) -> np.ndarray:
    """(N,) mean pixel error of the confident ground-truth joints, the fit placed by estimate_translation."""
    with torch.no_grad():
        joints = body_model(betas.float(), pose[:, 3:].float(), pose[:, :3].float()).joints
    transl, _ = estimate_translation(joints, kp)
    cam = joints + transl[:, None]
    uv = 5000.0 * cam[..., :2] / cam[..., 2:] + 112.0
    used = kp[:, 25:, 2] > 0
    dist = (uv[:, 25:] - kp[:, 25:, :2]).norm(dim=-1) * used
    return (dist.sum(-1) / used.sum(-1).clamp(min=1)).numpy()


# --- SPIN's own code, imported from a checkout ----------------------------------------------------------
class SpinReference:
    """SPIN's `smplify.SMPLify` from `--spin-src`, on the same synthetic body model and GMM (files in a temp dir).

    Shims, not changes to SPIN: its `models/__init__` and `utils/__init__` import torchvision and tensorboard
    (for the network and the trainer, not needed by SMPLify), so both are registered as bare packages whose
    modules load on demand; newer smplx renamed `ModelOutput` to `SMPLOutput`."""

    def __init__(self, spin_src: Path, folder: Path, extra_path: Path, gmm_path: Path):
        import smplx.body_models

        if not hasattr(smplx.body_models, "ModelOutput"):
            smplx.body_models.ModelOutput = smplx.body_models.SMPLOutput
        sys.path.insert(0, str(spin_src))
        for name in ("models", "utils"):
            package = types.ModuleType(name)
            package.__path__ = [str(spin_src / name)]
            sys.modules.setdefault(name, package)
        import config as spin_config  # SPIN's config.py

        write_synthetic_smpl(folder / "smpl" / "SMPL_NEUTRAL.pkl")
        spin_config.SMPL_MODEL_DIR = str(folder / "smpl")
        spin_config.JOINT_REGRESSOR_TRAIN_EXTRA = str(extra_path)
        (folder / "data").mkdir(exist_ok=True)
        (folder / "data" / "gmm_08.pkl").write_bytes(Path(gmm_path).read_bytes())
        self.prior_shim = not (spin_src / "smplify" / "prior.py").is_file()
        if (
            self.prior_shim
        ):  # a checkout without smplify/prior.py: the same GMM prior from gtacli, noted in the JSON
            sys.modules["smplify.prior"] = _prior_shim_module()
        from smplify import SMPLify  # SPIN's smplify package

        with _chdir(folder):  # SPIN reads the prior from the relative folder 'data'
            self.smplify = SMPLify(
                step_size=1e-2, batch_size=32, num_iters=100, focal_length=5000.0, device=torch.device("cpu")
            )

    def fit(self, init: Dict[str, torch.Tensor], kp: torch.Tensor) -> Dict[str, Any]:
        centre = torch.full((kp.shape[0], 2), 112.0)
        out = self.smplify(
            init["pose"].clone(), init["betas"].clone(), init["transl"].clone(), centre, kp.clone()
        )
        _, joints, pose, betas, transl, reprojection = out
        return {"pose": pose, "betas": betas, "criterion": reprojection.mean(-1)}


def _prior_shim_module() -> types.ModuleType:
    """`smplify.prior.MaxMixturePrior(prior_folder, num_gaussians, dtype)` called as `prior(pose, betas)`."""

    class ShimPrior(torch.nn.Module):
        def __init__(
            self, prior_folder: str = "prior", num_gaussians: int = 8, dtype=torch.float32, **_: Any
        ):
            super().__init__()
            self.prior = MaxMixturePrior.from_pickle(Path(prior_folder) / f"gmm_0{num_gaussians}.pkl")

        def forward(self, pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
            return self.prior(pose)

    module = types.ModuleType("smplify.prior")
    module.MaxMixturePrior = ShimPrior
    return module


@contextlib.contextmanager
def _chdir(folder: Path):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


# --- goals ----------------------------------------------------------------------------------------------
def synthetic_goal(section: Dict[str, Any], start_name: str) -> Dict[str, Any]:
    """Issue 21's goals for one start: the default against SPIN (its own code when run, else --method spin)."""
    default = section[DEFAULT_METHOD]
    spin = section.get("spin_reference_code", section["spin"])
    goal = {
        "compared_with": "spin_reference_code" if "spin_reference_code" in section else "spin",
        "default_mpjpe_le_spin": default["mpjpe_mm"] <= spin["mpjpe_mm"],
        "default_pa_mpjpe_le_spin": default["pa_mpjpe_mm"] <= spin["pa_mpjpe_mm"],
        "default_time_over_spin_time": default["seconds"] / section["spin"]["seconds"],
    }
    if start_name == "near_truth":
        goal["default_turned_around_is_0"] = default["turned_around"] == 0
    else:
        goal["default_turned_le_spin"] = default["turned_around"] <= spin["turned_around"]
    goal["met"] = bool(
        all(v for k, v in goal.items() if isinstance(v, bool))
        and goal["default_time_over_spin_time"] <= 1 / 3
    )
    return goal


# --- runs -----------------------------------------------------------------------------------------------
def timed(fn: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    torch.set_num_threads(1)
    start = time.perf_counter()
    result = fn()
    result["seconds"] = time.perf_counter() - start
    return result


def ours(fitter, init: Dict[str, torch.Tensor], kp: torch.Tensor) -> Callable[[], Dict[str, Any]]:
    def run() -> Dict[str, Any]:
        out = fitter.fit(init["pose"], init["betas"], init["transl"], kp)
        return {"pose": out.pose, "betas": out.betas, "criterion": out.keypoint_loss}

    return run


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--problems",
        type=int,
        default=2,
        help="synthetic batches of --batch bodies (seeds --seed, --seed+1, ...)",
    )
    parser.add_argument("--lsp-samples", type=int, default=64)
    parser.add_argument(
        "--spin-src", type=Path, default=None, help="a SPIN source checkout (github.com/nkolot/SPIN)"
    )
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    gmm_path, extra_path = SHARED / "gmm_08.pkl", SHARED / "J_regressor_extra.npy"
    for needed in (
        gmm_path,
        extra_path,
        SHARED / "lsp_dataset_original_train.npz",
        SHARED / "lsp-orig_fits.npy",
    ):
        if not needed.is_file():
            print(
                f"missing {needed}: set GTACLI_SHARED_ASSETS to the folder with the real assets",
                file=sys.stderr,
            )
            return 1
    body_model = BodyModel(make_synthetic_smpl(), np.load(extra_path, allow_pickle=False), None)
    gmm = load_gmm(gmm_path)
    prior = MaxMixturePrior.from_pickle(gmm_path)
    fitters = {
        m: build_fitter(body_model, gmm_path, RegistrationConfig(method=m), pose_prior=prior) for m in METHODS
    }
    facing_fitters = {
        rule: build_fitter(
            body_model,
            gmm_path,
            RegistrationConfig(method=DEFAULT_METHOD, facing_search=rule),
            pose_prior=prior,
        )
        for rule in ("auto", "always")
    }

    with tempfile.TemporaryDirectory() as tmp:
        spin_ref = (
            SpinReference(args.spin_src.resolve(), Path(tmp), extra_path, gmm_path) if args.spin_src else None
        )

        # A. synthetic, from two starts: near the truth (a network's prediction) and the mean pose
        problem = concat_problems(
            [synthetic_problem(body_model, gmm, args.batch, args.seed + k) for k in range(args.problems)]
        )
        kp, truth = problem["kp"], problem["truth"]
        synthetic: Dict[str, Any] = {}
        goal_a: Dict[str, Any] = {}
        for start_name, init in problem["inits"].items():
            # `gtacli fit` searches the facing direction of every mean-pose start, of a network's start only
            # where its torso's left and right are swapped (gtacli.fit.camera_init)
            chosen = facing_fitters["always" if start_name == "mean_pose" else "auto"]
            runs = {m: ours(chosen if m == DEFAULT_METHOD else fitters[m], init, kp) for m in METHODS}
            if spin_ref is not None:
                runs["spin_reference_code"] = lambda init=init: spin_ref.fit(init, kp)
            for fn in runs.values():  # warm-up
                timed(fn)
            results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name, fn in runs.items():
                    results[name].append(timed(fn))
            section: Dict[str, Any] = {
                "start": joint_errors_mm(body_model, truth, init["pose"], init["betas"])
            }
            for name, rs in results.items():
                section[name] = {
                    **joint_errors_mm(body_model, truth, rs[0]["pose"], rs[0]["betas"]),
                    "seconds": statistics.median(r["seconds"] for r in rs),
                    "seconds_all": [round(r["seconds"], 3) for r in rs],
                    "mean_fit_criterion": float(rs[0]["criterion"].mean()),
                }
            if spin_ref is not None:  # our --method spin against SPIN's code on the same inputs
                section["spin_vs_reference_code_max_abs_pose_diff"] = float(
                    (results["spin"][0]["pose"] - results["spin_reference_code"][0]["pose"]).abs().max()
                )
            synthetic[start_name] = section
            goal_a[start_name] = synthetic_goal(section, start_name)
        goal_a["met"] = all(g["met"] for g in goal_a.values())

        # B. LSP real keypoints
        lsp = lsp_problem(args.lsp_samples)
        n = args.lsp_samples
        start = {k: v.float() for k, v in mean_init(
            {"pose": np.load(SHARED / "smpl_mean_params.npz")["pose"], "shape": np.zeros(10), "cam": np.array([0.9, 0, 0])}, n
        ).items()}  # fmt: skip
        with torch.no_grad():
            start_joints = body_model(start["betas"], start["pose"][:, 3:], start["pose"][:, :3]).joints
        start_t, _ = estimate_translation(start_joints, lsp["kp"])
        lsp_init = {"pose": start["pose"].clone(), "betas": start["betas"].clone(), "transl": start_t}
        spin_fits = torch.as_tensor(lsp["spin_fits"], dtype=torch.float32)
        real: Dict[str, Any] = {}
        lsp_runs = {  # from the mean parameters, as `gtacli fit` without --init
            m: ours(facing_fitters["always"] if m == DEFAULT_METHOD else fitters[m], lsp_init, lsp["kp"])
            for m in METHODS
        }
        if spin_ref is not None:
            lsp_runs["spin_reference_code"] = lambda: spin_ref.fit(lsp_init, lsp["kp"])
        entries = [("spin_published_fits", {"pose": spin_fits[:, :72], "betas": spin_fits[:, 72:]})]
        entries += [(name, timed(fn)) for name, fn in lsp_runs.items()]
        if spin_ref is not None:
            lsp_diff = float((entries[-1][1]["pose"] - dict(entries)["spin"]["pose"]).abs().max())
        for name, res in entries:
            px = reprojection_gt_px(body_model, res["pose"], res["betas"], lsp["kp"])
            with torch.no_grad():
                gmm_value = prior(res["pose"][:, 3:].float()).numpy()
            real[name] = {
                "reprojection_px_mean": float(px.mean()),
                "reprojection_px_median": float(np.median(px)),
                "gmm_prior_mean": float(gmm_value.mean()),
                "gmm_prior_median": float(np.median(gmm_value)),
            }
            if "seconds" in res:
                real[name]["seconds"] = res["seconds"]
        if spin_ref is not None:
            real["spin_vs_reference_code_max_abs_pose_diff"] = lsp_diff
        goal_b = {
            "default_px_le_spin_fits": real[DEFAULT_METHOD]["reprojection_px_mean"]
            <= real["spin_published_fits"]["reprojection_px_mean"]
        }

    payload = {
        "benchmark": "fitter accuracy and time: gtacli default vs SPIN's and mmhuman3d's SMPLify formulations",
        "command": "python benchmarks/bench_fitter.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "default_method": DEFAULT_METHOD,
        "body_model": "synthetic 6890-vertex SMPL (gtacli.sample); the real SMPL is not available here",
        "assets": {"gmm": str(gmm_path), "j_regressor_extra": str(extra_path)},
        "batch": args.batch,
        "problems": args.problems,
        "bodies": args.batch * args.problems,
        "repeats": args.repeats,
        "torch_threads": 1,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "spin_src": str(args.spin_src) if args.spin_src else None,
        "spin_prior_from_gtacli": bool(spin_ref is not None and spin_ref.prior_shim),
        "synthetic": synthetic,
        "synthetic_goal": goal_a,
        "lsp_samples": n,
        "lsp": real,
        "lsp_goal": goal_b,
    }
    atomic_write_text(args.output, json.dumps(payload, indent=2) + "\n")
    print_table(payload)
    return 0


def _print_rows(section: Dict[str, Any], columns: List[Tuple[str, str, str]]) -> None:
    """One line per method: `columns` = (header, key, format); scalar entries print as `name: value`."""
    print(f"{'':24s} " + " ".join(f"{h:>10s}" for h, _, _ in columns))
    for name, r in section.items():
        if not isinstance(r, dict):
            print(f"{name}: {r:.3g}")
            continue
        print(f"{name:24s} " + " ".join(f"{r.get(key, float('nan')):>10{fmt}}" for _, key, fmt in columns))


def print_table(p: Dict[str, Any]) -> None:
    for start_name, section in p["synthetic"].items():
        print(
            f"A. synthetic, {p['bodies']} bodies, {start_name} start (synthetic SMPL, real GMM), median of "
            f"{p['repeats']} runs, 1 CPU thread"
        )
        _print_rows(
            section,
            [("MPJPE mm", "mpjpe_mm", ".1f"), ("PA-MPJPE", "pa_mpjpe_mm", ".1f"), ("turned>90", "turned_around", "d"),
             ("time s", "seconds", ".2f")],
        )  # fmt: skip
        g = p["synthetic_goal"][start_name]
        print(
            f"default ({p['default_method']}) vs {g['compared_with']}: "
            + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in g.items() if k != "compared_with")
        )  # fmt: skip
    print(
        f"B. LSP train, first {p['lsp_samples']} samples: 2D error of the GT joints in the 224 crop, GMM prior"
    )
    _print_rows(
        p["lsp"],
        [("mean px", "reprojection_px_mean", ".2f"), ("median px", "reprojection_px_median", ".2f"),
         ("GMM mean", "gmm_prior_mean", ".1f"), ("GMM median", "gmm_prior_median", ".1f"), ("time s", "seconds", ".2f")],
    )  # fmt: skip
    print(f"default <= SPIN's published fits: {p['lsp_goal']['default_px_le_spin_fits']}")


if __name__ == "__main__":
    sys.exit(main())
