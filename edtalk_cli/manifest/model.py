"""Resolved manifest objects: what the pipeline consumes.

Every field is merged (defaults, preset, job), typed, and every path is absolute. Times are
seconds (float). These are frozen pydantic models, so ``job.model_dump(mode="json")`` gives a
JSON-ready dict (e.g. for ``--log-json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["EmotionSpec", "Encode", "Job", "Manifest", "Mouth", "PoseSpec", "Segment", "Source"]

PoseModeName = Literal["loop", "pingpong", "hold"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Frozen):
    """The face to animate."""

    path: Path
    kind: Literal["image", "video"]
    crop: Literal["auto", "none"] = "auto"  # auto: detect + crop the face; none: the whole frame is the face
    paste_back: bool = True  # paste the 256x256 face back into the full frame (only with crop auto)
    loop: Literal["loop", "pingpong"] = "pingpong"  # video source shorter than the audio


class Mouth(_Frozen):
    """Where the mouth motion comes from: the audio (Audio2Lip) or a reference video."""

    kind: Literal["audio", "video"] = "audio"
    path: Path | None = None
    crop: Literal["auto", "none"] = "auto"  # for a reference video


class PoseSpec(_Frozen):
    """Head pose: the source's own (static), a reference video, or a saved (T, 6) track."""

    kind: Literal["static", "video", "track"] = "static"
    path: Path | None = None
    crop: Literal["auto", "none"] = "auto"  # for a reference video
    mode: PoseModeName = "pingpong"  # extension when the reference is shorter than needed

    @property
    def is_static(self) -> bool:
        return self.kind == "static"


class EmotionSpec(_Frozen):
    """An expression, before intensity is applied.

    kind ``name``: a model emotion vector (``name`` is one of MODEL_EMOTIONS);
    ``image`` / ``video``: a reference (``path``; ``mode`` extends a short video);
    ``coeffs``: ten raw coefficients; ``blend``: ``components`` with weights summing to 1.
    ``label`` is the preset or emotion name used for ``{preset}`` in output templates
    (``custom`` for anything without a name).
    """

    kind: Literal["name", "image", "video", "coeffs", "blend"]
    intensity: float = 1.0
    name: str | None = None
    path: Path | None = None
    crop: Literal["auto", "none"] = "auto"  # for a reference image or video
    mode: PoseModeName = "pingpong"
    coeffs: tuple[float, ...] | None = None
    components: tuple[tuple[float, EmotionSpec], ...] | None = None
    label: str = "custom"

    @property
    def is_fixed(self) -> bool:
        """True when this resolves to one vector (not a per-frame reference video)."""
        if self.kind == "blend":
            return all(spec.is_fixed for _, spec in self.components or ())
        return self.kind != "video"


class Segment(_Frozen):
    """Overrides on the frames whose time t = i / fps satisfies start <= t < end."""

    start: float
    end: float | None = None  # None: until the end of the audio
    emotion: EmotionSpec | None = None
    pose: PoseSpec | None = None


class Encode(_Frozen):
    """The H.264 encoder settings of the output (libx264 ``-crf`` and ``-preset``)."""

    crf: int = 18
    preset: str = "medium"


class Job(_Frozen):
    """One video to render, fully resolved."""

    name: str
    manifest: Path  # the manifest file that defines the job
    source: Source
    audio: Path
    mouth: Mouth = Mouth()
    pose: PoseSpec = PoseSpec()
    emotion: EmotionSpec = EmotionSpec(kind="name", name="neutral", label="neutral")
    emotion_explicit: bool = False  # False when the emotion is the implicit neutral default
    preset: str | None = None  # the job-level preset, if any
    segments: tuple[Segment, ...] = ()
    transition: float = 0.4  # seconds
    output: Path
    fps: float = 25.0
    model: Literal["auto", "edtalk", "lip_pose", "demo"] = "auto"
    weights: Path | None = None
    batch_size: int | None = None
    encode: Encode = Encode()


class Manifest(_Frozen):
    """A loaded manifest: its file, the files it included, and its resolved jobs."""

    path: Path
    jobs: tuple[Job, ...]
    includes: tuple[Path, ...] = ()
