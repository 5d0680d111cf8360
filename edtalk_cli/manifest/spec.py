"""The manifest input format (version 1) as pydantic models.

These models describe what a user writes. They check types, allowed keys and ranges; the
semantic checks (names, files, segment timing) and the resolution into :class:`~edtalk_cli.
manifest.model.Job` live in :mod:`edtalk_cli.manifest.loader`. Union-typed fields use tags
written ``<form>`` so that a pydantic error location never confuses a form tag with a YAML key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from edtalk_cli.manifest.timecode import TIME_HELP, TimecodeError, check_time_syntax, parse_duration
from edtalk_cli.video.writer import X264_PRESETS

__all__ = [
    "DEFAULT_OUTPUT",
    "EMOTION_FORMS",
    "MODEL_EMOTIONS",
    "EmotionField",
    "EncodeSpec",
    "JobDefaults",
    "JobSpec",
    "ManifestSpec",
    "PoseField",
    "PresetSpec",
    "SegmentSpec",
    "SourceSpec",
    "TopLevelSpec",
]

# Names of the official predefined expression vectors (ckpts/predefined_exp_weights/*.npy).
MODEL_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
DEFAULT_OUTPUT = "out/{manifest}/{name}.mp4"
DEFAULT_TRANSITION = 0.4
INTENSITY_MAX = 2.0
EMOTION_FORMS = ("preset", "image", "video", "coeffs", "blend")
POSE_FORMS = ("video", "track")
X264Preset = Literal[X264_PRESETS]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- times -----------------------------------------------------------------------------------


def _time_value(value: Any) -> Any:
    try:
        check_time_syntax(value)
    except TimecodeError as exc:
        raise PydanticCustomError("time_value", str(exc)) from None
    return value


def _duration_value(value: Any) -> Any:
    try:
        parse_duration(value)
    except TimecodeError as exc:
        raise PydanticCustomError("duration_value", str(exc)) from None
    return value


TimeValue = Annotated[
    Any,
    PlainValidator(_time_value),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}],
            "description": f"A time: {TIME_HELP}",
        }
    ),
]
DurationValue = Annotated[
    Any,
    PlainValidator(_duration_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^[0-9.]+\s*(s|ms)?$"},
            ],
            "description": 'A duration: seconds (0.4), "0.4s" or "400ms"',
        }
    ),
]
Intensity = Annotated[
    float,
    Field(
        ge=0.0, le=INTENSITY_MAX, description="Strength: 0 = neutral, 1 = as defined, up to 2 = exaggerated"
    ),
]
PoseMode = Literal["loop", "pingpong", "hold"]


# --- source / mouth --------------------------------------------------------------------------


class SourceSpec(_Strict):
    """The face to animate: an image, or a video to re-lip-sync (dubbing)."""

    path: str = Field(description="Image (.png/.jpg/...) or video (.mp4/.mov/...) path")
    type: Literal["auto", "image", "video"] = Field(
        "auto", description="auto = decide from the file extension"
    )
    crop: Literal["auto", "none"] = Field(
        "auto", description="auto = detect the face and crop around it; none = use the whole frame"
    )
    paste_back: bool = Field(True, description="Paste the animated face back into the full frame")
    loop: Literal["loop", "pingpong"] = Field(
        "pingpong", description="Video source shorter than the audio: loop, or play forward then backward"
    )


def _source_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "<path>"
    if isinstance(value, dict):
        return "<mapping>"
    return None


SourceField = Annotated[
    Annotated[str, Tag("<path>")] | Annotated[SourceSpec, Tag("<mapping>")],
    Discriminator(
        _source_tag,
        custom_error_type="source_form",
        custom_error_message="source must be a path, or a mapping with 'path'",
    ),
]


class MouthVideo(_Strict):
    """Copy the mouth motion of a reference video instead of driving it from the audio."""

    video: str = Field(description="Video whose mouth motion is copied")
    crop: Literal["auto", "none"] = Field(
        "auto", description="auto = detect and crop the face; none = the frames are already face crops"
    )


def _mouth_tag(value: Any) -> str | None:
    if value == "audio":
        return "<audio>"
    if isinstance(value, dict):
        return "<video>"
    return None


MouthField = Annotated[
    Annotated[Literal["audio"], Tag("<audio>")] | Annotated[MouthVideo, Tag("<video>")],
    Discriminator(
        _mouth_tag,
        custom_error_type="mouth_form",
        custom_error_message="mouth must be 'audio' or a mapping {video: PATH}",
    ),
]


# --- pose ------------------------------------------------------------------------------------


class PoseVideo(_Strict):
    """Head pose copied from a reference video (resampled to the job fps)."""

    video: str = Field(description="Reference video for the head pose")
    crop: Literal["auto", "none"] = Field(
        "auto", description="auto = detect and crop the face; none = the frames are already face crops"
    )
    mode: PoseMode | None = Field(
        None, description="When shorter than needed: loop, pingpong (default) or hold the last frame"
    )


class PoseTrack(_Strict):
    """Head pose from a saved (T, 6) float coefficient track (.npy) at the job fps."""

    track: str = Field(description="Path to a .npy array of shape (T, 6)")
    mode: PoseMode | None = Field(None, description="When shorter than needed: loop, pingpong or hold")


def _form_tag(forms: tuple[str, ...], string_tag: str) -> Any:
    def tag(value: Any) -> str | None:
        if isinstance(value, str):
            return string_tag
        if isinstance(value, dict):
            present = [form for form in forms if form in value]
            if len(present) == 1:
                return f"<{present[0]}>"
        return None

    return tag


PoseField = Annotated[
    Annotated[Literal["static"], Tag("<static>")]
    | Annotated[PoseVideo, Tag("<video>")]
    | Annotated[PoseTrack, Tag("<track>")],
    Discriminator(
        _form_tag(POSE_FORMS, "<static>"),
        custom_error_type="pose_form",
        custom_error_message=(
            "pose must be 'static', {video: PATH, mode: ...} or {track: PATH.npy, mode: ...}"
        ),
    ),
]


# --- emotion ---------------------------------------------------------------------------------


class EmotionPreset(_Strict):
    """A model emotion or a preset, by name."""

    preset: str = Field(description="Model emotion (angry, contempt, ...) or preset name")
    intensity: Intensity | None = None


class EmotionImage(_Strict):
    """The expression of a reference image."""

    image: str = Field(description="Reference image whose expression is used")
    crop: Literal["auto", "none"] = Field(
        "auto", description="auto = detect and crop the face; none = the frames are already face crops"
    )
    intensity: Intensity | None = None


class EmotionVideo(_Strict):
    """The frame-by-frame expression of a reference video (resampled to the job fps)."""

    video: str = Field(description="Reference video whose expression is followed")
    crop: Literal["auto", "none"] = Field(
        "auto", description="auto = detect and crop the face; none = the frames are already face crops"
    )
    mode: PoseMode | None = Field(
        None, description="When shorter than needed: loop, pingpong (default), hold"
    )
    intensity: Intensity | None = None


class EmotionCoeffs(_Strict):
    """Ten raw expression-bank coefficients."""

    coeffs: list[float] = Field(min_length=10, max_length=10, description="Exactly 10 numbers")
    intensity: Intensity | None = None


class EmotionBlend(_Strict):
    """A weighted mix of model emotions / presets; weights are normalised to sum to 1."""

    blend: dict[str, Annotated[float, Field(ge=0.0)]] = Field(
        description="Name -> weight (>= 0, positive sum; normalised to sum to 1)"
    )
    intensity: Intensity | None = None


EmotionField = Annotated[
    Annotated[str, Tag("<name>")]
    | Annotated[EmotionPreset, Tag("<preset>")]
    | Annotated[EmotionImage, Tag("<image>")]
    | Annotated[EmotionVideo, Tag("<video>")]
    | Annotated[EmotionCoeffs, Tag("<coeffs>")]
    | Annotated[EmotionBlend, Tag("<blend>")],
    Discriminator(
        _form_tag(EMOTION_FORMS, "<name>"),
        custom_error_type="emotion_form",
        custom_error_message=(
            "emotion must be a name, or a mapping with exactly one of: preset, image, video, coeffs, blend"
        ),
    ),
]


# --- segments / jobs -------------------------------------------------------------------------


class SegmentSpec(_Strict):
    """A time span that overrides the emotion and/or the pose."""

    start: TimeValue = Field(description="Start time (inclusive)")
    end: TimeValue | None = Field(
        None, description="End time (exclusive); omitted = until the end of the audio"
    )
    emotion: EmotionField | None = None
    pose: PoseField | None = None

    @model_validator(mode="after")
    def _overrides_something(self) -> SegmentSpec:
        if self.emotion is None and self.pose is None:
            raise PydanticCustomError("segment_empty", "the segment overrides nothing")
        return self


class EncodeSpec(_Strict):
    """How the finished mp4's video is encoded (H.264, libx264, yuv420p)."""

    crf: int = Field(
        18, ge=0, le=51, description="x264 constant rate factor: lower is better and larger (0..51)"
    )
    preset: X264Preset = Field(
        "medium",
        description="x264 speed preset; 'veryfast' encodes about twice as fast as 'medium' at a similar size",
    )


