"""Which files a model bundle reads, its one content identity, and the loaded bundle.

:class:`ModelFiles` chooses the files of a bundle from a weights directory (the generator
checkpoint, Audio2Lip, the emotion presets: the directory's own ``predefined_exp_weights/`` or
the official presets shipped in the package; or the built-in demo model) and computes the content
identity that fingerprints, the content cache, reports and the workers' model cache use. It
neither imports torch nor loads a model, so checking a manifest and planning a run stay light.
:meth:`ModelBundle.from_dir` loads what :meth:`ModelFiles.from_dir` chose.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edtalk_cli.errors import WeightsError
from edtalk_cli.weights.identity import identity_digest, model_identity
from edtalk_cli.weights.store import (
    BUNDLED_PRESETS_DIR,
    ENV_VAR,
    WeightsDir,
    preset_files,
    read_preset,
    resolve_weights_dir,
)

if TYPE_CHECKING:  # torch and numpy load with the first model, not when files are only chosen
    import numpy as np
    import torch

    from edtalk_cli.hashing import FileHasher
    from edtalk_cli.model import Audio2Lip
    from edtalk_cli.model.generator import _EDTalkBase

__all__ = [
    "DEMO_DIR",
    "DEMO_NOTICE",
    "MODEL_CHOICES",
    "ModelBundle",
    "ModelFiles",
    "demo_weights_dir",
    "weights_named",
]

# the manifest's and the command line's model names
MODEL_CHOICES = ("auto", "edtalk", "lip_pose", "demo")
DEMO_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"
DEMO_DESCRIPTION = "the built-in demo model"
DEMO_NOTICE = (
    "using the built-in demo model (trained on synthetic faces only); for real faces install the "
    "official EDTalk weights with `edtalk weights download`"
)
_KIND_OF = {"edtalk": "edtalk", "lip_pose": "edtalk_lip_pose", "demo": "edtalk"}  # model name -> kind


def demo_weights_dir() -> Path | None:
    """The demo model shipped in the package, or None when this build has none."""
    return DEMO_DIR if WeightsDir(DEMO_DIR).path_for("edtalk") is not None else None


def weights_named(weights: str | Path | None) -> bool:
    """Whether the user named a weights directory (``--weights`` / ``weights:`` or ``$EDTALK_WEIGHTS``).

    When none was named and the per-user cache holds no official model, the demo model stands in.
    """
    return weights is not None or bool(os.environ.get(ENV_VAR, "").strip())


def emotion_preset_files(wdir: WeightsDir, kind: str) -> tuple[Path, ...]:
    """The emotion presets a generator of ``kind`` from ``wdir`` uses.

    The directory's own ``predefined_exp_weights/*.npy``; when it has none, the official presets
    shipped in the package for the full model (kind ``edtalk``); none for lip+pose.
    """
    own = preset_files(wdir.presets_dir)
    if own or kind != "edtalk":
        return tuple(own)
    return tuple(preset_files(BUNDLED_PRESETS_DIR))


@dataclass(frozen=True)
class ModelFiles:
    """The files one bundle reads, chosen without loading them (:meth:`from_dir`)."""

    weights_dir: Path  # the directory searched (--weights, $EDTALK_WEIGHTS, the per-user cache)
    root: Path  # the directory the files come from: weights_dir, or the demo model's
    kind: str  # generator kind: "edtalk" or "edtalk_lip_pose"
    generator: Path
    audio2lip: Path
    emotions: tuple[Path, ...]  # the .npy emotion presets, sorted by name
    is_demo: bool = False

    @classmethod
    def from_dir(cls, weights: str | Path | None = None, model: str = "auto") -> ModelFiles:
        """The files :meth:`ModelBundle.from_dir` (``weights``, ``model``) loads.

        ``weights``: the directory named by the user (None: ``$EDTALK_WEIGHTS``, else the
        per-user cache); ``model``: one of :data:`MODEL_CHOICES` ("auto": the full model if
        present, else lip+pose; the demo model when no weights were named and none are installed).
        Raises a WeightsError when the model name is unknown or a file is missing.
        """
        if model not in MODEL_CHOICES:
            raise WeightsError(f"unknown model {model!r}", hint=f"use one of: {', '.join(MODEL_CHOICES)}")
        searched = resolve_weights_dir(weights)
        wdir = WeightsDir(searched)
        available = wdir.available()
        has_official = "edtalk" in available or "edtalk_lip_pose" in available
        demo = demo_weights_dir()
        if model == "demo" and demo is None:
            raise WeightsError(
                "this installation has no built-in demo model", hint="use model: auto with official weights"
            )
        is_demo = model == "demo" or (
            model == "auto" and not has_official and not weights_named(weights) and demo is not None
        )
        if is_demo:
            wdir, model = WeightsDir(demo), "edtalk"
            available = wdir.available()
        if model == "auto":
            kind = "edtalk" if "edtalk" in available else "edtalk_lip_pose"
        else:
            kind = _KIND_OF[model]
        return cls(
            weights_dir=searched,
            root=wdir.root,
            kind=kind,
            generator=wdir.require(kind),
            audio2lip=wdir.require("audio2lip"),
            emotions=emotion_preset_files(wdir, kind),
            is_demo=is_demo,
        )

    @property
    def files(self) -> list[Path]:
        """The checkpoints: generator, then Audio2Lip."""
        return [self.generator, self.audio2lip]

    @property
    def emotion_names(self) -> frozenset[str]:
        return frozenset(p.stem for p in self.emotions)

    @property
    def has_expression(self) -> bool:
        """Whether the generator has an expression bank (the lip+pose model has none)."""
        return self.kind == "edtalk"

    @property
    def description(self) -> str:
        """``EDTalk.pt + Audio2Lip.pt from /weights`` (or the demo model), for logs and reports."""
        if self.is_demo:
            return DEMO_DESCRIPTION
        return f"{self.generator.name} + {self.audio2lip.name} from {self.root}"

    @property
    def generator_description(self) -> str:
        """``EDTalk.pt from /weights`` (or the demo model), for messages about the generator."""
        return DEMO_DESCRIPTION if self.is_demo else f"{self.generator.name} from {self.root}"

    def crop_size(self) -> int:
        """The generator's crop size in px (:attr:`ModelBundle.size` once loaded), from its
        configuration or tensor shapes without reading the tensors' data (this imports torch)."""
        from edtalk_cli.weights.checkpoint import read_checkpoint

        return read_checkpoint(self.generator, shapes_only=True).config.size

    def content_identity(self, hasher: FileHasher | None = None) -> dict[str, Any]:
        """The kind and the sha256 of every file (:func:`~edtalk_cli.weights.identity.model_identity`);
        ``hasher`` remembers hashes per file version (default: this process's)."""
        return model_identity(self.kind, self.files, self.emotions, hasher)


