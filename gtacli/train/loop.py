"""The training loop of `gtacli finetune` / `gtacli train` (docs/reproduction.md §6.1, §6.4, "Product decisions" 3–5).

One step = forward (float32; AMP on CUDA only with `--set amp=true`) → registration (static fits or
SMPLify in the loop; no grad) → the six losses of §6.2 on the neutral body model's joints/vertices →
backward → both Adams step (optional gradient clipping). Around it:

* data: the mixed sampler (`gtacli.data.mixed`), worker processes with prefetching and pinned memory;
* logs (rank 0): a progress bar with the loss breakdown, samples/s and data-wait vs compute time,
  `metrics.jsonl` in the run directory, TensorBoard events when `torch.utils.tensorboard` imports;
* checkpoints (rank 0, atomic): `epoch_<n>.pth` after every epoch plus `latest.pth`, and `latest.pth`
  when `--max-steps` stops a run; each holds the model, both optimisers, the AMP scaler, every rank's
  torch/numpy/python RNG states, the sampler position (epoch + samples consumed), the recipe, and the
  fits when they change (in-the-loop mode; also written as `fits/<ds>_fits.npy`);
* `--resume` restores all of it, so an interrupted run ends with the weights of an unbroken one;
* 3DPW evaluation after each epoch when the 3DPW files are present (the evaluator is passed in by the CLI).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from gtacli.errors import BadFileError, GtacliError, MissingFileError
from gtacli.io.atomic import ensure_writable_dir
from gtacli.layout import DataLayout
from gtacli.train.distributed import DistInfo, all_gather_objects, all_reduce_mean, barrier, init_distributed
from gtacli.train.losses import LOSS_NAMES, LossWeights, compute_losses
from gtacli.train.recipe import Recipe, recipe_differences, recipe_from_dict

# torchvision's ImageNet ResNet-50 (ResNet50_Weights.IMAGENET1K_V1) file, expected under the data root for
# `--init imagenet` (nothing is downloaded by training).
IMAGENET_WEIGHTS = Path("pretrained_models") / "resnet50-0676ba61.pth"
CHECKPOINT_FORMAT = "gtacli-train"
LATEST = "latest.pth"
METRICS_FILE = "metrics.jsonl"
RECIPE_FILE = "recipe.json"
# recipe fields that may change when resuming (they do not change the maths of the run)
RESUME_MUTABLE = ("epochs", "workers", "prefetch_factor", "log_interval", "eval_each_epoch")
SHORT_NAMES = {
    "keypoints3d_loss": "kp3d",
    "keypoints2d_loss": "kp2d",
    "vertex_loss": "vert",
    "smpl_pose_loss": "pose",
    "smpl_betas_loss": "betas",
    "camera_loss": "cam",
}


@dataclass
class TrainOptions:
    """What the CLI resolved: the recipe (with overrides) and the run's environment."""

    command: str  # 'finetune' | 'train'
    recipe: Recipe
    data_root: Path
    work_dir: Path
    init: Optional[str] = None  # path, 'imagenet', 'spin_official', 'none'; None = the recipe's
    device: str = "auto"
    seed: int = 0
    resume: Optional[Path] = None
    max_steps: Optional[int] = None
    progress: bool = True
    log: Callable[[str], None] = print
    warn: Callable[[str], None] = print
    # 3DPW evaluation after each epoch, `evaluator(model, layout, device=...) -> dict of metrics`; the CLI passes
    # gtacli.evaluate's (train and evaluate are on the same floor, so neither imports the other)
    evaluator: Optional[Callable[..., Any]] = None


@dataclass
class TrainState:
    epoch: int = 0  # current (0-based) epoch
    position: int = 0  # samples of `epoch` this rank has consumed
    global_step: int = 0
    samples_seen: int = 0  # across ranks

    def to_dict(self) -> Dict[str, int]:
        return dict(self.__dict__)


@dataclass
class StepTimes:
    data_s: float = 0.0
    compute_s: float = 0.0
    samples: int = 0
    steps: int = 0
    sums: Dict[str, float] = field(default_factory=dict)

    def add(self, losses: Dict[str, float]) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def means(self) -> Dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.sums.items()}


# ---------------------------------------------------------------------------------------------------------
# input checks (one line each, before anything is written)


