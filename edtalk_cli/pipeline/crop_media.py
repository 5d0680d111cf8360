"""``edtalk crop``: write the model-size face crop of images and videos, as ``edtalk render`` cuts it.

An image becomes ``DIR/<stem>.png``; a video becomes ``DIR/<stem>.mp4`` at its own frame rate (or
``fps``), with its audio muxed when it has any. The crops come from the same code the render
pipeline uses (:func:`~edtalk_cli.pipeline.faces.face_crops` for images,
:class:`~edtalk_cli.pipeline.faces.VideoFaceSource` for videos, which streams). All outputs are
checked before anything is written (unknown kinds, two inputs with one stem, existing outputs
without ``overwrite``); then each input is written atomically, and one that fails (no face, an
unreadable file) costs no other its output.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from edtalk_cli.atomic import atomic_write
from edtalk_cli.errors import EdtalkError, MediaError, UsageError
from edtalk_cli.pipeline.faces import VideoFaceSource, face_crops
from edtalk_cli.video import FaceDetector, is_image_path, is_video_path, probe_video, write_mp4

__all__ = ["CROP_COMMAND_MODES", "CropOutcome", "crop_media", "plan_crop_outputs"]

CROP_COMMAND_MODES = ("auto", "box")


@dataclass
class CropOutcome:
    """What became of one input: ``output`` written (``error`` None) or the reason it was not."""

    input: Path
    output: Path
    kind: str  # "image" | "video"
    frames: int = 0
    missing_frames: int = 0
    error: EdtalkError | None = None
    notes: list[str] = field(default_factory=list)


def plan_crop_outputs(
    inputs: Sequence[Path], out_dir: Path, *, overwrite: bool = False
) -> list[tuple[Path, Path]]:
    """(input, output) pairs; raises :class:`UsageError` (:class:`MediaError` for a missing or unknown
    input) naming the file before anything is written
    when an input is missing or neither an image nor a video, two inputs share a stem, or an output
    exists and ``overwrite`` is False."""
    pairs: list[tuple[Path, Path]] = []
    stems: dict[str, Path] = {}
    for path in inputs:
        path = Path(path)
        if not path.is_file():
            raise MediaError(f"input file '{path}' does not exist", hint="check the path")
        if is_video_path(path):
            suffix = ".mp4"
        elif is_image_path(path):
            suffix = ".png"
        else:
            raise MediaError(
                f"'{path}' is neither an image nor a video (by its extension)",
                hint="use .png/.jpg/... images or .mp4/.mov/... videos",
            )
        if path.stem in stems:
            raise UsageError(
                f"'{stems[path.stem]}' and '{path}' have the same name '{path.stem}': "
                f"their crops would collide in '{out_dir}'",
                hint="crop them into different output folders, or rename one",
            )
        stems[path.stem] = path
        target = out_dir / f"{path.stem}{suffix}"
        if target.exists() and not overwrite:
            raise UsageError(f"output '{target}' already exists", hint="pass --overwrite to replace it")
        pairs.append((path, target))
    return pairs


def _write_image(source: Path, target: Path, size: int, mode: str, detector: FaceDetector) -> CropOutcome:
    faces = face_crops(source, size=size, crop=mode, detector=detector)
    with atomic_write(target, "wb", suffix=".png") as fh:
        Image.fromarray(faces.crops[0]).save(fh, format="PNG")
    return CropOutcome(source, target, "image", frames=1)


def _write_video(
    source: Path, target: Path, size: int, mode: str, detector: FaceDetector, fps: float | None
) -> CropOutcome:
    info = probe_video(source)
    rate = fps or info.fps
    faces = VideoFaceSource(source, fps=rate, size=size, crop=mode, detector=detector)
    n = faces.num_frames
    if n == 0:
        raise MediaError(f"video '{source}' has no frames")

    def crops() -> Iterator:
        for i in range(n):
            yield faces.crop(i)

    written = write_mp4(crops(), target, rate, source if info.has_audio else None, n_frames=n)
    outcome = CropOutcome(source, target, "video", frames=written.frames, missing_frames=faces.missing_frames)
    if not info.has_audio:
        outcome.notes.append("no audio track")
    if faces.missing_frames:
        outcome.notes.append(f"{faces.missing_frames} of {n} frames had no face (crop interpolated)")
    return outcome


def crop_media(
    inputs: Sequence[Path],
    out_dir: Path,
    *,
    size: int = 256,
    mode: str = "auto",
    overwrite: bool = False,
    fps: float | None = None,
    detector: FaceDetector | None = None,
) -> list[CropOutcome]:
    """Crop every input into ``out_dir`` (see the module docstring); returns one outcome per input.

    ``mode`` is ``"auto"`` (official alignment) or ``"box"``; ``fps`` resamples videos (default:
    their own rate). Errors found before writing raise; per-input errors are in the outcomes.
    """
    if mode not in CROP_COMMAND_MODES:
        raise UsageError(f"crop mode must be one of {', '.join(CROP_COMMAND_MODES)}; got {mode!r}")
    if size < 8:
        raise UsageError(f"crop size must be at least 8 px, got {size}")
    pairs = plan_crop_outputs(inputs, out_dir, overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    detector = detector or FaceDetector()
    outcomes = []
    for source, target in pairs:
        kind = "video" if is_video_path(source) else "image"
        try:
            if kind == "video":
                outcomes.append(_write_video(source, target, size, mode, detector, fps))
            else:
                outcomes.append(_write_image(source, target, size, mode, detector))
        except EdtalkError as exc:
            outcomes.append(CropOutcome(source, target, kind, error=exc))
    return outcomes
