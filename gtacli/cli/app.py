"""The `gtacli` Typer application: registers one module per command."""

from __future__ import annotations

import importlib
from typing import Optional

import typer

from gtacli import __version__
from gtacli.cli.common import Annotated, handle_errors

app = typer.Typer(
    name="gtacli",
    help=(
        "Reproduce and use the GTA-Human SPIN pipeline (ResNet-50 + HMR -> SMPL) without mmcv/mmhuman3d.\n\n"
        "Start with `gtacli quickstart` (offline, synthetic data), or `gtacli fetch --all` for the real assets. "
        "`gtacli --docs` prints where docs/reproduction.md, which help texts and errors cite, is installed."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# (command name, module under gtacli.cli, function name). Each module keeps its heavy imports inside the
# function so `gtacli --help` stays fast. Every command is wrapped in the one error handler.
COMMANDS = [
    ("quickstart", "quickstart", "quickstart_command"),
    ("fetch", "fetch", "fetch_command"),
    ("check-layout", "check_layout", "check_layout_command"),
    ("sample-data", "sample_data", "sample_data_command"),
    ("eval", "evaluate", "eval_command"),
    ("export", "export", "export_command"),
    ("finetune", "train", "finetune_command"),
    ("train", "train", "train_command"),
    ("fit", "fit", "fit_command"),
    ("demo", "demo", "demo_command"),
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gtacli {__version__}")
        raise typer.Exit()


def _docs_callback(value: bool) -> None:
    if value:
        from gtacli.io.docs import docs_dir

        folder = docs_dir()
        if folder is None:
            typer.echo("error: the docs are not installed with this copy of gtacli", err=True)
            raise typer.Exit(1)
        for name in ("reproduction.md", "ARCHITECTURE.md"):
            if (folder / name).is_file():
                typer.echo(str(folder / name))
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
        ),
    ] = None,
    docs: Annotated[
        Optional[bool],
        typer.Option(
            "--docs",
            callback=_docs_callback,
            is_eager=True,
            help="Print where docs/reproduction.md (cited as 'docs/reproduction.md §N' in help and errors) and docs/ARCHITECTURE.md are on this machine, and exit.",
        ),
    ] = None,
) -> None:
    """gtacli command line."""


def _register() -> None:
    for name, module_name, attr in COMMANDS:
        module = importlib.import_module(f"gtacli.cli.{module_name}")  # a broken module is an error
        app.command(name)(handle_errors(getattr(module, attr)))


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
