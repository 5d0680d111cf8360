"""``edtalk weights``: install, convert and inspect the model weights (thin layer over edtalk_cli.weights)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edtalk_cli.commands.consoles import make_console, print_error
from edtalk_cli.errors import EdtalkError, WeightsError
from edtalk_cli.model.config import ModelConfig
from edtalk_cli.weights.hub import DEFAULT_TIMEOUT, download_official
from edtalk_cli.weights.kinds import HUB_REPO_ID, KINDS
from edtalk_cli.weights.store import WeightsDir, load_official_emotions, resolve_weights_dir

# the checkpoint readers (edtalk_cli.weights.checkpoint) import torch: they are imported in the
# commands that read checkpoints, so `edtalk --help` and the other commands start without torch

app = typer.Typer(
    help="Install, convert and inspect the EDTalk model weights.",
    no_args_is_help=True,
    add_completion=False,
)

_WEIGHTS_HELP = "Weights directory (default: $EDTALK_WEIGHTS, else the per-user cache)."
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")


def _out() -> Console:
    return make_console(soft_wrap=True, highlight=False)


def _err() -> Console:
    return make_console(stderr=True, soft_wrap=True, highlight=False)


def _print_error(exc: EdtalkError) -> None:
    print_error(_err(), exc)


def _summary(kind: str, config: ModelConfig) -> str:
    """Short config description for the info table."""
    if kind == "audio2lip":
        return f"lip {config.lip_dim}, widths {'-'.join(str(w) for w in config.audio_widths)}"
    parts = [
        f"size {config.size}",
        f"style {config.style_dim}",
        f"lip {config.lip_dim}",
        f"pose {config.pose_dim}",
    ]
    if kind == "edtalk":
        parts += [f"exp {config.exp_dim}", f"eem {config.eem_hidden}"]
    parts.append(f"channels {config.channel_base}/{config.channel_max}")
    return ", ".join(parts)


@app.command("path")
def path_cmd(
    weights: Path | None = typer.Option(None, "--weights", "-w", help=_WEIGHTS_HELP),
) -> None:
    """Print the weights directory in use (--weights, else $EDTALK_WEIGHTS, else the user cache)."""
    typer.echo(str(resolve_weights_dir(weights)))


@app.command("download")
def download_cmd(
    weights: Path | None = typer.Option(None, "--weights", "-w", help=_WEIGHTS_HELP),
    repo: str = typer.Option(HUB_REPO_ID, "--repo", help="Hugging Face repository holding ckpts/."),
    revision: str = typer.Option("main", "--revision", help="Branch, tag or commit of the repository."),
    timeout: float = typer.Option(DEFAULT_TIMEOUT, "--timeout", min=0.5, help="Seconds to wait for the Hub."),
    force: bool = typer.Option(False, "--force", help="Download again even if the files are cached."),
    safetensors: bool = typer.Option(False, "--safetensors", help="Also write .safetensors copies."),
) -> None:
    """Download the official checkpoints and emotion presets, verify them and install them."""
    target = resolve_weights_dir(weights)
    out = _out()
    out.print(f"Fetching the official EDTalk weights from {repo} into {target}")
    paths = download_official(
        target, repo_id=repo, revision=revision, timeout=timeout, force=force, convert=safetensors
    )
    for path in paths:
        out.print(f"  installed {path}")
    out.print(f"Done: {len(paths)} file(s) verified and installed in {target}")


@app.command("convert")
def convert_cmd(
    paths: list[Path] = typer.Argument(..., help="Checkpoint files (.pt or .safetensors) to convert."),
    out_dir: Path | None = typer.Option(
        None, "--out", "-o", help="Output directory (default: beside each file)."
    ),
) -> None:
    """Convert checkpoints to <stem>.safetensors + <stem>.json (kind, config, source, sha256)."""
    from edtalk_cli.weights.checkpoint import convert_to_safetensors, read_sidecar

    out = _out()
    failures = 0
    for src in paths:
        try:
            dst = convert_to_safetensors(src, out_dir)
            kind = (read_sidecar(dst) or {}).get("kind", "?")
        except WeightsError as exc:
            failures += 1
            _print_error(exc)
            continue
        title = KINDS[kind].title if kind in KINDS else "unknown model"
        out.print(f"{src} -> {dst} ({kind}: {title})")
    if failures:
        raise WeightsError(f"{failures} of {len(paths)} file(s) could not be converted (see above)")


def _files_to_inspect(target: Path) -> tuple[list[tuple[str, Path | None]], WeightsDir | None]:
    """(label, path or None when missing) rows for a file or a weights directory."""
    if not target.is_dir():
        return [(target.name, target)], None
    wdir = WeightsDir(target)
    rows: list[tuple[str, Path | None]] = []
    shown: set[Path] = set()
    for kind, spec in KINDS.items():
        path = wdir.path_for(kind)
        rows.append((path.name if path else spec.filename, path))
        shown.update(wdir.candidates(kind))
    extra = sorted(p for p in target.iterdir() if p.suffix in _CHECKPOINT_SUFFIXES and p not in shown)
    rows += [(p.name, p) for p in extra if p.is_file()]
    return rows, wdir


@app.command("info")
def info_cmd(
    target: Path | None = typer.Argument(
        None, help="A weights file or directory (default: the weights dir)."
    ),
    weights: Path | None = typer.Option(None, "--weights", "-w", help=_WEIGHTS_HELP),
) -> None:
    """Show which model each file holds, its configuration, parameter count and format."""
    from edtalk_cli.weights.bundle import weights_named
    from edtalk_cli.weights.checkpoint import count_parameters, read_checkpoint

    default = target is None and not weights_named(weights)  # the demo model would stand in
    target = (target or resolve_weights_dir(weights)).expanduser()
    if default and not target.exists():
        _out().print(
            f"No weights installed in {target}: `edtalk render` uses the built-in demo model "
            "(trained on synthetic faces only). Install the official weights with `edtalk weights download`."
        )
        return
    if not target.exists():
        raise WeightsError(
            f"{target} does not exist",
            hint="run `edtalk weights download` to install the official weights, or pass an existing path",
        )
    rows, wdir = _files_to_inspect(target)
    out = _out()
    out.print(f"{'Weights directory' if wdir else 'Weights file'}: {target}")
    table = Table(show_lines=False)
    for column in ("File", "Kind", "Format", "Config", "Params", "Status"):
        table.add_column(column, overflow="fold")
    errors: list[WeightsError] = []
    missing: list[str] = []
    for label, path in rows:
        if path is None:
            missing.append(label)
            table.add_row(label, "-", "-", "-", "-", "missing")
            continue
        fmt = "safetensors" if path.suffix == ".safetensors" else "pt"
        try:
            kind, _, config = read_checkpoint(path)
            params = f"{count_parameters(kind, config):,}"
        except WeightsError as exc:
            errors.append(exc)
            table.add_row(label, "?", fmt, "-", "-", "error")
            continue
        table.add_row(label, kind, fmt, _summary(kind, config), params, "ok")
    out.print(table)
    if wdir is not None:
        try:
            presets = load_official_emotions(target)
        except WeightsError as exc:
            errors.append(exc)
        else:
            names = ", ".join(presets) if presets else "none"
            out.print(f"Emotion presets ({wdir.presets_dir.name}): {names}")
            if not presets and wdir.path_for("edtalk") is not None:
                out.print("  EDTalk.pt renders with the official presets shipped with edtalk instead")
    if missing:
        out.print(f"Missing: {', '.join(missing)}; install them with `edtalk weights download`")
    for exc in errors:
        _print_error(exc)
    if errors:
        raise WeightsError(f"{len(errors)} problem(s) found in {target} (see above)")
