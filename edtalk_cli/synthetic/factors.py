"""Ground-truth factors of the synthetic talking-face world.

Four independent groups of factors describe one frame:

* :class:`Identity` - who (face shape, colours, hair style, background); constant in a clip.
* :class:`Pose` - head rotation (degrees) and a small image-plane translation and zoom.
* :class:`Mouth` - speech articulation: jaw opening and lip spreading/rounding.
* :class:`Expression` - brows, mouth corners, eye openness, nose wrinkle and blinks.

Emotions are points in the expression space (:data:`EMOTION_PROTOTYPES`) scaled by an
intensity. Expression may move the mouth *corners* (smile, smirk); the jaw and lip shape
belong to speech, as in real faces.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import numpy as np

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "angry",
    "surprised",
    "fear",
    "disgusted",
    "contempt",
)

HAIR_STYLES: tuple[str, ...] = ("short", "bob", "long", "bun", "buzz")

# Palettes (linear-ish RGB in [0, 1]).
_SKIN = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.92, 0.72, 0.58],
        [0.85, 0.64, 0.50],
        [0.76, 0.55, 0.40],
        [0.62, 0.43, 0.30],
        [0.48, 0.32, 0.22],
        [0.36, 0.24, 0.17],
    ],
    dtype=np.float32,
)
_HAIR = np.array(
    [
        [0.08, 0.06, 0.05],
        [0.22, 0.14, 0.08],
        [0.40, 0.26, 0.14],
        [0.75, 0.60, 0.35],
        [0.55, 0.22, 0.10],
        [0.62, 0.62, 0.62],
        [0.15, 0.15, 0.18],
    ],
    dtype=np.float32,
)
_IRIS = np.array(
    [
        [0.30, 0.18, 0.08],
        [0.20, 0.40, 0.65],
        [0.25, 0.45, 0.25],
        [0.45, 0.35, 0.15],
        [0.35, 0.45, 0.50],
        [0.12, 0.08, 0.05],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Identity:
    """Who is rendered: face geometry, colours, hair style and background.

    Lengths are in head units (the cranium is about 2 units tall). Colours are RGB in [0, 1].
    """

    head_width: float = 0.86  # cranium x radius
    head_height: float = 0.96  # cranium y radius
    jaw_width: float = 0.70  # lower-face x radius (narrower = pointier chin)
    jaw_length: float = 0.70  # lower-face y radius (longer = longer chin)
    eye_spacing: float = 0.33  # eye centre |x|
    eye_size: float = 1.0  # scale of the eye opening
    nose_length: float = 1.0  # scale of the nose along its axis
    nose_width: float = 1.0
    mouth_width: float = 0.25  # half-width of the closed mouth
    lip_thickness: float = 1.0
    brow_thickness: float = 1.0
    skin: tuple[float, float, float] = (0.85, 0.64, 0.50)
    lip: tuple[float, float, float] = (0.72, 0.36, 0.36)
    hair: tuple[float, float, float] = (0.22, 0.14, 0.08)
    iris: tuple[float, float, float] = (0.30, 0.18, 0.08)
    shirt: tuple[float, float, float] = (0.20, 0.30, 0.55)
    hair_style: int = 0  # index into HAIR_STYLES
    fringe: float = 0.0  # 0 = high hairline, 1 = full bangs
    background: tuple[float, float, float] = (0.55, 0.60, 0.65)
    background2: tuple[float, float, float] = (0.35, 0.40, 0.45)
    background_kind: int = 0  # 0 vertical gradient, 1 radial, 2 soft stripes, 3 blobs
    background_seed: int = 0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        """Draw a random identity."""
        skin = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.94, 1.04, 3)
        lip = np.clip(skin * np.array([0.86, 0.52, 0.55]) + rng.uniform(-0.04, 0.06, 3), 0, 1)
        hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.85, 1.15)
        iris = _IRIS[rng.integers(len(_IRIS))]
        shirt = rng.uniform(0.08, 0.85, 3)
        bg_h = rng.uniform(0.2, 0.85, 3)
        bg2 = np.clip(bg_h * rng.uniform(0.5, 0.9) + rng.uniform(-0.08, 0.08, 3), 0, 1)
        return cls(
            head_width=float(rng.uniform(0.80, 0.92)),
            head_height=float(rng.uniform(0.92, 1.02)),
            jaw_width=float(rng.uniform(0.62, 0.78)),
            jaw_length=float(rng.uniform(0.64, 0.76)),
            eye_spacing=float(rng.uniform(0.30, 0.36)),
            eye_size=float(rng.uniform(0.85, 1.15)),
            nose_length=float(rng.uniform(0.85, 1.15)),
            nose_width=float(rng.uniform(0.85, 1.2)),
            mouth_width=float(rng.uniform(0.21, 0.28)),
            lip_thickness=float(rng.uniform(0.75, 1.3)),
            brow_thickness=float(rng.uniform(0.75, 1.35)),
            skin=_tup(np.clip(skin, 0, 1)),
            lip=_tup(lip),
            hair=_tup(np.clip(hair, 0, 1)),
            iris=_tup(iris),
            shirt=_tup(shirt),
            hair_style=int(rng.integers(len(HAIR_STYLES))),
            fringe=float(rng.uniform(0.0, 1.0) if rng.random() < 0.45 else 0.0),
            background=_tup(bg_h),
            background2=_tup(bg2),
            background_kind=int(rng.integers(4)),
            background_seed=int(rng.integers(2**31 - 1)),
        )

    @classmethod
    def from_seed(cls, seed: int) -> Identity:
        """The identity of an integer seed (deterministic)."""
        return cls.sample(np.random.default_rng(np.random.SeedSequence([int(seed), 0x1D])))

    def to_vector(self) -> np.ndarray:
        """All fields flattened to a float32 vector (for the npz)."""
        return np.array(_flatten(astuple(self)), dtype=np.float64)

    @classmethod
    def from_vector(cls, vec: np.ndarray) -> Identity:
        """Inverse of :meth:`to_vector`."""
        values = [float(v) for v in np.asarray(vec).ravel()]
        kwargs: dict[str, object] = {}
        i = 0
        for f in fields(cls):
            default = getattr(cls, f.name)
            if isinstance(default, tuple):
                kwargs[f.name] = tuple(values[i : i + len(default)])
                i += len(default)
            elif isinstance(default, int):
                kwargs[f.name] = round(values[i])
                i += 1
            else:
                kwargs[f.name] = values[i]
                i += 1
        return cls(**kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Pose:
    """Head pose: rotation in degrees and a small image-plane translation / zoom.

    yaw > 0 turns the face towards the image right, pitch > 0 tilts the chin up, roll > 0
    tilts the head counter-clockwise in the image. ``tx``/``ty`` are fractions of the image
    half-size (x right, y down); ``scale`` zooms about the image centre.
    """

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    scale: float = 1.0

    def to_vector(self) -> np.ndarray:
        return np.array(astuple(self), dtype=np.float32)

    @classmethod
    def from_vector(cls, vec: np.ndarray) -> Pose:
        return cls(*(float(v) for v in vec))


@dataclass(frozen=True)
class Mouth:
    """Speech articulation: ``jaw`` in [0, 1] (0 = lips closed) and ``lip`` in [-1, 1]
    (+1 = spread as in /i/, -1 = rounded and protruded as in /u/)."""

    jaw: float = 0.0
    lip: float = 0.0

    def to_vector(self) -> np.ndarray:
        return np.array(astuple(self), dtype=np.float32)

    @classmethod
    def from_vector(cls, vec: np.ndarray) -> Mouth:
        return cls(*(float(v) for v in vec))


@dataclass(frozen=True)
class Expression:
    """Facial expression (all unitless).

    brow_raise in [-1, 1] (whole brows up/down); brow_furrow in [-1, 1] (+ inner ends down
    and together as in anger, - inner ends up as in sadness); smile in [-1, 1] (mouth
    corners up and out / down); smirk in [-1, 1] (one-sided corner raise, + = image right);
    eye_open in [-1, 1] (+ wide, - squint); wrinkle in [0, 1] (nose wrinkle); blink in
    [0, 1] (1 = lids closed).
    """

    brow_raise: float = 0.0
    brow_furrow: float = 0.0
    smile: float = 0.0
    smirk: float = 0.0
    eye_open: float = 0.0
    wrinkle: float = 0.0
    blink: float = 0.0

    def to_vector(self) -> np.ndarray:
        return np.array(astuple(self), dtype=np.float32)

    @classmethod
    def from_vector(cls, vec: np.ndarray) -> Expression:
        return cls(*(float(v) for v in vec))


POSE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Pose))
MOUTH_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Mouth))
EXPRESSION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Expression))

# Emotion prototypes at intensity 1, in EXPRESSION_FIELDS order without blink.
EMOTION_PROTOTYPES: dict[str, tuple[float, ...]] = {
    #             raise furrow smile smirk  eye   wrinkle
    "neutral": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "happy": (0.15, -0.1, 0.95, 0.0, -0.45, 0.0),
    "sad": (-0.2, -0.95, -0.75, 0.0, -0.35, 0.0),
    "angry": (-0.6, 1.0, -0.45, 0.0, 0.35, 0.15),
    "surprised": (1.0, -0.15, 0.0, 0.0, 1.0, 0.0),
    "fear": (0.7, -0.7, -0.35, 0.0, 0.85, 0.0),
    "disgusted": (-0.35, 0.55, -0.6, 0.0, -0.6, 1.0),
    "contempt": (0.1, 0.1, 0.0, 0.85, -0.2, 0.0),
}


def emotion_expression(emotion: str, intensity: float = 1.0, blink: float = 0.0) -> Expression:
    """The expression of an emotion prototype scaled by ``intensity`` (0..1)."""
    if emotion not in EMOTION_PROTOTYPES:
        raise ValueError(f"unknown emotion {emotion!r}; choose one of {', '.join(EMOTIONS)}")
    vals = [v * float(intensity) for v in EMOTION_PROTOTYPES[emotion]]
    return Expression(*vals, blink=float(blink))


def emotion_matrix() -> np.ndarray:
    """(8, 6) prototype matrix, rows in :data:`EMOTIONS` order."""
    return np.array([EMOTION_PROTOTYPES[e] for e in EMOTIONS], dtype=np.float32)


def _tup(a: np.ndarray) -> tuple[float, float, float]:
    return (float(a[0]), float(a[1]), float(a[2]))


def _flatten(values: tuple) -> list[float]:
    out: list[float] = []
    for v in values:
        if isinstance(v, tuple):
            out.extend(float(x) for x in v)
        else:
            out.append(float(v))
    return out