def check_inputs(layout: DataLayout, recipe: Recipe, command: str) -> None:
    """Every file the recipe reads exists (else one MissingFileError naming them, pointing to check-layout)."""
    needed: List[Path] = [
        layout.smpl_model("neutral"),
        layout.j_regressor_extra,
        layout.smpl_mean_params,
    ]
    needed += [layout.annotation(ds) for ds in recipe.datasets]
    needed += [layout.static_fits(ds) for ds in recipe.datasets if ds not in recipe.fits_missing_ok]
    if recipe.registration_mode == "in_the_loop":
        needed.append(layout.gmm_prior)
    missing = [p for p in needed if not p.exists()]
    if missing:
        names = ", ".join(
            str(p.relative_to(layout.root)) if _under(p, layout.root) else str(p) for p in missing[:4]
        )
        more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        raise MissingFileError(
            f"recipe {recipe.name} needs {names}{more}",
            path=layout.root,
            fix=f"run `gtacli check-layout --for {command}` to see what to fetch or build",
        )


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def check_work_dir(work_dir: Path) -> None:
    """Prove the run directory can be created and written (no half-written file is left either way)."""
    # create nothing yet: a run refused later (bad --init, missing data) must not leave an empty folder;
    # the first atomic write (recipe.json) creates it
    ensure_writable_dir(work_dir, what="the work directory", fix="pass a writable --work-dir", create=False)


def resolve_resume(path: Path) -> Path:
    """A checkpoint file, or a run directory (its latest.pth, else its newest epoch_<n>.pth)."""
    path = Path(path)
    if path.is_dir():
        if (path / LATEST).is_file():
            return path / LATEST
        epochs = sorted(path.glob("epoch_*.pth"), key=lambda p: _epoch_number(p))
        if not epochs:
            raise MissingFileError(
                "no checkpoint to resume from (no latest.pth or epoch_<n>.pth)",
                path=path,
                fix="pass the run's --work-dir or a checkpoint file, or start without --resume",
            )
        return epochs[-1]
    if not path.is_file():
        raise MissingFileError(
            "checkpoint to resume from not found", path=path, fix="check the --resume path"
        )
    return path


def _epoch_number(path: Path) -> int:
    try:
        return int(path.stem.split("_")[-1])
    except ValueError:
        return -1


# ---------------------------------------------------------------------------------------------------------
# model, init, train mode


def set_train_mode(model: nn.Module, recipe: Recipe) -> None:
    """Train mode, except BatchNorm (eval when `bn_eval`: running statistics frozen) and dropout (off when
    `dropout` is False). Used for exact comparisons (DDP vs one process); the published run trains both."""
    model.train()
    for module in model.modules():
        if recipe.bn_eval and isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
        if not recipe.dropout and isinstance(module, nn.Dropout):
            module.eval()


def resolve_init(init: Optional[str], recipe: Recipe, layout: DataLayout) -> Optional[Path]:
    """The weights file of `--init` (None = random init)."""
    choice = init or recipe.init
    if choice in ("none", ""):
        return None
    if choice == "spin_official":
        path = layout.spin_official
    elif choice == "imagenet":
        path = layout.root / IMAGENET_WEIGHTS
    else:
        path = Path(choice)
    if not path.is_file():
        if choice == "imagenet":
            fix = (
                "run `gtacli fetch resnet50_imagenet` (torchvision's ImageNet ResNet-50), or pass --init PATH"
            )
            if layout.is_synthetic:  # the sample tree ships no ImageNet weights (size budget)
                fix += f" (on this synthetic tree: --init {layout.spin_official} or --init none)"
        else:
            fix = "run `gtacli fetch spin_official` or pass --init PATH"
        raise MissingFileError("--init weights not found", path=path, fix=fix)
    return path


def load_init(model: nn.Module, path: Path, command: str, log: Callable[[str], None]) -> Dict[str, Any]:
    """Load `--init`; refuse a file that does not provide the parts the command needs."""
    from gtacli.model.checkpoint import load_weights

    report = load_weights(model, path)
    missing = report.significant_missing
    if command == "finetune":
        needed = [k for k in missing if k.startswith(("backbone.", "head."))]
        what = "the whole ResNet-50 + HMR model"
    else:  # train: a backbone-only file (ImageNet) is the normal start
        needed = [k for k in missing if k.startswith("backbone.")]
        what = "the ResNet-50 backbone"
    if needed:
        raise BadFileError(
            f"incompatible --init: {len(needed)} tensors of {what} are missing (first: {needed[0]})",
            path=path,
            fix="pass a ResNet-50 HMR checkpoint (mmhuman3d, SPIN or gtacli) such as spin_official.pth",
        )
    log(f"init: {report.summary()} from {path}")
    return {"path": str(path), "format": report.source_format, "loaded": len(report.loaded)}


