"""`gtacli finetune` (recipe gta-spin-ft) and `gtacli train` (recipe spin): option parsing and output only."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gtacli.cli.common import (
    Annotated,
    DataRootOpt,
    DebugOpt,
    DeviceOpt,
    JsonOpt,
    Output,
    QuietOpt,
    parse_key_values,
)

RecipeOpt = Annotated[str, typer.Option("--recipe", help="Recipe name: gta-spin-ft or spin.")]
WorkDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--work-dir",
        help="Run directory (checkpoints, metrics.jsonl, recipe.json). Default: work_dirs/<recipe>.",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the sampler, augmentation and dropout.")]
ResumeOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--resume", help="Continue a run: its work dir (latest.pth) or a checkpoint file written by gtacli."
    ),
]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", min=1, help="Override the recipe's epochs.")]
BatchOpt = Annotated[
    Optional[int], typer.Option("--batch-size", min=1, help="Override the batch size per process.")
]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="Override the learning rate of both Adams.")]
NumDataOpt = Annotated[Optional[int], typer.Option("--num-data", min=1, help="Override the draws per epoch.")]
SetOpt = Annotated[
    Optional[List[str]],
    typer.Option(
        "--set", help="Override any recipe field: --set key=value (repeatable; typed, e.g. grad_clip=true)."
    ),
]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", min=0, help="Data-loader worker processes.")]
MaxStepsOpt = Annotated[
    Optional[int], typer.Option("--max-steps", min=1, help="Stop after N steps in total (saves latest.pth).")
]


def finetune_command(
    data_root: DataRootOpt,
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
    resume: ResumeOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    num_data: NumDataOpt = None,
    settings: SetOpt = None,
    workers: WorkersOpt = None,
    max_steps: MaxStepsOpt = None,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fine-tune the estimator with the GTA-Human SPIN recipe as mmhuman3d's code ran it (3DPW 83.20 / 51.98).

    Recipe gta-spin-ft: 7 datasets (GTA 50 %), 100,000 draws per epoch, 10 epochs, batch 32 per process,
    two Adams at a constant 3e-5, no gradient clipping, static fits. The resolved recipe is printed and saved
    as recipe.json in the run directory; checkpoints epoch_<n>.pth and latest.pth are written every epoch.
    One process uses CUDA when present; several GPUs or nodes run under torchrun (DDP, env://).

    Examples:

      gtacli finetune --init data/pretrained_models/spin_official.pth --work-dir runs/gta_ft

      gtacli finetune --work-dir runs/gta_ft --resume runs/gta_ft

      gtacli finetune --set grad_clip=true --set openpose_confidence=zero --epochs 2

      torchrun --nproc_per_node 8 -m gtacli finetune --work-dir runs/gta_ft_8gpu

      torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m gtacli finetune --work-dir runs/x
    """
    _train_entry(
        "finetune", init, recipe, data_root, work_dir, device, seed, resume, epochs, batch_size, lr, num_data,
        settings, workers, max_steps, json_mode, quiet, debug,
    )  # fmt: skip


def train_command(
    data_root: DataRootOpt,
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
    resume: ResumeOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    num_data: NumDataOpt = None,
    settings: SetOpt = None,
    workers: WorkersOpt = None,
    max_steps: MaxStepsOpt = None,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train with the SPIN recipe: SMPLify in the loop, fits updated, synchronised across ranks and saved.

    Recipe spin (mmhuman3d configs/spin/resnet50_spin_pw3d.py): 6 datasets, batch 8 per process, lr 3e-5
    divided by 10 after epoch 3, 10 epochs; fits are saved with every checkpoint (fits/<ds>_fits.npy).

    --init imagenet (the default) reads torchvision's ImageNet ResNet-50 weights (ResNet50_Weights.IMAGENET1K_V1)
    from <data-root>/pretrained_models/resnet50-0676ba61.pth (`gtacli fetch resnet50_imagenet`); training
    itself downloads nothing.

    Examples:

      gtacli train --init imagenet --work-dir runs/spin

      gtacli train --init runs/spin/epoch_3.pth --work-dir runs/spin_b --epochs 5

      torchrun --nproc_per_node 4 -m gtacli train --work-dir runs/spin_4gpu
    """
    _train_entry(
        "train", init, recipe, data_root, work_dir, device, seed, resume, epochs, batch_size, lr, num_data,
        settings, workers, max_steps, json_mode, quiet, debug,
    )  # fmt: skip


def _train_entry(
    command: str,
    init: Optional[str],
    recipe_name: str,
    data_root: Path,
    work_dir: Optional[Path],
    device: str,
    seed: int,
    resume: Optional[Path],
    epochs: Optional[int],
    batch_size: Optional[int],
    lr: Optional[float],
    num_data: Optional[int],
    settings: Optional[List[str]],
    workers: Optional[int],
    max_steps: Optional[int],
    json_mode: bool,
    quiet: bool,
    debug: bool,
) -> None:
    import os

    rank = int(os.environ.get("RANK", "0"))
    # only rank 0 talks: other ranks stay quiet and print no result
    out = Output(json_mode=json_mode, quiet=quiet or rank != 0, debug=debug)

    def body() -> int:
        from gtacli.evaluate.runner import evaluate_model
        from gtacli.train.distributed import shutdown
        from gtacli.train.loop import TrainOptions, run_training
        from gtacli.train.recipe import apply_cli_overrides, get_recipe

        base = get_recipe(recipe_name)
        resolved = apply_cli_overrides(
            base,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            num_data=num_data,
            workers=workers,
            settings=parse_key_values(settings),
        )
        opts = TrainOptions(
            command=command,
            recipe=resolved,
            data_root=Path(data_root),
            work_dir=Path(work_dir) if work_dir is not None else Path("work_dirs") / resolved.name,
            init=init,
            device=device,
            seed=seed,
            resume=resume,
            max_steps=max_steps,
            progress=out.show_progress and not json_mode,
            log=out.info,
            warn=lambda m: out.once(m, m) if rank == 0 else None,
            evaluator=evaluate_model,
        )
        try:
            summary = run_training(opts)
        finally:
            shutdown()
        if rank == 0:
            out.result(summary, human=lambda: _print_summary(out, summary))
        return 0

    return body()


def _print_summary(out: Output, s: dict) -> None:
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
    if s.get("synthetic_data"):
        rows.append(("data", "SYNTHETIC sample tree: the numbers mean nothing"))
    out.table(f"gtacli {s['recipe']}", ["item", "value"], rows)