class JobDefaults(_Strict):
    """Everything a job may set except its name; also the shape of ``defaults``."""

    preset: str | None = Field(
        None, description="Take emotion, intensity, pose style and transition from a preset"
    )
    source: SourceField | None = Field(
        None, description="Image or video path, or {path, crop, paste_back, loop}"
    )
    audio: str | None = Field(None, description="Speech audio (any format ffmpeg reads)")
    mouth: MouthField = Field("audio", description="'audio' (default) or {video: PATH}")
    pose: PoseField | None = Field(
        None, description="'static' (default), {video: PATH, mode} or {track: PATH}"
    )
    emotion: EmotionField | None = Field(
        None, description="Emotion name, preset, image, video, coeffs or blend"
    )
    segments: list[SegmentSpec] = Field(
        default_factory=list, description="Time spans overriding emotion/pose"
    )
    transition: DurationValue | None = Field(
        None, description="Cross-fade time between segments (default 0.4s)"
    )
    output: str = Field(
        DEFAULT_OUTPUT,
        description="Output path template: {name}, {manifest}, {preset}, {fps}; relative to the manifest",
    )
    fps: float = Field(25.0, gt=0.0, le=120.0, description="Output frames per second (0 < fps <= 120)")
    model: Literal["auto", "edtalk", "lip_pose", "demo"] = Field(
        "auto", description="auto, edtalk (full), lip_pose (no emotion) or demo (built-in)"
    )
    weights: str | None = Field(None, description="Directory holding the weights")
    batch_size: int | None = Field(None, ge=1, le=4096, description="Frames per engine batch")
    encode: EncodeSpec = Field(
        default_factory=EncodeSpec, description="Video encoding: {crf: 18, preset: medium}"
    )


