"""`gtacli check-layout`: is everything a job needs in the data root, and is it the right content?"""

from __future__ import annotations

import typer

from gtacli.cli.common import Annotated, DataRootOpt, DebugOpt, JsonOpt, Output, QuietOpt


def check_layout_command(
    data_root: DataRootOpt,
    job: Annotated[
        str,
        typer.Option("--for", help="The job to check for: eval-pw3d, finetune, train, demo or all."),
    ] = "all",
    json_mode: JsonOpt = False,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Check every image path, read each image's header, decode a sample, and re-hash files against "
            "the lock file.",
        ),
    ] = False,
    decode_all: Annotated[
        bool, typer.Option("--decode-all", help="With --deep: decode every image, not a sample (slow).")
    ] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check the data tree for a job at content level: shapes, dtypes, keys, static-fit rows against the annotation lengths, body models (6890 vertices), checkpoint keys, a sample of each dataset's image paths (all with --deep, which also reads every image's header and decodes a sample of them, or all of them with --decode-all; the report counts the unreadable images and names the first few) and the hashes recorded by `gtacli fetch`.

    Prints a table (item, status, detail, the command that fixes it); exit 0 when the job can run, 1 otherwise. With --json: one object with `items`, each having item, path, ok, detail, fix.

    Examples:

      gtacli check-layout --for eval-pw3d

      gtacli check-layout --for finetune --deep

      gtacli check-layout --for eval-pw3d --deep --decode-all

      gtacli check-layout --json
    """
    from gtacli.assets.layout_check import JOBS, check_layout
    from gtacli.errors import UsageError

    if job not in JOBS:  # usage first, before any output
        raise UsageError(f"unknown job '{job}'", fix=f"use --for one of: {', '.join(JOBS)}")
    out = Output(json_mode=json_mode, quiet=quiet, debug=debug)
    report = check_layout(data_root, job, deep=deep, decode_all=decode_all)
    if not data_root.is_dir():  # the usual cause of an all-red table: the wrong (or default) data root
        out.warn(
            f"the data root {data_root} does not exist. Set --data-root or $GTACLI_DATA_ROOT "
            "(default ./data), or create it: gtacli fetch --all, or gtacli sample-data --data-root PATH"
        )
    if report.synthetic:
        out.once(
            "synthetic",
            f"{report.root} is a SYNTHETIC sample tree (gtacli sample-data): it exercises the pipeline, "
            "numbers computed on it mean nothing",
        )

    def human() -> None:
        out.table(
            f"check-layout --for {job} ({report.root})",
            ["item", "status", "detail", "fix"],
            [(i.item, i.status, i.detail, i.fix) for i in report.items],
        )
        verdict = "can run" if report.ok else "can NOT run"
        out.out.print(f"{job}: {verdict}", markup=False)
        for i in report.items:  # the fixes again, one per line, unwrapped (tables fold long cells)
            if not i.ok and i.required:
                out.out.print(f"  {i.item}: {i.fix}", markup=False, soft_wrap=True)

    out.result(report.to_dict(), human=human)
    return 0 if report.ok else 1
