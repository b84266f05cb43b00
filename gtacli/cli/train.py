"""`gtacli finetune` (recipe gta-spin-ft) and `gtacli train` (recipe spin): option parsing and output only."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from gtacli.cli.common import (
    Annotated,
    DataRootOpt,
    DebugOpt,
    DeviceOpt,
    JsonOpt,
    Output,
    ProgressBar,
    QuietOpt,
    parse_key_values,
    resolve_file_option,
)

RecipeOpt = Annotated[str, typer.Option("--recipe", help="Recipe name: gta-spin-ft or spin.")]
WorkDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--work-dir",
        help="Run directory (checkpoints, metrics.jsonl, recipe.json). Default: work_dirs/<recipe>. "
        "A non-empty one needs --resume or --overwrite; one run at a time (a lock file).",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Seed of the sampler, augmentation and dropout.")]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue the run in --work-dir from its latest checkpoint; `--resume PATH` continues from another "
        "run directory or a checkpoint file written by gtacli.",
    ),
]
# typer's parser has no optional-value options: the PATH of `--resume PATH` arrives as this argument
ResumePathArg = Annotated[Optional[Path], typer.Argument(hidden=True, show_default=False)]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="Start anew in a non-empty --work-dir (the previous run's files are removed)."
    ),
]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", min=1, help="Override the recipe's epochs.")]
BatchOpt = Annotated[
    Optional[int], typer.Option("--batch-size", min=1, help="Override the batch size per process.")
]
LrOpt = Annotated[
    Optional[float], typer.Option("--lr", help="Override the learning rate of both Adams (finite, > 0).")
]
NumDataOpt = Annotated[Optional[int], typer.Option("--num-data", min=1, help="Override the draws per epoch.")]
SetOpt = Annotated[
    Optional[List[str]],
    typer.Option(
        "--set",
        help="Override a recipe field: --set part.field=value (repeatable, typed), e.g. losses.keypoints3d=50, "
        "optim.grad_clip=true, registration.method=spin, eval_each_epoch=false, amp=true. "
        "Field names: the printed recipe / recipe.json.",
    ),
]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", min=0, help="Data-loader worker processes.")]
MaxStepsOpt = Annotated[
    Optional[int], typer.Option("--max-steps", min=1, help="Stop after N steps in total (saves latest.pth).")
]
KeepLastOpt = Annotated[
    Optional[int],
    typer.Option(
        "--keep-last",
        min=1,
        help="Keep only the N newest epoch_<n>.pth checkpoints (each is about 310 MB); default: keep all.",
    ),
]
SaveEveryOpt = Annotated[
    Optional[int],
    typer.Option(
        "--save-every",
        min=1,
        help="Also save latest.pth every N steps (a resumable mid-epoch checkpoint that survives a hard kill).",
    ),
]


@dataclass
class TrainArgs:
    """The options `finetune` and `train` share, as the user gave them."""

    data_root: Path
    init: Optional[str]
    recipe: str
    work_dir: Optional[Path]
    device: str
    seed: int
    resume: bool
    resume_path: Optional[Path]
    overwrite: bool
    epochs: Optional[int]
    batch_size: Optional[int]
    lr: Optional[float]
    num_data: Optional[int]
    settings: Optional[List[str]]
    workers: Optional[int]
    max_steps: Optional[int]
    save_every: Optional[int]
    keep_last: Optional[int]
    json_mode: bool
    quiet: bool
    debug: bool

    @classmethod
    def from_parameters(cls, parameters: Dict[str, Any]) -> TrainArgs:
        """From a command function's parameters (`locals()` at its start): both commands take the same ones."""
        return cls(**{f.name: parameters[f.name] for f in fields(cls)})


