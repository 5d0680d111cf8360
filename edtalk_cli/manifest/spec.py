"""The manifest input format (version 1) as pydantic models.

These models describe what a user writes. They check types, allowed keys and ranges; the
semantic checks (names, files, segment timing) and the resolution into :class:`~edtalk_cli.
manifest.model.Job` live in :mod:`edtalk_cli.manifest.loader`. Union-typed fields use tags
written ``<form>`` so that a pydantic error location never confuses a form tag with a YAML key.
"""

from __future__ import annotations

import re
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

from edtalk_cli.defaults import FPS, VIDEO_CODEC, X264_CRF, X264_PRESET
from edtalk_cli.manifest.timecode import TIME_HELP, TimecodeError, check_time_syntax, parse_duration
from edtalk_cli.video.encoders import CODECS, NVENC_PRESETS, X264_PRESETS
from edtalk_cli.video.masks import DEFAULT_FEATHER, Region

__all__ = [
    "DEFAULT_OUTPUT",
    "EMOTION_FORMS",
    "MODEL_EMOTIONS",
    "EmotionField",
    "EncodeSpec",
    "EnhanceSpec",
    "JobDefaults",
    "JobEntry",
    "JobSpec",
    "ManifestSpec",
    "PasteBackSpec",
    "PoseField",
    "PresetSpec",
    "SegmentSpec",
    "SourceSpec",
    "SubtitleSegments",
    "TopLevelSpec",
]

# Names of the official predefined expression vectors (ckpts/predefined_exp_weights/*.npy).
MODEL_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
DEFAULT_OUTPUT = "out/{manifest}/{name}.mp4"
DEFAULT_TRANSITION = 0.4
INTENSITY_MAX = 2.0
# Raw expression coefficients: the official emotion vectors lie within +-5.3; beyond this the
# decoder leaves its training range and renders garbage (all black at 1e300).
COEFF_MAX = 20.0
JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
EMOTION_FORMS = ("preset", "image", "video", "coeffs", "blend")
POSE_FORMS = ("video", "track")
X264Preset = Literal[X264_PRESETS]  # type: ignore[valid-type]
VideoCodec = Literal[CODECS]  # type: ignore[valid-type]


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


FEATHER_MAX_FRACTION = 0.5
_FEATHER_PX = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*px\s*$")
FEATHER_HELP = (
    "a fraction of the face crop's side from 0 to 0.5 (e.g. 0.05), or output-frame pixels as a string "
    "(e.g. '12px')"
)


