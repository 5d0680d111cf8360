"""Coefficient tracks of images or videos (``edtalk extract``): faces -> mouth, pose and expression.

Each input ``NAME.ext`` gives ``NAME.npz`` (all tracks) and ``NAME_{mouth,pose,expression}.npy``,
each (T, dim) float32, in the output folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from edtalk_cli.errors import EdtalkError, UsageError
from edtalk_cli.pipeline.engine import RenderEngine
from edtalk_cli.pipeline.faces import CROP_MODES, face_crops
from edtalk_cli.weights.bundle import ModelBundle

__all__ = ["ExtractedTrack", "checked_inputs", "extract_tracks"]


@dataclass(frozen=True)
class ExtractedTrack:
    """What one input gave: its frame count, frames without a face, and the files written."""

    source: Path
    frames: int
    missing_frames: int
    written: list[Path]


def checked_inputs(inputs: Sequence[Path], out: Path) -> list[Path]:
    """``inputs`` with each file once, after checking they exist and write distinct tracks in ``out``."""
    unique = list({path.resolve(): path for path in inputs}.values())
    by_stem: dict[str, Path] = {}
    for path in unique:
        if not path.exists():
            raise EdtalkError(f"input file '{path}' does not exist", hint="check the path")
        other = by_stem.setdefault(path.stem, path)
        if other is not path:
            raise UsageError(
                f"'{other}' and '{path}' would both write {out / path.stem}.npz",
                hint="extract them into separate --out folders, or rename one of them",
            )
    return unique


def extract_tracks(
    inputs: Sequence[Path],
    out: Path,
    *,
    weights: Path | None,
    model: str,
    fps: float,
    crop: str,
    device: torch.device | str,
    batch_size: int,
) -> tuple[str, list[ExtractedTrack]]:
    """Extract and write the coefficient tracks of every input; returns the model's description
    and one :class:`ExtractedTrack` per input.

    Every input is checked (:func:`checked_inputs`) before the model loads or anything is written.
    """
    if crop not in CROP_MODES:
        raise EdtalkError(f"--crop must be 'auto', 'box' or 'none', got {crop!r}")
    inputs = checked_inputs(inputs, out)
    bundle = ModelBundle.from_dir(weights, model, device=device)
    engine = RenderEngine(bundle.generator, device=device, batch_size=batch_size)
    tracks = []
    for path in inputs:
        faces = face_crops(path, size=engine.size, fps=fps, crop=crop)
        track = engine.extract_coefficients(faces.crops)
        out.mkdir(parents=True, exist_ok=True)
        npz = track.save(out / f"{path.stem}.npz")
        parts = track.save_components(out, path.stem)
        tracks.append(ExtractedTrack(path, len(track), faces.missing_frames, [npz, *parts.values()]))
    return bundle.description, tracks
