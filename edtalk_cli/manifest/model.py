"""Resolved manifest objects: what the pipeline consumes.

Every field is merged (defaults, preset, job), typed, and every path is absolute. Times are
seconds (float). These are frozen pydantic models, so ``job.model_dump(mode="json")`` gives a
JSON-ready dict (e.g. for ``--log-json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edtalk_cli.defaults import FPS, VIDEO_CODEC, X264_CRF, X264_PRESET
from edtalk_cli.manifest.yaml_marks import Origin
from edtalk_cli.video.masks import Region

__all__ = [
    "EmotionSpec",
    "Encode",
    "Enhance",
    "Job",
    "Manifest",
    "Mouth",
    "PasteBack",
    "PoseSpec",
    "Segment",
    "Source",
]

PoseModeName = Literal["loop", "pingpong", "hold"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PasteBack(_Frozen):
    """How the animated face is blended into the source frame (see edtalk_cli.video.masks)."""

    region: Region = "face"
    feather: float | None = None  # fraction of the crop side; None with feather_px None: the region's default
    feather_px: float | None = None  # output-frame pixels
    color_match: bool = False


class Source(_Frozen):
    """The face to animate."""

    path: Path
    kind: Literal["image", "video"]
    crop: Literal["auto", "box", "none"] = "auto"  # auto: aligned face; box: square box; none: whole frame
    paste_back: bool = True  # paste the 256x256 face back into the full frame (crop auto or box)
    paste_options: PasteBack = PasteBack()  # region, feather and colour matching of the paste-back
    loop: Literal["loop", "pingpong"] = "pingpong"  # video source shorter than the audio


class Mouth(_Frozen):
    """Where the mouth motion comes from: the audio (Audio2Lip) or a reference video."""

    kind: Literal["audio", "video"] = "audio"
    path: Path | None = None
    crop: Literal["auto", "box", "none"] = "auto"  # for a reference video
    mode: PoseModeName = "pingpong"  # extension when the reference video is shorter than the audio


class PoseSpec(_Frozen):
    """Head pose: the source's own (static), a reference video, or a saved (T, 6) track."""

    kind: Literal["static", "video", "track"] = "static"
    path: Path | None = None
    crop: Literal["auto", "box", "none"] = "auto"  # for a reference video
    mode: PoseModeName = "pingpong"  # extension when the reference is shorter than needed


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
    crop: Literal["auto", "box", "none"] = "auto"  # for a reference image or video
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
    """The video encoder settings of the output (``codec``; x264's ``-crf`` and ``-preset``, mapped for NVENC)."""

    codec: str = VIDEO_CODEC  # auto, h264, h264_nvenc or hevc_nvenc (video/encoders.py:CODECS)
    crf: int = X264_CRF
    preset: str = X264_PRESET


class Enhance(_Frozen):
    """Face enhancement before paste-back (see :mod:`edtalk_cli.pipeline.enhance`)."""

    model: Literal["gfpgan"] = "gfpgan"
    weights: Path | None = None  # None: GFPGANv1.4.safetensors / .pth in the weights directory
    strength: float = 1.0  # 1 = fully restored, 0 = the bicubic 2x upscale only


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
    fps: float = FPS
    model: Literal["auto", "edtalk", "lip_pose", "demo"] = "auto"
    weights: Path | None = None
    batch_size: int | None = None
    encode: Encode = Encode()
    enhance: Enhance | None = None  # None: no face enhancement
    # Where each manifest field of the job was written (``("segments[1].end", Origin)``), for
    # problems found after loading; not part of the job's settings (excluded from dumps).
    origins: tuple[tuple[str, Origin], ...] = Field(default=(), exclude=True, repr=False)

    def model_choice(self, weights: str | Path | None, model: str | None) -> tuple[str | None, str]:
        """(weights directory or None, model name) this job renders with: the command line's
        ``weights`` and ``model``, where given, over the job's own."""
        chosen = weights or self.weights
        return (None if chosen is None else str(chosen)), (model or self.model)

    def inputs(self) -> list[tuple[str, Path, str]]:
        """The media files the job reads: (manifest field, path, kind: image/video/audio/track)."""
        found: list[tuple[str, Path, str]] = [
            ("source.path", self.source.path, self.source.kind),
            ("audio", self.audio, "audio"),
        ]
        if self.mouth.kind == "video" and self.mouth.path is not None:
            found.append(("mouth.video", self.mouth.path, "video"))
        poses = [("pose", self.pose)] + [(f"segments[{i}].pose", s.pose) for i, s in enumerate(self.segments)]
        for field, pose in poses:
            if pose is not None and pose.kind != "static" and pose.path is not None:
                found.append((f"{field}.{pose.kind}", pose.path, pose.kind))
        emotions = [("emotion", self.emotion)]
        emotions += [(f"segments[{i}].emotion", s.emotion) for i, s in enumerate(self.segments)]
        for field, emotion in emotions:
            if emotion is not None:
                found.extend(_emotion_inputs(emotion, field))
        return found

    def locate(self, message: str) -> str:
        """``message`` prefixed with where the manifest names the input file it quotes (if any)."""
        for field, path, _ in self.inputs():
            if f"'{path}'" in message:
                origin = self.origin_of(field)
                return f"{origin.where()}: {origin.path}: {message}"
        return message

    def origin_of(self, field: str) -> Origin:
        """Where ``field`` (or its nearest written parent) was written; the manifest when unknown."""
        known = dict(self.origins)
        while field:
            if field in known:
                return known[field]
            cut = max(field.rfind("."), field.rfind("["))  # segments[1].end -> segments[1] -> segments
            field = field[:cut] if cut > 0 else ""
        return known.get("", Origin(self.manifest, 1, 1, ""))


def _emotion_inputs(spec: EmotionSpec, field: str) -> list[tuple[str, Path, str]]:
    if spec.kind in ("image", "video") and spec.path is not None:
        return [(f"{field}.{spec.kind}", spec.path, spec.kind)]
    if spec.kind == "blend":
        return [item for _, comp in spec.components or () for item in _emotion_inputs(comp, field)]
    return []


class Manifest(_Frozen):
    """A loaded manifest: its file, the files it included, and its resolved jobs."""

    path: Path
    jobs: tuple[Job, ...]
    includes: tuple[Path, ...] = ()