def parse_feather(value: Any) -> tuple[float | None, float | None]:
    """A paste-back feather -> (fraction of the crop side, output-frame pixels); one is None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0 <= value <= FEATHER_MAX_FRACTION:
            raise ValueError(f"feather must be {FEATHER_HELP}")
        return float(value), None
    if isinstance(value, str):
        match = _FEATHER_PX.match(value)
        if match:
            return None, float(match.group(1))
    raise ValueError(f"feather must be {FEATHER_HELP}")


def _feather_value(value: Any) -> Any:
    try:
        parse_feather(value)
    except ValueError as exc:
        raise PydanticCustomError("feather_value", str(exc)) from None
    return value


FeatherValue = Annotated[
    Any,
    PlainValidator(_feather_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": FEATHER_MAX_FRACTION},
                {"type": "string", "pattern": _FEATHER_PX.pattern},
            ],
            "description": f"Width of the soft edge: {FEATHER_HELP}",
        }
    ),
]


class PasteBackSpec(_Strict):
    """How the animated face is blended into the source frame."""

    region: Region = Field(
        "face",
        description="face = the whole face (feathered ellipse); lower = jaw and mouth below the nose; "
        "mouth = lips and chin (dubbing: the rest of the source face is kept)",
    )
    feather: FeatherValue | None = Field(
        None,
        description="Soft edge width (default: "
        + ", ".join(f"{value:g} for {region}" for region, value in DEFAULT_FEATHER.items())
        + ")",
    )
    color_match: bool = Field(
        False, description="Match the animated region's colour (mean, spread in CIELAB) to the source's"
    )


def _paste_back_tag(value: Any) -> str | None:
    if isinstance(value, bool):
        return "<bool>"
    if isinstance(value, dict):
        return "<mapping>"
    return None


PasteBackField = Annotated[
    Annotated[bool, Tag("<bool>")] | Annotated[PasteBackSpec, Tag("<mapping>")],
    Discriminator(
        _paste_back_tag,
        custom_error_type="paste_back_form",
        custom_error_message="paste_back must be true, false or a mapping {region: face|lower|mouth, "
        "feather, color_match}",
    ),
]


class SourceSpec(_Strict):
    """The face to animate: an image, or a video to re-lip-sync (dubbing)."""

    # the landmark regions need per-frame landmarks, which crop: box does not track
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "not": {
                "required": ["crop", "paste_back"],
                "properties": {
                    "crop": {"const": "box"},
                    "paste_back": {
                        "type": "object",
                        "required": ["region"],
                        "properties": {"region": {"enum": ["lower", "mouth"]}},
                    },
                },
            }
        },
    )
    path: str = Field(description="Image (.png/.jpg/...) or video (.mp4/.mov/...) path")
    type: Literal["auto", "image", "video"] = Field(
        "auto", description="auto = decide from the file extension"
    )
    crop: Literal["auto", "box", "none"] = Field(
        "auto",
        description="auto = align the face to the official EDTalk template (68 landmarks); "
        "box = a square box around the detected face; none = use the whole frame",
    )
    paste_back: PasteBackField = Field(
        True,
        description="Paste the animated face back into the full frame: true, false or "
        "{region: face|lower|mouth, feather, color_match}",
    )
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
    crop: Literal["auto", "box", "none"] = Field(
        "auto",
        description="auto = align the face to the official EDTalk template (68 landmarks); "
        "box = a square box around the detected face; none = the frames are already face crops",
    )
    mode: PoseMode | None = Field(
        None, description="When shorter than the audio: loop, pingpong (default) or hold, as for a pose clip"
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
    crop: Literal["auto", "box", "none"] = Field(
        "auto",
        description="auto = align the face to the official EDTalk template (68 landmarks); "
        "box = a square box around the detected face; none = the frames are already face crops",
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
    crop: Literal["auto", "box", "none"] = Field(
        "auto",
        description="auto = align the face to the official EDTalk template (68 landmarks); "
        "box = a square box around the detected face; none = the frames are already face crops",
    )
    intensity: Intensity | None = None


class EmotionVideo(_Strict):
    """The frame-by-frame expression of a reference video (resampled to the job fps)."""

    video: str = Field(description="Reference video whose expression is followed")
    crop: Literal["auto", "box", "none"] = Field(
        "auto",
        description="auto = align the face to the official EDTalk template (68 landmarks); "
        "box = a square box around the detected face; none = the frames are already face crops",
    )
    mode: PoseMode | None = Field(
        None, description="When shorter than needed: loop, pingpong (default), hold"
    )
    intensity: Intensity | None = None


class EmotionCoeffs(_Strict):
    """Ten raw expression-bank coefficients."""

    coeffs: list[Annotated[float, Field(ge=-COEFF_MAX, le=COEFF_MAX)]] = Field(
        min_length=10, max_length=10, description=f"Exactly 10 numbers, each within +-{COEFF_MAX:g}"
    )
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

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"anyOf": [{"required": ["emotion"]}, {"required": ["pose"]}]}
    )
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


class SubtitleSegments(_Strict):
    """Segments from the cues of a subtitle file: tags at a cue's start set its emotion/pose."""

    subtitles: str = Field(
        description="An .srt or .vtt file; a cue starting with [happy 0.6], [preset: NAME] or "
        "[pose: CLIP] sets that span (see docs/manifest.md)"
    )


def _segments_tag(value: Any) -> str | None:
    if isinstance(value, list):
        return "<list>"
    if isinstance(value, dict):
        return "<subtitles>"
    return None