@dataclass
class ModelBundle:
    """A generator, its Audio2Lip and its emotion vectors, loaded once and reused across jobs."""

    generator: _EDTalkBase
    audio2lip: Audio2Lip
    emotions: dict[str, np.ndarray]  # name -> (exp_dim,) raw expression coefficients
    model_files: ModelFiles
    content_identity: dict[str, Any]  # of model_files when they were loaded

    @classmethod
    def from_dir(
        cls,
        weights: str | Path | None = None,
        model: str = "auto",
        *,
        device: str | torch.device = "cpu",
        hasher: FileHasher | None = None,
    ) -> ModelBundle:
        """Load the files :meth:`ModelFiles.from_dir` (``weights``, ``model``) chooses onto ``device``.

        ``hasher``: hashes the files for the content identity (default: this process's).
        """
        from edtalk_cli.weights.checkpoint import load_model

        chosen = ModelFiles.from_dir(weights, model)
        # hashed before loading: a file edited during the load only makes the next lookup reload
        content = chosen.content_identity(hasher)
        generator, _ = load_model(chosen.generator, chosen.kind, device=device)
        audio2lip, _ = load_model(chosen.audio2lip, "audio2lip", device=device)
        emotions = {p.stem: read_preset(p) for p in chosen.emotions}  # name -> (10,)
        return cls(generator, audio2lip, emotions, chosen, content)

    @property
    def kind(self) -> str:
        return self.model_files.kind

    @property
    def identity(self) -> str:
        """A short name of the content identity (16 hex characters), for cache keys and logs."""
        return identity_digest(self.content_identity)

    @property
    def description(self) -> str:
        return self.model_files.description

    @property
    def files(self) -> list[Path]:
        return self.model_files.files

    @property
    def emotion_files(self) -> list[Path]:
        """The .npy files of :attr:`emotions`."""
        return list(self.model_files.emotions)

    @property
    def is_demo(self) -> bool:
        return self.model_files.is_demo

    @property
    def weights_dir(self) -> Path:
        return self.model_files.weights_dir

    @property
    def size(self) -> int:
        return self.generator.config.size

    @property
    def has_expression(self) -> bool:
        return self.generator.has_expression
