"""The ``edtalk`` command line: thin Typer commands over the library.

Each command group lives in ``edtalk_cli/commands/<group>.py`` and only parses options,
calls into the library and prints; no model logic lives here.
"""

from __future__ import annotations

import sys

import typer

from edtalk_cli import __version__
from edtalk_cli.commands.consoles import make_console, print_error
from edtalk_cli.errors import EdtalkError

app = typer.Typer(
    name="edtalk",
    help="Batch production of emotional talking-head videos with EDTalk.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = make_console(stderr=True, emoji=False)  # messages quote paths and devices ("cuda:x:")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"edtalk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Batch production of emotional talking-head videos with EDTalk."""


def _register() -> None:
    from edtalk_cli.commands import extract, render, weights

    app.command(name="render")(render.render)
    app.add_typer(weights.app, name="weights")
    app.command(name="extract")(extract.extract)
    # --- command groups registered below (one line each) ---
    from edtalk_cli.commands import manifest as manifest_cmds

    app.command(name="schema")(manifest_cmds.schema)
    app.command(name="validate")(manifest_cmds.validate)
    app.add_typer(manifest_cmds.presets_app, name="presets")
    from edtalk_cli.commands import synth

    app.add_typer(synth.app, name="synth")
    from edtalk_cli.commands import train

    app.add_typer(train.app, name="train")
    from edtalk_cli.commands import cache as cache_cmds

    app.add_typer(cache_cmds.app, name="cache")
    from edtalk_cli.commands import evaluate as eval_cmds

    app.command(name="eval")(eval_cmds.evaluate)
    from edtalk_cli.commands import export as export_cmds

    app.add_typer(export_cmds.app, name="export")
    from edtalk_cli.commands import crop as crop_cmds

    app.command(name="crop")(crop_cmds.crop)


_register()


def _is_click_error(exc: BaseException) -> bool:
    """A click ``ClickException``: from ``click`` itself or from the copy that typer vendors
    (``typer._click`` in recent typer releases), which is a different class."""
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__) and hasattr(exc, "show")


def main() -> None:
    """Console-script entry point: run the app and turn user errors into clean messages."""
    from rich.markup import escape

    from edtalk_cli.userwarnings import install

    install(lambda text: err_console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False))
    try:
        code = app(standalone_mode=False)  # returns typer.Exit codes instead of raising them
    except EdtalkError as exc:
        print_error(err_console, exc)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # click usage errors (unknown option, missing argument, bad value)
        if _is_click_error(exc):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)