def segments_field(segment: type[SegmentSpec]) -> Any:
    """The ``segments`` type: a list of ``segment`` or ``{subtitles: FILE}``."""
    return Annotated[
        Annotated[list[segment], Tag("<list>")] | Annotated[SubtitleSegments, Tag("<subtitles>")],  # type: ignore[valid-type]
        Discriminator(
            _segments_tag,
            custom_error_type="segments_form",
            custom_error_message="segments must be a list of {start, end, emotion, pose} or {subtitles: FILE}",
        ),
    ]


SegmentsField = segments_field(SegmentSpec)


class EncodeSpec(_Strict):
    """How the finished mp4's video is encoded (H.264 or HEVC, yuv420p)."""

    codec: VideoCodec = Field(
        VIDEO_CODEC,
        description="auto (h264_nvenc when rendering on a CUDA device and ffmpeg can use it, else h264), "
        "h264 (libx264), h264_nvenc or hevc_nvenc (NVIDIA GPU encoders; libx264 with a warning "
        "where ffmpeg cannot use them)",
    )

    crf: int = Field(
        X264_CRF,
        ge=0,
        le=51,
        description="x264 constant rate factor, NVENC's -cq: lower is better and larger (0..51)",
    )
    preset: X264Preset = Field(
        X264_PRESET,
        description="x264 speed preset; 'veryfast' encodes about twice as fast as 'medium' at a similar size. "
        "NVENC: " + ", ".join(f"{k} {v}" for k, v in NVENC_PRESETS.items()),
    )


class EnhanceSpec(_Strict):
    """Face enhancement: the generated face is upscaled 2x and restored by GFPGAN before paste-back."""

    model: Literal["gfpgan"] = Field("gfpgan", description="Restoration model (gfpgan)")
    weights: str | None = Field(
        None,
        description="GFPGAN weights (.pth or .safetensors), relative to the manifest; "
        "default: GFPGANv1.4.safetensors or GFPGANv1.4.pth in the weights directory",
    )
    strength: float = Field(
        1.0, ge=0.0, le=1.0, description="1 = fully restored, 0 = the 2x bicubic upscale only (0..1)"
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
    segments: SegmentsField = Field(  # type: ignore[valid-type]
        default_factory=list, description="Time spans overriding emotion/pose, or {subtitles: FILE}"
    )
    transition: DurationValue | None = Field(
        None, description="Cross-fade time between segments (default 0.4s)"
    )
    output: str = Field(
        DEFAULT_OUTPUT,
        description="Output path template: {name}, {manifest}, {preset}, {fps}; relative to the manifest",
    )
    fps: float = Field(FPS, gt=0.0, le=120.0, description="Output frames per second (0 < fps <= 120)")
    model: Literal["auto", "edtalk", "lip_pose", "demo"] = Field(
        "auto", description="auto, edtalk (full), lip_pose (no emotion) or demo (built-in)"
    )
    weights: str | None = Field(None, description="Directory holding the weights")
    batch_size: int | None = Field(None, ge=1, le=4096, description="Frames per engine batch")
    encode: EncodeSpec = Field(
        default_factory=EncodeSpec,
        description=f"Video encoding: {{codec: {VIDEO_CODEC}, crf: {X264_CRF}, preset: {X264_PRESET}}}",
    )
    enhance: EnhanceSpec | None = Field(
        None, description="Face enhancement before paste-back: {model: gfpgan, weights: PATH, strength: 0..1}"
    )


_NAME_DESCRIPTION = "Unique, filesystem-safe job name ([A-Za-z0-9._-])"


class JobEntry(JobDefaults):
    """A job as written in ``jobs:``; ``defaults`` (or an included file's) may supply source and audio."""

    name: str = Field(description=_NAME_DESCRIPTION, json_schema_extra={"pattern": JOB_NAME_PATTERN})


class JobSpec(JobDefaults):
    """One video to render (a job merged with its defaults and preset)."""

    name: str = Field(description=_NAME_DESCRIPTION)
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
    jobs: list[JobEntry] = Field(
        default_factory=list, description="The videos to render; source and audio may come from defaults"
    )


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
