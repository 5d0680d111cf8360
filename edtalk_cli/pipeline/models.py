"""Which models a job renders with: official weights from a weights directory, or the demo model."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edtalk_cli.errors import WeightsError
from edtalk_cli.manifest.emotions import AvailableEmotions
from edtalk_cli.manifest.model import Job
from edtalk_cli.weights.identity import identity_digest, model_identity
from edtalk_cli.weights.store import (
    BUNDLED_PRESETS_DIR,
    ENV_VAR,
    WeightsDir,
    preset_files,
    read_preset,
    resolve_weights_dir,
)

if TYPE_CHECKING:  # torch is imported when a model is loaded, so checking a manifest stays light
    import torch

    from edtalk_cli.hashing import FileHasher
    from edtalk_cli.model import Audio2Lip
    from edtalk_cli.model.generator import _EDTalkBase

# manifest/CLI model names -> generator kind
MODEL_CHOICES = ("auto", "edtalk", "lip_pose", "demo")
DEMO_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"
DEMO_NOTICE = (
    "using the built-in demo model (trained on synthetic faces only); for real faces install the "
    "official EDTalk weights with `edtalk weights download`"
)


def demo_weights_dir() -> Path | None:
    """The demo model shipped in the package, or None when this build has none."""
    return DEMO_DIR if WeightsDir(DEMO_DIR).path_for("edtalk") is not None else None


_KIND_OF = {"edtalk": "edtalk", "lip_pose": "edtalk_lip_pose", "demo": "edtalk"}


@dataclass
class ModelBundle:
    """A generator, its Audio2Lip and its emotion vectors, loaded once and reused across jobs."""

    generator: _EDTalkBase
    audio2lip: Audio2Lip
    emotions: dict[str, np.ndarray]  # name -> (exp_dim,) raw expression coefficients
    kind: str  # "edtalk" or "edtalk_lip_pose"
    identity: str  # identity_digest(content_identity): short, for cache keys and logs
    description: str
    files: list[Path] = field(default_factory=list)
    is_demo: bool = False
    emotion_files: list[Path] = field(default_factory=list)  # the .npy files of ``emotions``
    weights_dir: Path | None = None  # the directory searched (--weights, $EDTALK_WEIGHTS, cache)
    content_identity: dict[str, Any] = field(default_factory=dict)  # weights.identity.model_identity

    @property
    def size(self) -> int:
        return self.generator.config.size

    @property
    def has_expression(self) -> bool:
        return self.generator.has_expression


def emotion_files(wdir: WeightsDir, kind: str) -> list[Path]:
    """The emotion presets a bundle of ``kind`` from ``wdir`` uses.

    The directory's own ``predefined_exp_weights/*.npy``; when it has none, the official presets
    shipped in the package for the full official model (kind ``edtalk``); none for lip+pose.
    """
    own = preset_files(wdir.presets_dir)
    if own or kind != "edtalk":
        return own
    return preset_files(BUNDLED_PRESETS_DIR)


def resolve_bundle_files(weights: str | Path | None, model: str) -> tuple[WeightsDir, str, Path, Path, bool]:
    """Which files a bundle loads, without loading them: (weights dir, generator kind,
    generator file, Audio2Lip file, is_demo). Raises a WeightsError when a file is missing.
    """
    if model not in MODEL_CHOICES:
        raise WeightsError(f"unknown model {model!r}", hint=f"use one of: {', '.join(MODEL_CHOICES)}")
    explicit = weights is not None or bool(os.environ.get(ENV_VAR, "").strip())
    root = resolve_weights_dir(weights)
    wdir = WeightsDir(root)
    available = wdir.available()
    has_official = "edtalk" in available or "edtalk_lip_pose" in available
    demo = demo_weights_dir()
    is_demo = model == "demo" or (model == "auto" and not has_official and not explicit and demo is not None)
    if model == "demo" and demo is None:
        raise WeightsError(
            "this installation has no built-in demo model", hint="use model: auto with official weights"
        )
    if is_demo:
        wdir, model = WeightsDir(demo), "edtalk"
        available = wdir.available()
    if model == "auto":
        kind = "edtalk" if "edtalk" in available else "edtalk_lip_pose"
    else:
        kind = _KIND_OF[model]
    return wdir, kind, wdir.require(kind), wdir.require("audio2lip"), is_demo


def bundle_identity(
    weights: str | Path | None, model: str, hasher: FileHasher | None = None
) -> dict[str, Any]:
    """The content identity of the bundle :func:`load_bundle` (``weights``, ``model``) would load,
    without loading it (a ``stat`` per file once the files were hashed)."""
    wdir, kind, generator_path, audio_path, _ = resolve_bundle_files(weights, model)
    return model_identity(kind, [generator_path, audio_path], emotion_files(wdir, kind), hasher)


def load_bundle(
    weights: str | Path | None = None,
    model: str = "auto",
    *,
    device: str | torch.device = "cpu",
    hasher: FileHasher | None = None,
) -> ModelBundle:
    """Load the generator (+ Audio2Lip and emotions) from the resolved weights directory.

    ``model``: "auto" (full EDTalk if present, else lip+pose), "edtalk" or "lip_pose".
    ``hasher``: hashes the files for the bundle's content identity (default: this process's).
    """
    from edtalk_cli.weights.checkpoint import load_model

    wdir, kind, generator_path, audio_path, is_demo = resolve_bundle_files(weights, model)
    root = wdir.root
    presets = emotion_files(wdir, kind)
    files = [generator_path, audio_path]
    content = model_identity(
        kind, files, presets, hasher
    )  # hashed first: an edit during the load only makes the next lookup reload
    generator, _ = load_model(generator_path, kind, device=device)
    audio2lip, _ = load_model(audio_path, "audio2lip", device=device)
    emotions = {p.stem: read_preset(p) for p in presets}  # name -> (10,)
    return ModelBundle(
        generator=generator,
        audio2lip=audio2lip,
        emotions=emotions,
        kind=kind,
        identity=identity_digest(content),
        description="the built-in demo model"
        if is_demo
        else f"{generator_path.name} + {audio_path.name} from {root}",
        files=files,
        is_demo=is_demo,
        emotion_files=presets,
        weights_dir=resolve_weights_dir(weights),
        content_identity=content,
    )


def available_emotions(weights: str | Path | None, model: str) -> AvailableEmotions:
    """The emotions :func:`load_bundle` (``weights``, ``model``) would offer, without loading a model."""
    wdir, kind, generator_path, _, is_demo = resolve_bundle_files(weights, model)
    description = "the built-in demo model" if is_demo else f"{generator_path.name} from {wdir.root}"
    names = frozenset(p.stem for p in emotion_files(wdir, kind))
    return AvailableEmotions(description=description, names=names, has_expression=kind == "edtalk")


def emotions_checker(weights: str | Path | None, model: str | None) -> Callable[[Job], AvailableEmotions]:
    """Each job's :func:`available_emotions`, for :func:`~edtalk_cli.manifest.emotions.check_emotions`.

    ``weights``/``model`` (the command line's) override the job's; computed once per pair.
    """
    seen: dict[tuple[str, str], AvailableEmotions] = {}

    def check(job: Job) -> AvailableEmotions:
        job_weights = weights if weights is not None else job.weights
        job_model = model or job.model
        key = (str(job_weights), job_model)
        if key not in seen:
            seen[key] = available_emotions(job_weights, job_model)
        return seen[key]

    return check
