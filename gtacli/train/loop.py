"""The training run of `gtacli finetune` / `gtacli train` (docs/reproduction.md §6.1, §6.4, "Product decisions" 3–5).

`Trainer(opts).setup()` builds the data (mixed sampler, worker processes, pinned memory), the model, the
registrant and both Adams; `run()` loops over epochs and steps. The parts live beside it:

* `gtacli.train.step`: one optimisation step (forward, registration, losses, backward, Adam), non-finite guard;
* `gtacli.train.state`: checkpoint contents, RNG state, resume;
* `gtacli.train.metrics`: metrics.jsonl / TensorBoard and the progress description;
* `gtacli.train.workdir`: the work dir's lock, `--overwrite`/`--resume` policy, stale temp files;
* `gtacli.train.stop`: SIGINT/SIGTERM -> finish the step, save a resumable checkpoint, stop.

Checkpoints (rank 0, atomic): `epoch_<n>.pth` after every epoch plus `latest.pth`; `latest.pth` also when
`--max-steps`, `--save-every` or a signal stops or interrupts an epoch. `--resume` restores everything, so an
interrupted run ends with the weights of an unbroken one. 3DPW is evaluated after each epoch when its files are
present, with the RNG state restored afterwards (the evaluation must not change what the training draws next).
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import cv2
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gtacli.body.smpl import BodyModel
from gtacli.data.mixed import MixedBatchSampler, MixedDataset, make_loader
from gtacli.data.train_dataset import TrainImageDataset, collate
from gtacli.errors import GtacliError, UsageError
from gtacli.fit.fits_store import FitsStore, fits_file_name
from gtacli.io.atomic import atomic_write_json
from gtacli.layout import DataLayout
from gtacli.model.checkpoint import git_revision, save_checkpoint
from gtacli.model.estimator import build_estimator
from gtacli.train.distributed import (
    all_gather_objects,
    all_reduce_max,
    all_reduce_mean,
    barrier,
    init_distributed,
)
from gtacli.train.inputs import build_initial_model, build_registrant, check_inputs, in_the_loop
from gtacli.train.losses import LOSS_NAMES
from gtacli.train.metrics import METRICS_FILE, MetricsLog, StepTimes, brief, describe, step_record
from gtacli.train.optim import build_optimizers, set_lr, set_train_mode
from gtacli.train.options import TrainOptions
from gtacli.train.recipe import flatten, recipe_differences, recipe_from_dict
from gtacli.train.state import (
    CHECKPOINT_FORMAT,
    LATEST,
    TrainState,
    link_or_copy_atomic,
    preserved_rng,
    read_training_checkpoint,
    resolve_resume,
    rng_state,
    seed_everything,
    set_rng_state,
    to_cpu,
)
from gtacli.train.step import TrainStep
from gtacli.train.stop import StopRequest, ignore_stop_signals
from gtacli.train.workdir import (
    RunRecord,
    WorkDirLock,
    check_overwrite_targets,
    check_reuse,
    check_work_dir,
    clear_previous_run,
    remove_stale_temps,
)

RECIPE_FILE = "recipe.json"
# recipe fields that may change when resuming (they do not change the run's maths)
RESUME_MUTABLE = ("optim.epochs", "data.workers", "data.prefetch_factor", "log_interval", "eval_each_epoch")


class Trainer:
    """Builds everything a run needs from `TrainOptions` (`setup()`) and runs it (`run()`)."""

    def __init__(self, opts: TrainOptions):
        self.opts = opts
        self.dist = init_distributed(opts.device)
        self.device = self.dist.device
        self.layout = DataLayout(opts.data_root)
        self.recipe = opts.recipe
        self.work_dir = Path(opts.work_dir)
        self.state = TrainState()
        self.seed = int(opts.seed)
        self.init_info: Dict[str, Any] = {}
        self.lock = WorkDirLock(self.work_dir)
        self.record: Optional[RunRecord] = None  # rank 0: the files this run family wrote
        self.stop = StopRequest()
        self.interrupted = ""

    def log(self, message: str) -> None:
        if self.dist.is_main:
            self.opts.log(message)

    def warn(self, message: str) -> None:
        if self.dist.is_main:
            self.opts.warn(message)

    # -- setup -------------------------------------------------------------------------------------------------
    def setup(self) -> Trainer:
        try:
            return self._setup()
        except BaseException:
            self.lock.release(remove_created_dir=True)  # a refused run leaves no empty work dir
            raise

    def _setup(self) -> Trainer:
        opts = self.opts
        payload = None
        if opts.resume is not None:
            payload = self._read_resume(resolve_resume(opts.resume))
        elif opts.init is not None:  # record what this run really started from, not the recipe's default
            self.recipe = self.recipe.override({"init": str(opts.init)})
        check_inputs(self.layout, self.recipe, opts.command)
        check_work_dir(self.work_dir)
        if self.dist.is_main:  # claim the work dir before anything looks at (or waits on) its content
            self._claim_work_dir(resuming=payload is not None)
        if self.layout.is_synthetic:
            self.warn(
                f"{self.layout.root} is the synthetic sample tree: numbers from it mean nothing for 3DPW"
            )
        seed_everything(self.seed, self.dist.rank)
        self._build_data()
        self._build_model(resuming=payload is not None)
        self._build_step()
        if payload is not None:
            self._restore(payload)
        barrier(self.dist)
        return self

    def _claim_work_dir(self, resuming: bool) -> None:
        """Take the lock, then check the folder's content and tidy what earlier runs here left (rank 0)."""
        self.lock.acquire(self.warn)
        self.record = RunRecord(self.work_dir)
        check_reuse(self.work_dir, self.record, resume=resuming, overwrite=self.opts.overwrite)
        stale = remove_stale_temps(self.work_dir, self.record)
        if stale:
            self.warn(f"removed {len(stale)} temp file(s) of an interrupted save in {self.work_dir}")
        if self.opts.overwrite and not resuming:
            check_overwrite_targets(self.work_dir, self.record, self.recipe.optim.epochs)
            removed = clear_previous_run(self.work_dir, self.record)
            if removed:
                self.warn(
                    f"--overwrite: removed {len(removed)} file(s) of the previous run in {self.work_dir}"
                )

    def _read_resume(self, path: Path) -> Dict[str, Any]:
        payload = read_training_checkpoint(path)
        meta = payload["meta"]
        saved = recipe_from_dict(meta["recipe"])
        if saved.name != self.recipe.name:
            command = "finetune" if saved.name == "gta-spin-ft" else "train"
            raise GtacliError(
                f"checkpoint is from recipe '{saved.name}', not '{self.recipe.name}'",
                path=path,
                fix=f"resume with --recipe {saved.name} (or `gtacli {command}`), or start a new --work-dir",
            )
        # the saved recipe wins, except fields that do not change the run's maths; only what the command line
        # gave counts as a change (the defaults of an option not given never replace the saved values)
        if self.opts.overrides is None:
            changed = recipe_differences(saved, self.recipe)
        else:
            saved_values = flatten(saved)
            changed = {
                k: (saved_values.get(k), v)
                for k, v in self.opts.overrides.items()
                if saved_values.get(k) != v
            }
        keep = {k: changed[k][1] for k in RESUME_MUTABLE if k in changed}
        ignored = sorted(k for k in changed if k not in RESUME_MUTABLE)
        if ignored:
            self.warn(f"resuming with the saved recipe; ignoring changed {', '.join(ignored)}")
        self.recipe = saved.override(keep) if keep else saved
        train_state = payload["train_state"]
        if "optim.epochs" in keep:
            before, after = changed["optim.epochs"]
            if after > before:
                self.log(f"extending from {before} to {after} epochs")
            else:
                self.log(f"shortening from {before} to {after} epochs")
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
        self.log(
            f"resuming from {path} (epoch {train_state['epoch'] + 1}, step {train_state['global_step']})"
        )
        return payload

    def _build_data(self) -> None:
        recipe, data = self.recipe, self.recipe.data
        self.datasets = [
            TrainImageDataset(self.layout, name, recipe.augment, warn=self.warn) for name in data.datasets
        ]
        self.lengths = {d.name: d.annotation_length for d in self.datasets}
        self.sampler = MixedBatchSampler(
            [len(d) for d in self.datasets],
            data.partition,
            num_data=recipe.optim.num_data,
            batch_size=recipe.optim.batch_size,
            seed=self.seed,
            world_size=self.dist.world_size,
            rank=self.dist.rank,
        )
        if data.workers > 0:
            # OpenCV's thread pool is not fork-safe (a forked worker reconfiguring an inherited pool can
            # hang): stop it before workers fork; every worker then runs OpenCV on one thread
            cv2.setNumThreads(1)
        self.loader = make_loader(
            MixedDataset(self.datasets, recipe.optim.num_data),
            self.sampler,
            functools.partial(collate, channels_last=recipe.channels_last),
            workers=data.workers,
            prefetch_factor=data.prefetch_factor,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init,
            # its own generator: creating an epoch's iterator must not consume the global torch RNG
            # (dropout), or a resumed epoch would see other dropout masks than an unbroken one
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _build_model(self, resuming: bool) -> None:
        if resuming:  # the checkpoint's weights replace these
            model = build_estimator(self.layout).to(self.device)
        else:
            init = self.opts.init or self.recipe.init
            model, self.init_info = build_initial_model(init, self.opts.command, self.layout, self.device)
            if self.init_info:
                self.log(f"init: {self.init_info['loaded']} tensors from {self.init_info['path']}")
            else:
                self.warn("no --init weights: the model starts from random weights")
        if self.recipe.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.recipe.optim.sync_bn and self.dist.distributed:
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                self.warn("sync_bn needs CUDA; using per-process BatchNorm on CPU")
        self.model = model
        self.ddp: nn.Module = model
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(model, device_ids=ids)

    def _amp_dtype(self) -> Optional[torch.dtype]:
        if not self.recipe.amp:
            return None
        if self.device.type != "cuda":
            self.warn("amp needs CUDA; training in float32 on the CPU")
            return None
        if self.recipe.amp_dtype == "bfloat16":
            if not torch.cuda.is_bf16_supported():
                raise UsageError(
                    f"amp_dtype=bfloat16: {self.device} has no bfloat16 support", fix="use float16"
                )
            return torch.bfloat16
        return torch.float16

    def _build_step(self) -> None:
        recipe = self.recipe
        body_model = BodyModel.from_layout(self.layout, "neutral", h36m=False, device=self.device)
        self.fits = FitsStore.from_layout(
            self.layout,
            list(recipe.data.datasets),
            lengths=self.lengths,
            missing_ok=recipe.data.fits_missing_ok,
        )
        self.optimizers = build_optimizers(self.model, recipe.optim)
        self.step = TrainStep(
            model=self.model,
            ddp=self.ddp,
            body_model=body_model,
            registrant=build_registrant(body_model, self.fits, recipe, self.layout),
            optimizers=self.optimizers,
            losses=recipe.losses,
            optim=recipe.optim,
            dist=self.dist,
            amp_dtype=self._amp_dtype(),
            channels_last=recipe.channels_last,
            in_the_loop=in_the_loop(recipe),
            fits=self.fits,
        )

    # -- checkpoints -----------------------------------------------------------------------------------------
    def _restore(self, payload: Dict[str, Any]) -> None:
        self.model.load_state_dict(payload["state_dict"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(payload["optimizers"][name])
        if payload.get("scaler"):
            self.step.scaler.load_state_dict(payload["scaler"])
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
        """{'meta', 'extra'} of a checkpoint; every rank must call it (RNG states are gathered)."""
        rngs = all_gather_objects(rng_state(self.device), self.dist)
        extra: Dict[str, Any] = {
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scaler": self.step.scaler.state_dict() if self.step.scaler.is_enabled() else {},
            "rng": [to_cpu(s) for s in rngs],
            "train_state": self.state.to_dict(),
        }
        if in_the_loop(self.recipe):
            extra["fits"] = {k: torch.from_numpy(v) for k, v in self.fits.state_dict().items()}
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

    def save_checkpoint(self, name: str) -> Path:
        """Write `name` (and latest.pth) atomically on rank 0; all ranks take part (RNG gather)."""
        payload = self.checkpoint_payload()
        path = self.work_dir / name
        if self.dist.is_main:
            datasets = self.recipe.data.datasets if in_the_loop(self.recipe) else ()
            fits = [f"fits/{fits_file_name(ds)}" for ds in datasets]
            self._record([name, LATEST, *fits])
            save_checkpoint(path, self.model, meta=payload["meta"], extra=payload["extra"])
            if name != LATEST:
                link_or_copy_atomic(path, self.work_dir / LATEST)
            if in_the_loop(self.recipe):
                self.fits.save(self.work_dir / "fits")
        barrier(self.dist)
        return path

    # -- the run ------------------------------------------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        try:
            with self.stop if self.opts.handle_signals else contextlib.nullcontext():
                return self._run()
        finally:
            self.close()

    def _record(self, names) -> None:
        if self.record is not None:
            self.record.add(names)

    def _resumed_at(self) -> Optional[Tuple[int, int]]:
        """(epoch, global step) of the checkpoint this run resumed from; None for a new run."""
        if self.opts.resume is None:
            return None
        return self.state.epoch, self.state.global_step

    def close(self) -> None:
        """Release the work dir (also after a failure)."""
        self.lock.release()

    def _run(self) -> Dict[str, Any]:
        recipe, optim = self.recipe, self.recipe.optim
        run = _RunTotals(optim.epochs * self.sampler.steps_per_epoch, self.opts.max_steps)
        if self.opts.resume is not None and self.state.epoch >= optim.epochs and not self.state.position:
            # a finished run resumed as it was: nothing to train, nothing rewritten
            self.log(
                f"the run in {self.work_dir} is finished ({self.state.epoch} of {optim.epochs} epochs): nothing "
                f"to do; extend it with --resume --epochs N"
            )
            latest = self.work_dir / LATEST
            run.checkpoint = latest if latest.is_file() else None
            summary = self._summary(run, 0.0)
            summary["nothing_to_do"] = True
            return summary
        self.log(f"recipe {recipe.name}: {recipe.description}")
        self.log(describe_recipe(recipe, self.work_dir / RECIPE_FILE))
        if self.opts.debug:
            self.log(recipe.to_json())
        if self.dist.is_main:
            self._record([RECIPE_FILE, METRICS_FILE])
            atomic_write_json(self.work_dir / RECIPE_FILE, recipe.to_dict())
            run.metrics = MetricsLog(self.work_dir, resume_at=self._resumed_at())
            self._record(run.metrics.event_files)
        layout_name = "channels-last" if recipe.channels_last else "NCHW"
        self.log(
            f"{self.dist.world_size} process(es) on {self.device} ({layout_name}, "
            f"{self.step.amp_dtype or torch.float32}), batch {optim.batch_size}/process, "
            f"{self.sampler.steps_per_epoch} steps/epoch, {optim.epochs} epochs, work dir {self.work_dir}"
        )
        start_time = time.perf_counter()
        stop_reason = ""
        try:
            while self.state.epoch < optim.epochs and not stop_reason:
                stop_reason = self._train_epoch(run)
                if self.state.position >= self.sampler.samples_per_rank:  # the epoch is complete
                    self._finish_epoch(run, evaluate=stop_reason not in ("SIGINT", "SIGTERM"))
                elif stop_reason:  # mid-epoch: latest.pth holds the sampler position
                    run.checkpoint = self.save_checkpoint(LATEST)
                stop_reason = stop_reason or self._stop_reason()
        finally:
            if run.metrics is not None:
                run.metrics.close()
        if stop_reason == "max_steps":
            self.log(f"stopped after {self.state.global_step} steps (--max-steps); continue with --resume")
        elif stop_reason:
            self.interrupted = stop_reason
            if self.dist.is_main:
                self.opts.notice(
                    f"{stop_reason}: stopped after step {self.state.global_step} (epoch {self.state.epoch + 1}); "
                    f"saved {run.checkpoint}; continue with the same command and --resume"
                )
        return self._summary(run, time.perf_counter() - start_time)

    def _train_epoch(self, run: _RunTotals) -> str:
        """Steps of the current epoch from the sampler position until its end or a stop; the stop reason."""
        optim = self.recipe.optim
        run.lr = optim.lr_for_epoch(self.state.epoch)
        set_lr(self.optimizers, run.lr)
        set_train_mode(self.ddp, optim)
        self.sampler.set_epoch(self.state.epoch, start=self.state.position)
        iterator = iter(self.loader)
        stop_reason = ""
        while not stop_reason:
            t0 = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            except Exception as exc:  # a worker's error arrives wrapped: keep its one line
                raise _unwrap_worker_error(exc) from None
            t1 = time.perf_counter()
            batch = self.step.to_device(batch)
            log_now = (self.state.global_step + 1) % self.recipe.log_interval == 0
            losses = self.step(batch, self.state.global_step + 1, want_grad_norm=log_now)
            if self.device.type == "cuda" and log_now:
                torch.cuda.synchronize(self.device)
            self._count_step(run, int(batch["img"].shape[0]), t1 - t0, time.perf_counter() - t1, losses)
            if log_now:
                self._write_metrics(run)
            stop_reason = self._stop_reason()
            save_every = self.opts.save_every
            mid_epoch = self.state.position < self.sampler.samples_per_rank  # else epoch_<n> follows
            if not stop_reason and save_every and self.state.global_step % save_every == 0 and mid_epoch:
                run.checkpoint = self.save_checkpoint(LATEST)
        if run.window.steps:  # the last partial window too, or a short run logs nothing
            self._write_metrics(run)
        return stop_reason

    def _count_step(
        self, run: _RunTotals, n_local: int, data_s: float, compute_s: float, losses: Dict
    ) -> None:
        """Advance the position and counters; timing, losses and the progress display."""
        self.state.global_step += 1
        self.state.position += n_local
        self.state.samples_seen += n_local * self.dist.world_size
        for acc in (run.window, run.times):
            acc.add(data_s, compute_s, n_local * self.dist.world_size, losses)
        run.last = losses
        if run.first_loss is None:
            run.first_loss = losses["loss"]
        if self.opts.progress is not None and self.dist.is_main:
            epochs = self.recipe.optim.epochs
            text = describe(self.state.epoch + 1, epochs, losses, run.window)
            self.opts.progress(self.state.global_step, run.total_steps, text)

    def _finish_epoch(self, run: _RunTotals, evaluate: bool) -> None:
        """epoch_<n>.pth (+ latest.pth), a log line, and the 3DPW pass (not inside a preemption's grace time)."""
        self.state.epoch += 1
        self.state.position = 0
        run.checkpoint = self.save_checkpoint(f"epoch_{self.state.epoch}.pth")
        if self.opts.keep_last is not None and self.dist.is_main:
            removed = prune_epoch_checkpoints(self.work_dir, self.opts.keep_last)
            if removed:
                self.log(f"--keep-last {self.opts.keep_last}: removed {', '.join(p.name for p in removed)}")
        self.log(
            f"epoch {self.state.epoch}/{self.recipe.optim.epochs} done: {brief(run.times.means())}; "
            f"saved {run.checkpoint}"
        )
        if evaluate:
            self._evaluate(run.metrics)

    def _stop_reason(self) -> str:
        """'SIGINT'/'SIGTERM' when any rank got one, 'max_steps' at --max-steps, else ''."""
        signalled = all_reduce_max(float(self.stop.signum or 0), self.dist) if self.opts.handle_signals else 0
        if signalled:
            self.stop.signum = int(signalled)
            return self.stop.name
        if self.opts.max_steps is not None and self.state.global_step >= self.opts.max_steps:
            return "max_steps"
        return ""

    def _summary(self, run: _RunTotals, elapsed: float) -> Dict[str, Any]:
        times = run.times
        return {
            "work_dir": str(self.work_dir),
            "recipe": self.recipe.name,
            "epochs_completed": self.state.epoch,
            "global_step": self.state.global_step,
            "losses": {"first": run.first_loss, "last": run.last.get("loss")},
            "samples_seen": self.state.samples_seen,
            "checkpoint": str(run.checkpoint) if run.checkpoint else None,
            "final_losses": {k: round(v, 6) for k, v in run.last.items()},
            "mean_losses": {k: round(v, 6) for k, v in times.means().items()},
            "samples_per_s": round(times.samples_per_s, 3),
            "data_wait_fraction": round(times.data_wait_fraction, 4),
            "elapsed_s": round(elapsed, 2),
            "world_size": self.dist.world_size,
            "metrics": str(self.work_dir / "metrics.jsonl"),
            "synthetic_data": self.layout.is_synthetic,
            "interrupted": self.interrupted or None,
            "exit_code": self.stop.exit_code if self.interrupted else 0,
        }

    def _write_metrics(self, run: _RunTotals) -> None:
        """One metrics.jsonl record for the steps since the last (losses averaged over ranks); a new window."""
        window, run.window = run.window, StepTimes()
        means = window.means()
        keys = [*LOSS_NAMES, "loss"]
        # mean over ranks (each rank's losses are normalised per rank, as DDP averages gradients)
        values = torch.tensor([means.get(k, 0.0) for k in keys], dtype=torch.float64, device=self.device)
        values = all_reduce_mean(values, self.dist).cpu().tolist()
        if run.metrics is None:
            return
        losses = dict(zip(keys, values))
        if "grad_norm" in run.last:
            losses["grad_norm"] = run.last["grad_norm"]
        record = step_record(
            self.state.epoch + 1, self.state.global_step, self.state.samples_seen, run.lr, losses, window
        )
        run.metrics.write(record, step=self.state.global_step)

    def _evaluate(self, metrics: Optional[MetricsLog]) -> None:
        """3DPW after an epoch when the evaluator and the files exist (rank 0; others wait)."""
        if not self.recipe.eval_each_epoch:
            return
        if self.dist.is_main and self.opts.evaluator is not None:
            with preserved_rng(self.device):
                result = evaluate_after_epoch(
                    self.opts.evaluator, self.model, self.layout, self.device, self.log
                )
            if result is not None and metrics is not None:
                metrics.write({"epoch": self.state.epoch, "eval": result})
        barrier(self.dist)


def prune_epoch_checkpoints(work_dir: Path, keep: int) -> list:
    """Remove all but the `keep` newest epoch_<n>.pth of `work_dir` (latest.pth is its own file or hard link,
    so it survives); the removed paths."""
    epochs = []
    for path in work_dir.glob("epoch_*.pth"):
        number = path.stem[len("epoch_") :]
        if number.isdigit():
            epochs.append((int(number), path))
    epochs.sort()
    doomed = [path for _, path in epochs[: max(0, len(epochs) - keep)]]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def describe_recipe(recipe: Any, saved_as: Path) -> str:
    """One line: the fields that differ from the named recipe's defaults (the full recipe is in `saved_as`)."""
    from gtacli.train.recipe import RECIPES

    default = RECIPES.get(recipe.name)
    changed = recipe_differences(default, recipe) if default is not None else {}
    if not changed:
        return f"recipe {recipe.name} as published (full recipe: {saved_as})"
    values = ", ".join(f"{k}={_short(new)}" for k, (_, new) in sorted(changed.items()))
    return f"recipe {recipe.name} with {values} (full recipe: {saved_as}; --debug prints it)"


def _short(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


class _RunTotals:
    """What one `run()` accumulates: timing windows, first/last losses, the metrics log, the last checkpoint."""

    def __init__(self, total_steps: int, max_steps: Optional[int]) -> None:
        self.total_steps = min(total_steps, max_steps) if max_steps is not None else total_steps
        self.times = StepTimes()  # the whole run
        self.window = StepTimes()  # since the last metrics record
        self.first_loss: Optional[float] = None
        self.last: Dict[str, float] = {}
        self.lr = 0.0
        self.metrics: Optional[MetricsLog] = None
        self.checkpoint: Optional[Path] = None


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


def _worker_init(worker_id: int) -> None:
    # one torch thread per worker: the main process' threads do the heavy work
    torch.set_num_threads(1)
    ignore_stop_signals()


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


def run_training(opts: TrainOptions) -> Dict[str, Any]:
    """Set up and run; returns the summary (same on every rank)."""
    return Trainer(opts).setup().run()