def finetune_command(
    data_root: DataRootOpt,
    resume_path: ResumePathArg = None,
    init: Annotated[
        Optional[str],
        typer.Option(
            "--init",
            help="Weights to start from (mmhuman3d, SPIN or gtacli checkpoint). Default: <data-root>/pretrained_models/spin_official.pth.",
        ),
    ] = None,
    recipe: RecipeOpt = "gta-spin-ft",
    work_dir: WorkDirOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    num_data: NumDataOpt = None,
    settings: SetOpt = None,
    workers: WorkersOpt = None,
    max_steps: MaxStepsOpt = None,
    save_every: SaveEveryOpt = None,
    keep_last: KeepLastOpt = None,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> int:
    """Fine-tune the estimator with the GTA-Human SPIN recipe as mmhuman3d's code ran it (3DPW 83.20 / 51.98).

    Recipe gta-spin-ft: 7 datasets (GTA 50 %), 100,000 draws per epoch, 10 epochs, batch 32 per process, two Adams at a constant 3e-5, no gradient clipping, static fits. The start prints the fields that differ from the recipe (--debug: all of it); the full recipe is saved as recipe.json in the run directory; checkpoints epoch_<n>.pth and latest.pth are written every epoch. One process uses CUDA when present; several GPUs or nodes run under torchrun (DDP, env://).

    SIGINT/SIGTERM (Ctrl-C, a cluster's preemption) finish the current step, save a resumable latest.pth and exit with 130/143; `--resume` then continues exactly where the run stopped.

    Examples:

      gtacli finetune --init data/pretrained_models/spin_official.pth --work-dir runs/gta_ft

      gtacli finetune --work-dir runs/gta_ft --resume

      gtacli finetune --work-dir runs/gta_ft_b --resume runs/gta_ft/latest.pth

      gtacli finetune --set optim.grad_clip=true --set losses.openpose_confidence=zero --epochs 2

      torchrun --nproc_per_node 8 -m gtacli finetune --work-dir runs/gta_ft_8gpu --save-every 500

      torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m gtacli finetune --work-dir runs/x
    """
    return _train("finetune", TrainArgs.from_parameters(locals()))


def train_command(
    data_root: DataRootOpt,
    resume_path: ResumePathArg = None,
    init: Annotated[
        Optional[str],
        typer.Option(
            "--init",
            help=(
                "'imagenet' (default: torchvision's ImageNet ResNet-50 file <data-root>/pretrained_models/"
                "resnet50-0676ba61.pth; get it with `gtacli fetch resnet50_imagenet`), 'none' (random) or a checkpoint PATH."
            ),
        ),
    ] = None,
    recipe: RecipeOpt = "spin",
    work_dir: WorkDirOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    num_data: NumDataOpt = None,
    settings: SetOpt = None,
    workers: WorkersOpt = None,
    max_steps: MaxStepsOpt = None,
    save_every: SaveEveryOpt = None,
    keep_last: KeepLastOpt = None,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> int:
    """Train with the SPIN recipe: SMPLify in the loop, fits updated, synchronised across ranks and saved.

    Recipe spin (mmhuman3d configs/spin/resnet50_spin_pw3d.py): 6 datasets, batch 8 per process, lr 3e-5 divided by 10 after epoch 3, 10 epochs; fits are saved with every checkpoint (fits/<ds>_fits.npy).

    --init imagenet (the default) reads torchvision's ImageNet ResNet-50 weights (ResNet50_Weights.IMAGENET1K_V1) from <data-root>/pretrained_models/resnet50-0676ba61.pth (`gtacli fetch resnet50_imagenet`); training itself downloads nothing.

    Examples:

      gtacli train --init imagenet --work-dir runs/spin

      gtacli train --work-dir runs/spin --resume

      gtacli train --init data/pretrained_models/spin_official.pth --work-dir runs/spin_b --set registration.method=spin

      torchrun --nproc_per_node 4 -m gtacli train --work-dir runs/spin_4gpu
    """
    return _train("train", TrainArgs.from_parameters(locals()))


def _train(command: str, args: TrainArgs) -> int:
    from gtacli.device import resolve_device
    from gtacli.errors import UsageError
    from gtacli.evaluate.runner import evaluate_model
    from gtacli.train.distributed import local_rank, shutdown
    from gtacli.train.loop import run_training
    from gtacli.train.options import TrainOptions
    from gtacli.train.recipe import cli_override_values, get_recipe

    rank = int(os.environ.get("RANK", "0"))
    # only rank 0 talks: other ranks stay quiet and print no result
    out = Output(json_mode=args.json_mode, quiet=args.quiet or rank != 0, debug=args.debug)
    if args.resume_path is not None and not args.resume:
        raise UsageError(
            f"unexpected argument {args.resume_path}",
            fix=f"to continue that run: --resume {args.resume_path}",
        )
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other", fix="pass one of them")
    init = args.init
    if init is not None and init not in ("none", "imagenet", "spin_official", ""):
        fix = "run `gtacli fetch spin_official` or pass --init PATH"
        init = str(
            resolve_file_option(
                Path(init), args.data_root, out, option="--init", what="--init weights", fix=fix
            )
        )
    base = get_recipe(args.recipe)
    # what the command line set (a resumed run applies only these to its saved recipe)
    overrides = cli_override_values(
        base,
        parse_key_values(args.settings),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        num_data=args.num_data,
        workers=args.workers,
    )
    recipe = base.override(overrides) if overrides else base
    device = resolve_device(args.device, local_rank())
    work_dir = args.work_dir if args.work_dir is not None else Path("work_dirs") / recipe.name
    resume = (args.resume_path or work_dir) if args.resume else None
    with ProgressBar(out, command, rate_unit="steps", transient=False) as update:
        opts = TrainOptions(
            command=command,
            recipe=recipe,
            data_root=Path(args.data_root),
            work_dir=work_dir,
            device=device,
            init=init,
            seed=args.seed,
            resume=resume,
            overwrite=args.overwrite,
            overrides=overrides,
            max_steps=args.max_steps,
            save_every=args.save_every,
            keep_last=args.keep_last,
            debug=args.debug,
            progress=update,
            log=out.info,
            warn=lambda m: out.once(m, m),
            notice=lambda m: out.err.print(m, markup=False) if rank == 0 else None,
            evaluator=evaluate_model,
        )
        try:
            summary = run_training(opts)
        finally:
            shutdown()
    if rank == 0:
        out.result(summary, human=lambda: _print_summary(out, summary))
    return int(summary["exit_code"])


def _print_summary(out: Output, s: dict) -> None:
    if s.get("nothing_to_do"):
        out.out.print(
            f"nothing to do: the run in {s['work_dir']} has finished its {s['epochs_completed']} epochs "
            f"(checkpoint {s['checkpoint']}); extend it with --resume --epochs N",
            markup=False,
        )
        return
    rows = [
        ("recipe", s["recipe"]),
        ("work dir", s["work_dir"]),
        ("epochs completed", s["epochs_completed"]),
        ("steps", s["global_step"]),
        ("samples seen", s["samples_seen"]),
        ("processes", s["world_size"]),
        ("loss (last step)", f"{s['final_losses'].get('loss', float('nan')):.5g}"),
        ("samples/s", s["samples_per_s"]),
        ("data wait", f"{100 * s['data_wait_fraction']:.1f} %"),
        ("checkpoint", s["checkpoint"]),
        ("metrics", s["metrics"]),
    ]
    if s.get("interrupted"):
        rows.append(("interrupted", f"{s['interrupted']}: continue with --resume"))
    if s.get("synthetic_data"):
        rows.append(("data", "SYNTHETIC sample tree: the numbers mean nothing"))
    out.table(f"gtacli {s['recipe']}", ["item", "value"], rows)