# ---------------------------------------------------------------------------------------------------------
# RNG state (plain types only: checkpoints are read back with weights_only=True)


def seed_everything(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def rng_state(device: torch.device) -> Dict[str, Any]:
    np_state = np.random.get_state()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _plain_python_state(random.getstate()),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached_gaussian"]),
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _plain_python_state(state: Any) -> List[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


# ---------------------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """Builds everything a run needs from `TrainOptions` and runs it (`run()`), or single steps (`train_step`)."""

    def __init__(self, opts: TrainOptions, dist_info: Optional[DistInfo] = None):
        self.opts = opts
        self.dist = dist_info or init_distributed(opts.device)
        self.device = self.dist.device
        self.layout = DataLayout(opts.data_root)
        self.recipe = opts.recipe
        self.work_dir = Path(opts.work_dir)
        self.state = TrainState()
        self.seed = int(opts.seed)
        self._resume_payload: Optional[Dict[str, Any]] = None
        self._tb = None
        self._metrics_fp = None
        self.init_info: Dict[str, Any] = {}
        self.last_targets: Dict[str, Any] = {}

    # -- logging helpers (rank 0 only) --------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.dist.is_main:
            self.opts.log(message)

    def warn(self, message: str) -> None:
        if self.dist.is_main:
            self.opts.warn(message)

    # -- setup ---------------------------------------------------------------------------------------------
    def setup(self) -> Trainer:
        opts = self.opts
        if opts.resume is not None:
            self._load_resume(resolve_resume(opts.resume))
        if opts.init is not None and opts.resume is None:
            # record what this run really started from, not the recipe's default
            self.recipe = self.recipe.override(init=str(opts.init))
        recipe = self.recipe
        check_inputs(self.layout, recipe, opts.command)
        check_work_dir(self.work_dir)
        if self.layout.is_synthetic:
            self.warn(
                f"{self.layout.root} is the synthetic sample tree: numbers from it mean nothing for 3DPW"
            )
        seed_everything(self.seed, self.dist.rank)
        self._build_data()
        self._build_model()
        self._build_registration()
        self._build_optim()
        if self._resume_payload is not None:
            self._restore(self._resume_payload)
            self._resume_payload = None
        return self

    def _load_resume(self, path: Path) -> None:
        from gtacli.io.safe import load_checkpoint

        payload = load_checkpoint(path, map_location="cpu")
        meta = payload.get("meta", {}) if isinstance(payload, dict) else {}
        if meta.get("checkpoint") != CHECKPOINT_FORMAT or "train_state" not in payload:
            raise BadFileError(
                "not a gtacli training checkpoint (no optimiser/sampler state to resume)",
                path=path,
                fix="resume from a run directory written by gtacli finetune/train, or use --init to start from weights",
            )
        saved = recipe_from_dict(meta["recipe"])
        if saved.name != self.recipe.name:
            raise GtacliError(
                f"checkpoint is from recipe '{saved.name}', not '{self.recipe.name}'",
                path=path,
                fix=f"resume with --recipe {saved.name} (or `gtacli {'finetune' if saved.name == 'gta-spin-ft' else 'train'}`)"
                ", or start a new --work-dir",
            )
        # the saved recipe wins, except fields that do not change the run's maths
        changed = recipe_differences(saved, self.recipe)
        keep = {k: getattr(self.recipe, k) for k in RESUME_MUTABLE if k in changed}
        ignored = sorted(k for k in changed if k not in RESUME_MUTABLE)
        if ignored:
            self.warn(f"resuming with the saved recipe; ignoring changed {', '.join(ignored)}")
        self.recipe = saved.override(**keep) if keep else saved
        train_state = payload["train_state"]
        if int(meta.get("seed", self.seed)) != self.seed:
            self.warn(f"resuming with the run's seed {meta.get('seed')} (not {self.seed})")
            self.seed = int(meta["seed"])
        if train_state["position"] and int(meta.get("world_size", 1)) != self.dist.world_size:
            raise GtacliError(
                f"checkpoint stopped mid-epoch with {meta.get('world_size')} processes; this run has "
                f"{self.dist.world_size}",
                path=path,
                fix="resume with the same number of processes (or from an end-of-epoch checkpoint)",
            )
        self._resume_payload = payload
        self.log(
            f"resuming from {path} (epoch {train_state['epoch'] + 1}, step {train_state['global_step']})"
        )

    def _build_data(self) -> None:
        from gtacli.data.augment import AugmentConfig
        from gtacli.data.mixed import MixedBatchSampler, MixedDataset, make_loader
        from gtacli.data.train_dataset import TrainImageDataset, collate

        recipe = self.recipe
        aug = AugmentConfig.from_recipe(recipe)
        self.datasets = [TrainImageDataset(self.layout, name, aug) for name in recipe.datasets]
        self.lengths = {d.name: len(d) for d in self.datasets}
        self.sampler = MixedBatchSampler(
            [len(d) for d in self.datasets],
            recipe.partition,
            num_data=recipe.num_data,
            batch_size=recipe.batch_size,
            seed=self.seed,
            world_size=self.dist.world_size,
            rank=self.dist.rank,
        )
        self.mixed = MixedDataset(self.datasets, recipe.num_data)
        if recipe.workers > 0:
            _single_threaded_opencv()
        self.loader = make_loader(
            self.mixed,
            self.sampler,
            collate,
            workers=recipe.workers,
            prefetch_factor=recipe.prefetch_factor,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init,
            # its own generator: creating an epoch's iterator must not consume the global torch RNG
            # (dropout), or a resumed epoch would see other dropout masks than an unbroken one
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _build_model(self) -> None:
        from gtacli.body.smpl import BodyModel
        from gtacli.model.estimator import build_estimator

        model = build_estimator(self.layout)
        if self._resume_payload is None:
            init_path = resolve_init(self.opts.init, self.recipe, self.layout)
            if init_path is not None:
                self.init_info = load_init(model, init_path, self.opts.command, self.log)
            else:
                self.warn("no --init weights: the model starts from random weights")
        model.to(self.device)
        if self.recipe.sync_bn and self.dist.distributed:
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                self.warn("sync_bn needs CUDA; using per-process BatchNorm on CPU")
        self.model = model
        self.ddp: nn.Module = model
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(model, device_ids=ids)
        self.body_model = BodyModel.from_layout(self.layout, "neutral", h36m=False, device=self.device)
        self.loss_weights = LossWeights.from_recipe(self.recipe)
        self.amp = bool(self.recipe.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def _build_registration(self) -> None:
        from gtacli.fit.fits_store import FitsStore

        recipe = self.recipe
        self.fits = FitsStore.from_layout(
            self.layout, list(recipe.datasets), lengths=self.lengths, missing_ok=recipe.fits_missing_ok
        )
        self.registrant = build_registrant(self.body_model, self.fits, recipe, self.layout)

    def _build_optim(self) -> None:
        recipe = self.recipe
        kwargs = dict(
            lr=recipe.lr, betas=(recipe.adam_beta1, recipe.adam_beta2), eps=recipe.adam_eps,
            weight_decay=recipe.weight_decay,
        )  # fmt: skip
        self.optimizers = {
            "backbone": torch.optim.Adam(self.model.backbone.parameters(), **kwargs),
            "head": torch.optim.Adam(self.model.head.parameters(), **kwargs),
        }

    # -- checkpoint state ------------------------------------------------------------------------------------
    def _restore(self, payload: Dict[str, Any]) -> None:
        self.model.load_state_dict(payload["state_dict"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(payload["optimizers"][name])
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        if payload.get("fits"):
            self.fits.load_state_dict({k: v.numpy() for k, v in payload["fits"].items()})
        self.state = TrainState(**{k: int(v) for k, v in payload["train_state"].items()})
        states = payload.get("rng") or []
        if len(states) == self.dist.world_size:
            set_rng_state(states[self.dist.rank], self.device)
        else:
            self.warn("process count changed: RNG streams are reseeded")
            seed_everything(self.seed + 7919 * self.state.global_step, self.dist.rank)

    def checkpoint_payload(self) -> Dict[str, Any]:
        """(meta, extra) of a checkpoint; every rank must call it (RNG states are gathered)."""
        rngs = all_gather_objects(rng_state(self.device), self.dist)
        extra: Dict[str, Any] = {
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scaler": self.scaler.state_dict() if self.amp else {},
            "rng": [_to_cpu(s) for s in rngs],
            "train_state": self.state.to_dict(),
        }
        if self.recipe.registration_mode == "in_the_loop":
            extra["fits"] = {k: torch.from_numpy(v) for k, v in self.fits.state_dict().items()}
        from gtacli.model.checkpoint import git_revision

        meta = {
            "checkpoint": CHECKPOINT_FORMAT,
            "command": self.opts.command,
            "recipe": self.recipe.to_dict(),
            "epoch": self.state.epoch,
            "iter": self.state.global_step,
            "seed": self.seed,
            "world_size": self.dist.world_size,
            "init": self.init_info,
            "data_root": str(self.layout.root),
            "synthetic_data": self.layout.is_synthetic,
            "git_revision": git_revision(),
        }
        return {"meta": meta, "extra": extra}

    def save_checkpoint(self, name: str, also_latest: bool = True) -> Optional[Path]:
        """Write `name` (and latest.pth) atomically on rank 0; all ranks take part (RNG gather)."""
        payload = self.checkpoint_payload()
        path = None
        if self.dist.is_main:
            from gtacli.model.checkpoint import save_checkpoint

            path = self.work_dir / name
            save_checkpoint(path, self.model, meta=payload["meta"], extra=payload["extra"])
            if also_latest and name != LATEST:
                _link_or_copy_atomic(path, self.work_dir / LATEST)
            if self.recipe.registration_mode == "in_the_loop":
                self.fits.save(self.work_dir / "fits")
        barrier(self.dist)
        return path

    # -- one step ---------------------------------------------------------------------------------------------
    def to_device(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        nb = self.device.type == "cuda"
        return {
            k: (v.to(self.device, non_blocking=nb) if torch.is_tensor(v) else v) for k, v in batch.items()
        }

    def forward_losses(self, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """Forward, registration and the six losses (no backward)."""
        with torch.autocast(self.device.type, enabled=self.amp):
            pred = self.ddp(batch["img"])
        pred = {k: v.float() for k, v in pred.items()}
        targets = self.registrant({k: v.detach() for k, v in pred.items()}, batch)
        self.last_targets = targets
        rotmat = pred["pred_pose"]
        body = self.body_model(
            betas=pred["pred_shape"], body_pose=rotmat[:, 1:], global_orient=rotmat[:, :1], pose2rot=False
        )
        kp2d = batch["keypoints2d"]
        if self.recipe.openpose_confidence == "zero":
            # what the config's dead keypoint_weight = [0]*25 + [1]*24 intended (docs/reproduction.md §10.1.3)
            kp2d = kp2d.clone()
            kp2d[:, : self.recipe.num_openpose_keypoints, 2] = 0
        return compute_losses(pred, body.joints, body.vertices, batch, targets, self.loss_weights, kp2d)

    def train_step(self, batch: Dict[str, Any], want_grad_norm: bool = False) -> Dict[str, float]:
        """One optimisation step on a device batch; returns the (local) loss values and optionally grad_norm."""
        losses = self.forward_losses(batch)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        grad_norm = None
        if self.recipe.grad_clip or want_grad_norm:
            for opt in self.optimizers.values():
                self.scaler.unscale_(opt)
            params = [p for p in self.model.parameters() if p.grad is not None]
            max_norm = self.recipe.grad_clip_max_norm if self.recipe.grad_clip else float("inf")
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(params, max_norm, self.recipe.grad_clip_norm_type)
            )
        for opt in self.optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()
        if self.recipe.registration_mode == "in_the_loop" and self.dist.distributed:
            self.fits.all_reduce_updates()
        names = list(losses)
        # one device->host copy for all values (not one sync per loss)
        out = dict(zip(names, torch.stack([losses[k].detach().float() for k in names]).tolist()))
        if self.recipe.registration_mode == "in_the_loop" and "fits_updated" in self.last_targets:
            out["fits_updated"] = float(self.last_targets["fits_updated"].sum())
        if grad_norm is not None:
            out["grad_norm"] = grad_norm
        return out

    # -- the run ------------------------------------------------------------------------------------------------
    def lr_for_epoch(self, epoch: int) -> float:
        recipe = self.recipe
        if recipe.lr_schedule == "step":
            return recipe.lr * recipe.lr_gamma ** sum(1 for s in recipe.lr_steps if epoch >= s)
        return recipe.lr

    def run(self) -> Dict[str, Any]:
        recipe = self.recipe
        self.log(f"recipe {recipe.name}: {recipe.description}")
        self.log(recipe.to_json())
        if self.dist.is_main:
            from gtacli.io.atomic import atomic_write_json

            atomic_write_json(self.work_dir / RECIPE_FILE, recipe.to_dict())
        self._open_logs()
        steps_per_epoch = self.sampler.steps_per_epoch
        self.log(
            f"{self.dist.world_size} process(es) on {self.device}, batch {recipe.batch_size}/process, "
            f"{steps_per_epoch} steps/epoch, {recipe.epochs} epochs, work dir {self.work_dir}"
        )
        last_checkpoint: Optional[Path] = None
        last_losses: Dict[str, float] = {}
        first_loss: Optional[float] = None
        window = StepTimes()
        total = StepTimes()
        stopped_early = False
        start_time = time.perf_counter()
        try:
            while self.state.epoch < recipe.epochs:
                epoch = self.state.epoch
                lr = self.lr_for_epoch(epoch)
                for opt in self.optimizers.values():
                    for group in opt.param_groups:
                        group["lr"] = lr
                set_train_mode(self.ddp, recipe)
                self.sampler.set_epoch(epoch, start=self.state.position)
                bar = self._progress(len(self.sampler), epoch)
                iterator = iter(self.loader)
                while True:
                    t0 = time.perf_counter()
                    try:
                        batch = next(iterator)
                    except StopIteration:
                        break
                    except Exception as exc:  # a worker's error arrives wrapped: keep its one line
                        raise _unwrap_worker_error(exc) from None
                    t1 = time.perf_counter()
                    batch = self.to_device(batch)
                    n_local = int(batch["img"].shape[0])
                    log_now = (self.state.global_step + 1) % recipe.log_interval == 0
                    losses = self.train_step(batch, want_grad_norm=log_now)
                    if self.device.type == "cuda" and log_now:
                        torch.cuda.synchronize(self.device)
                    t2 = time.perf_counter()
                    self.state.global_step += 1
                    self.state.position += n_local
                    self.state.samples_seen += n_local * self.dist.world_size
                    for acc in (window, total):
                        acc.data_s += t1 - t0
                        acc.compute_s += t2 - t1
                        acc.samples += n_local * self.dist.world_size
                        acc.steps += 1
                        acc.add({k: v for k, v in losses.items() if k != "grad_norm"})  # incl. fits_updated
                    last_losses = losses
                    if first_loss is None:
                        first_loss = losses["loss"]
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix_str(_postfix(losses, window), refresh=False)
                    if log_now:
                        self._write_metrics(window, losses, lr)
                        window = StepTimes()
                    if self.opts.max_steps is not None and self.state.global_step >= self.opts.max_steps:
                        stopped_early = self.state.position < self.sampler.samples_per_rank
                        break
                if bar is not None:
                    bar.close()
                if stopped_early:
                    if window.steps:  # the last partial window too, or a short run logs nothing
                        self._write_metrics(window, last_losses, lr)
                        window = StepTimes()
                    last_checkpoint = self.save_checkpoint(LATEST) or last_checkpoint
                    self.log(
                        f"stopped after {self.state.global_step} steps (--max-steps); resume with --resume"
                    )
                    break
                # epoch finished
                if window.steps:
                    self._write_metrics(window, last_losses, lr)
                    window = StepTimes()
                self.state.epoch += 1
                self.state.position = 0
                last_checkpoint = self.save_checkpoint(f"epoch_{self.state.epoch}.pth") or last_checkpoint
                self.log(
                    f"epoch {self.state.epoch}/{recipe.epochs} done: {_brief(total.means())}; saved {last_checkpoint}"
                )
                self._maybe_evaluate()
                if self.opts.max_steps is not None and self.state.global_step >= self.opts.max_steps:
                    break
        finally:
            self._close_logs()
        elapsed = time.perf_counter() - start_time
        return {
            "work_dir": str(self.work_dir),
            "recipe": recipe.name,
            "epochs_completed": self.state.epoch,
            "global_step": self.state.global_step,
            "steps": self.state.global_step,
            "losses": {"first": first_loss, "last": last_losses.get("loss")},
            "samples_seen": self.state.samples_seen,
            "checkpoint": str(last_checkpoint) if last_checkpoint else None,
            "final_losses": {k: round(v, 6) for k, v in last_losses.items()},
            "mean_losses": {k: round(v, 6) for k, v in total.means().items()},
            "samples_per_s": round(total.samples / max(total.data_s + total.compute_s, 1e-9), 3),
            "data_wait_fraction": round(total.data_s / max(total.data_s + total.compute_s, 1e-9), 4),
            "elapsed_s": round(elapsed, 2),
            "world_size": self.dist.world_size,
            "metrics": str(self.work_dir / METRICS_FILE),
            "synthetic_data": self.layout.is_synthetic,
        }

    # -- logs -------------------------------------------------------------------------------------------------
    def _progress(self, total: int, epoch: int):
        if not (self.dist.is_main and self.opts.progress):
            return None
        from tqdm import tqdm

        return tqdm(
            total=total,
            desc=f"epoch {epoch + 1}/{self.recipe.epochs}",
            unit="step",
            leave=False,
            dynamic_ncols=True,
        )

    def _open_logs(self) -> None:
        if not self.dist.is_main:
            return
        # a resumed run continues its metrics; a fresh run in an old work dir starts them anew
        mode = "a" if self.opts.resume is not None else "w"
        self._metrics_fp = open(self.work_dir / METRICS_FILE, mode, encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.work_dir / "tensorboard"))
        except Exception:  # tensorboard not installed: JSONL only
            self._tb = None

    def _close_logs(self) -> None:
        if self._metrics_fp is not None:
            self._metrics_fp.close()
            self._metrics_fp = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def _write_metrics(self, window: StepTimes, last: Dict[str, float], lr: float) -> None:
        means = window.means()
        keys = [*LOSS_NAMES, "loss"]
        # mean over ranks (each rank's losses are normalised per rank, as DDP averages gradients)
        values = torch.tensor([means.get(k, 0.0) for k in keys], dtype=torch.float64, device=self.device)
        values = all_reduce_mean(values, self.dist).cpu().tolist()
        if not self.dist.is_main:
            return
        record: Dict[str, Any] = {
            "epoch": self.state.epoch + 1,
            "step": self.state.global_step,
            "samples": self.state.samples_seen,
            "lr": lr,
            **{k: v for k, v in zip(keys, values)},
            "data_time_s": round(window.data_s, 4),
            "compute_time_s": round(window.compute_s, 4),
            "samples_per_s": round(window.samples / max(window.data_s + window.compute_s, 1e-9), 3),
            "time": time.time(),
        }
        if "grad_norm" in last:
            record["grad_norm"] = last["grad_norm"]
        if "fits_updated" in window.sums:  # in-the-loop fits accepted in this window (this rank)
            record["fits_updated"] = int(window.sums["fits_updated"])
        assert self._metrics_fp is not None
        self._metrics_fp.write(json.dumps(record) + "\n")
        self._metrics_fp.flush()
        if self._tb is not None:
            for key, value in record.items():
                if key not in ("epoch", "step", "time") and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"train/{key}", value, self.state.global_step)

    def _maybe_evaluate(self) -> None:
        """3DPW after an epoch when the evaluator and the files exist (rank 0; others wait)."""
        if not self.recipe.eval_each_epoch:
            return
        if self.dist.is_main and self.opts.evaluator is not None:
            result = evaluate_after_epoch(self.opts.evaluator, self.model, self.layout, self.device, self.log)
            if result is not None and self._metrics_fp is not None:
                self._metrics_fp.write(json.dumps({"epoch": self.state.epoch, "eval": result}) + "\n")
                self._metrics_fp.flush()
        barrier(self.dist)


def build_registrant(body_model: Any, fits: Any, recipe: Recipe, layout: DataLayout) -> Any:
    """The fit engineer's `Registrant` configured from the recipe (unknown config fields are left at defaults)."""
    import dataclasses

    from gtacli.fit.registration import Registrant, RegistrationConfig

    wanted = {
        "mode": recipe.registration_mode,
        "threshold": recipe.registration_threshold,
        "focal_length": recipe.focal_length,
        "img_res": recipe.img_res,
        "lr": recipe.smplify_lr,
        "ftol": recipe.smplify_ftol,
        "num_iters": recipe.smplify_iters_per_stage,
    }
    names = {f.name for f in dataclasses.fields(RegistrationConfig)}
    config = RegistrationConfig(**{k: v for k, v in wanted.items() if k in names})
    gmm = layout.gmm_prior if recipe.registration_mode == "in_the_loop" else None
    return Registrant(body_model, fits, config, gmm_path=gmm)


def evaluate_after_epoch(
    evaluate: Callable[..., Any],
    model: nn.Module,
    layout: DataLayout,
    device: torch.device,
    log: Callable[[str], None],
) -> Optional[Dict[str, Any]]:
    """Run the 3DPW evaluation `evaluate` when the 3DPW files are present (None otherwise)."""
    annotation = layout.annotation("pw3d")
    if not annotation.is_file() or not layout.image_root("pw3d").is_dir():
        return None
    was_training = model.training
    try:
        result = evaluate(model, layout, device=device)
    except GtacliError as exc:
        log(f"3DPW eval skipped: {exc.one_line()}")
        return None
    finally:
        model.train(was_training)
    summary = {k: v for k, v in dict(result).items() if k != "per_sequence"}
    metrics = {k: v for k, v in summary.items() if k.endswith("_mm")}
    log(f"3DPW after the epoch ({summary.get('frames')} frames): {json.dumps(metrics)}")
    return json.loads(json.dumps(summary, default=str))


# ---------------------------------------------------------------------------------------------------------
# helpers


def _worker_init(worker_id: int) -> None:
    # one torch thread per worker: the main process' threads do the heavy work
    torch.set_num_threads(1)


def _single_threaded_opencv() -> None:
    """OpenCV's thread pool is not fork-safe: reconfiguring or using a pool a forked worker inherited can hang
    (seen: `cv2.setNumThreads` blocking in a worker). Stop it in the parent before workers fork; every
    worker then runs OpenCV on one thread, which is what parallel workers want anyway."""
    import cv2

    cv2.setNumThreads(1)


def _to_cpu(obj: Any) -> Any:
    if torch.is_tensor(obj):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_cpu(v) for v in obj]
    return obj


def _link_or_copy_atomic(src: Path, final: Path) -> None:
    """`final` becomes a copy of `src` atomically (a hard link when the filesystem allows)."""
    import shutil

    from gtacli.io.atomic import atomic_path

    with atomic_path(final) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _unwrap_worker_error(exc: Exception) -> Exception:
    if isinstance(exc, GtacliError):
        return exc
    text = str(exc)
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        name, _, message = last.partition(": ")
        if name.startswith("gtacli.errors."):
            return GtacliError(message)
    return exc


def _postfix(losses: Dict[str, float], window: StepTimes) -> str:
    parts = [f"loss {losses.get('loss', math.nan):.4f}"]
    parts += [f"{SHORT_NAMES[k]} {losses[k]:.3g}" for k in LOSS_NAMES if k in losses]
    busy = window.data_s + window.compute_s
    parts.append(f"{window.samples / max(busy, 1e-9):.1f} samples/s")
    parts.append(f"data {100 * window.data_s / max(busy, 1e-9):.0f}%")
    return " ".join(parts)


def _brief(means: Dict[str, float]) -> str:
    return ", ".join(f"{SHORT_NAMES.get(k, k)} {v:.4g}" for k, v in means.items())


def run_training(opts: TrainOptions) -> Dict[str, Any]:
    """Set up and run; returns the summary (same on every rank)."""
    trainer = Trainer(opts).setup()
    return trainer.run()


__all__ = [
    "IMAGENET_WEIGHTS",
    "TrainOptions",
    "Trainer",
    "check_inputs",
    "resolve_resume",
    "run_training",
    "set_train_mode",
]