class JobSpec(JobDefaults):
    """One video to render."""

    name: str = Field(description="Unique, filesystem-safe job name ([A-Za-z0-9._-])")
    source: SourceField = Field(description="Image or video path, or {path, crop, paste_back, loop}")
    audio: str = Field(description="Speech audio (any format ffmpeg reads)")


class ManifestSpec(_Strict):
    """An EDTalk batch manifest, version 1."""

    model_config = ConfigDict(extra="forbid", title="EDTalk manifest (version 1)")

    version: Literal[1] = Field(description="Manifest format version (1)")
    include: list[str] = Field(
        default_factory=list, description="Other manifests or preset files, relative to this file"
    )
    defaults: JobDefaults = Field(default_factory=JobDefaults, description="Merged into every job (job wins)")
    jobs: list[JobSpec] = Field(default_factory=list, description="The videos to render")


class TopLevelSpec(_Strict):
    """Top-level keys of a manifest file (jobs and defaults are checked after merging)."""

    version: Literal[1] | None = None
    include: list[str] = Field(default_factory=list)
    defaults: dict[str, Any] = Field(default_factory=dict)
    jobs: list[dict[str, Any]] = Field(default_factory=list)


class PresetSpec(_Strict):
    """A preset file: a named bundle of emotion, intensity, pose style and transition."""

    description: str = Field("", description="One line shown by `edtalk presets list`")
    emotion: EmotionField = Field(description="Emotion name, preset, image, video, coeffs or blend")
    intensity: Intensity | None = Field(None, description="Default intensity for the emotion")
    pose: Literal["static", "loop", "pingpong", "hold"] = Field(
        "static",
        description=(
            "static = the source's own pose; loop/pingpong/hold = mode for a pose clip given by the job"
        ),
    )
    transition: DurationValue | None = Field(None, description="Transition time")
