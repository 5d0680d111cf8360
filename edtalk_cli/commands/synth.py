"""``edtalk synth``: write synthetic talking-face clips and datasets (thin layer over synthetic/)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edtalk_cli.commands.consoles import print_error
from edtalk_cli.errors import EdtalkError

app = typer.Typer(
    help="Generate synthetic talking faces with exact ground truth (pose, mouth, expression).",
    no_args_is_help=True,
    add_completion=False,
)

_EMOTION_HELP = (
    "An emotion name (neutral, happy, sad, angry, surprised, fear, disgusted, contempt), "
    "'random' (one per clip) or 'segments' (several, with transitions)."
)


def _fail(exc: EdtalkError) -> typer.Exit:
    print_error(Console(stderr=True, soft_wrap=True, highlight=False), exc)
    return typer.Exit(1)


@app.command("clip")
def clip(
    out_dir: Path = typer.Argument(..., help="Clip directory to create (video.mp4, audio.wav, factors.npz)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the clip (speech, motion, expression)."),
    identity_seed: int | None = typer.Option(
        None, "--identity-seed", help="Seed of the identity (default: --seed)."
    ),
    seconds: float = typer.Option(4.0, "--seconds", min=0.04, max=120, help="Duration in seconds (25 fps)."),
    size: int = typer.Option(128, "--size", help="Frame size in pixels (even, 64..256)."),
    emotion: str = typer.Option("random", "--emotion", help=_EMOTION_HELP),
    intensity: float | None = typer.Option(
        None, "--intensity", min=0.0, max=1.0, help="Emotion intensity (default random)."
    ),
    motion: float = typer.Option(1.0, "--motion", min=0.0, max=2.0, help="Head-motion amount (0 = still)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT_DIR."),
) -> None:
    """Write one synthetic clip."""
    from edtalk_cli.synthetic.dataset import ClipSpec, check_emotion, check_size, write_clip

    try:
        check_size(size)
        check_emotion(emotion)
        spec = ClipSpec(
            seed=seed,
            identity_seed=seed if identity_seed is None else identity_seed,
            n_frames=max(1, round(seconds * 25)),
            size=size,
            emotion=emotion,
            intensity=intensity,
            motion=motion,
        )
        info = write_clip(spec, out_dir, overwrite=overwrite)
    except EdtalkError as exc:
        raise _fail(exc) from exc
    Console(highlight=False, soft_wrap=True).print(
        f"wrote {escape(str(out_dir))}: {info['frames']} frames at 25 fps, {size}x{size}, "
        f"identity {info['identity']}, emotion {info['emotion']}"
    )


@app.command("dataset")
def dataset(
    out_dir: Path = typer.Argument(..., help="Dataset root to create (index.json, train/, test/)."),
    clips: int = typer.Option(..., "--clips", min=0, help="Number of training clips."),
    test_clips: int = typer.Option(
        0, "--test-clips", min=0, help="Number of test clips (identities disjoint from train)."
    ),
    size: int = typer.Option(128, "--size", help="Frame size in pixels (even, 64..256)."),
    seconds: float = typer.Option(
        4.0, "--seconds", min=0.04, max=120, help="Duration of each clip in seconds."
    ),
    seed: int = typer.Option(0, "--seed", help="Dataset seed."),
    emotion: str = typer.Option("random", "--emotion", help=_EMOTION_HELP),
    clips_per_identity: int = typer.Option(
        1, "--clips-per-identity", min=1, help="Clips sharing one identity."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Parallel worker processes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT_DIR."),
) -> None:
    """Write a synthetic dataset with disjoint train/test identities."""
    from edtalk_cli.synthetic.dataset import write_dataset

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    progress = Progress(
        TextColumn("[bold]synth"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    try:
        with progress:
            task = progress.add_task("clips", total=clips + test_clips)
            index = write_dataset(
                out_dir,
                clips,
                test_clips,
                size=size,
                seconds=seconds,
                seed=seed,
                emotion=emotion,
                clips_per_identity=clips_per_identity,
                workers=workers,
                overwrite=overwrite,
                on_clip=lambda done, total: progress.update(task, completed=done),
            )
    except EdtalkError as exc:
        raise _fail(exc) from exc
    n_id = {s: len({c.identity for c in index.split(s)}) for s in ("train", "test")}
    Console(highlight=False, soft_wrap=True).print(
        f"wrote {escape(str(out_dir))}: "
        f"{len(index.split('train'))} train clips ({n_id['train']} identities), "
        f"{len(index.split('test'))} test clips ({n_id['test']} identities), {size}x{size}, 25 fps"
    )


@app.command("sheet")
def sheet(
    out_png: Path = typer.Argument(..., help="PNG file to write."),
    size: int = typer.Option(96, "--size", help="Tile size in pixels (even, 64..256)."),
    seed: int = typer.Option(0, "--seed", help="First identity seed."),
) -> None:
    """Write a contact sheet: emotions, mouth shapes and head poses."""
    from PIL import Image

    from edtalk_cli.atomic import atomic_write
    from edtalk_cli.synthetic.dataset import check_size
    from edtalk_cli.synthetic.preview import contact_sheet

    try:
        check_size(size)
    except EdtalkError as exc:
        raise _fail(exc) from exc
    img = contact_sheet(size, seed)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_png, "wb", suffix=".png") as fh:
        Image.fromarray(img).save(fh, format="PNG", optimize=True)
    Console(highlight=False, soft_wrap=True).print(
        f"wrote {escape(str(out_png))} ({img.shape[1]}x{img.shape[0]})"
    )
