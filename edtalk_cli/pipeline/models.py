"""Which models a job renders with: official weights from a weights directory, or the demo model."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edtalk_cli.errors import WeightsError
from edtalk_cli.model import Audio2Lip
from edtalk_cli.model.generator import _EDTalkBase
from edtalk_cli.weights import ENV_VAR, WeightsDir, load_model, resolve_weights_dir

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
    identity: str  # short hash of the weight files, for fingerprints and logs
    description: str
    files: list[Path] = field(default_factory=list)
    is_demo: bool = False

    @property
    def size(self) -> int:
        return self.generator.config.size

    @property
    def has_expression(self) -> bool:
        return self.generator.has_expression


def _file_identity(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


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


def load_bundle(
    weights: str | Path | None = None, model: str = "auto", *, device: str | torch.device = "cpu"
) -> ModelBundle:
    """Load the generator (+ Audio2Lip and emotions) from the resolved weights directory.

    ``model``: "auto" (full EDTalk if present, else lip+pose), "edtalk" or "lip_pose".
    """
    wdir, kind, generator_path, audio_path, is_demo = resolve_bundle_files(weights, model)
    root = wdir.root
    generator, _ = load_model(generator_path, kind, device=device)
    audio2lip, _ = load_model(audio_path, "audio2lip", device=device)
    emotions = {name: vec.reshape(-1) for name, vec in wdir.emotions().items()}
    files = [generator_path, audio_path]
    return ModelBundle(
        generator=generator,
        audio2lip=audio2lip,
        emotions=emotions,
        kind=kind,
        identity=_file_identity(files),
        description="the built-in demo model"
        if is_demo
        else f"{generator_path.name} + {audio_path.name} from {root}",
        files=files,
        is_demo=is_demo,
    )
