"""`gtacli sample-data`: write a complete miniature SYNTHETIC data tree (docs/reproduction.md §1.2 layout) for offline use."""

from __future__ import annotations

import time
from typing import Any, Dict

import typer

from gtacli.cli.common import Annotated, DataRootOpt, DebugOpt, JsonOpt, Output, ProgressBar, QuietOpt


def sample_data_command(
    data_root: DataRootOpt,
    size: Annotated[
        str,
        typer.Option("--size", help="tiny (tests: a few images per dataset) or small (the default tree)."),
    ] = "small",
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed gives the same tree.")] = 0,
    force: Annotated[
        bool,
        typer.Option("--force", help="Write into a folder that holds other files (nothing else is deleted)."),
    ] = False,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write a complete miniature SYNTHETIC data tree that every command accepts as it is.

    Synthetic SMPL-format body models and regressors, rendered images with matching boxes and 2D/3D keypoints, HumanData annotations for the seven training datasets and 3DPW, static fits, priors, and a random-weight spin_official.pth in mmhuman3d's layout. Everything is marked synthetic. Re-running on a synthetic tree rebuilds it; a folder with other content is refused unless --force.

    Examples:

      gtacli sample-data --data-root runs/sample

      gtacli sample-data --data-root runs/tiny --size tiny --seed 1 --json

      export GTACLI_DATA_ROOT=runs/sample; gtacli sample-data && gtacli check-layout --for all
    """
    from gtacli.errors import UsageError
    from gtacli.io.sizes import format_bytes
    from gtacli.layout import DataLayout
    from gtacli.sample.tree import SIZES, SYNTHETIC_WARNING, build_sample_tree, tree_stats

    if size not in SIZES:
        raise UsageError(
            f"--size {size!r} is not one of {', '.join(SIZES)}", fix="use --size tiny or --size small"
        )
    if seed < 0:
        raise UsageError(f"--seed {seed} is negative", fix="pass --seed 0 (or any N >= 0)")
    out = Output(json_mode=json_mode, quiet=quiet, debug=debug)
    started = time.perf_counter()
    with ProgressBar(out, "sample-data") as update:
        # the builder reports (what, done, total)
        root = build_sample_tree(
            data_root,
            size=size,
            seed=seed,
            force=force,
            progress=update,
        )
    seconds = time.perf_counter() - started
    out.warn(SYNTHETIC_WARNING)  # after the build, so that a failure prints only its one-line error
    stats = tree_stats(DataLayout(root))
    payload: Dict[str, Any] = {
        "root": str(root),
        "files": stats["files"],
        "bytes": stats["bytes"],
        "seconds": round(seconds, 2),
        "size": size,
        "seed": seed,
        "synthetic": True,
    }

    def human() -> None:
        out.out.print(
            f"wrote a {size} synthetic tree to {root}: {stats['files']} files, "
            f"{format_bytes(stats['bytes'], 'MiB')} in {seconds:.1f} s",
            markup=False,
        )
        out.out.print(f"next: gtacli check-layout --for all --data-root {root}", markup=False)

    out.result(payload, human=human)
    return 0
