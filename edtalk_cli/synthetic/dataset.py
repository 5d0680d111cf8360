"""Synthetic clips and the generic talking-face dataset layout.

Layout (the same for synthetic and converted real data; see docs/dataset.md)::

    ROOT/
      index.json                 # DatasetIndex: format, fps, sample_rate, size, clips[]
      train/<clip>/video.mp4     # 25 fps, square face crop, H.264 yuv420p
      train/<clip>/audio.wav     # 16 kHz mono PCM16, exactly frames * 640 samples
      train/<clip>/factors.npz   # optional ground truth (synthetic clips only)
      test/<clip>/...

Every clip directory and the dataset root are written to a temporary sibling first and
renamed into place, so a crash never leaves a half-written clip or index.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edtalk_cli.atomic import atomic_write
from edtalk_cli.errors import EdtalkError, ManifestError
from edtalk_cli.synthetic.factors import (
    EMOTIONS,
    EXPRESSION_FIELDS,
    MOUTH_FIELDS,
    POSE_FIELDS,
    Expression,
    Identity,
    Mouth,
    Pose,
)
from edtalk_cli.synthetic.render import MASK_NAMES, MAX_SIZE, MIN_SIZE, Frame, Renderer
from edtalk_cli.synthetic.speech import FPS, SAMPLE_RATE, Speech, synthesize
from edtalk_cli.synthetic.timeline import expression_track, head_motion

VIDEO_NAME = "video.mp4"
AUDIO_NAME = "audio.wav"
FACTORS_NAME = "factors.npz"
INDEX_NAME = "index.json"
INDEX_FORMAT = "edtalk-dataset"
INDEX_VERSION = 1
SPLITS = ("train", "test")
EMOTION_MODES = ("random", "segments")  # besides a fixed emotion name
DEFAULT_CRF = 12


# ----------------------------------------------------------------------------- clips


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines a synthetic clip.

    ``emotion`` is an emotion name (whole clip), ``"random"`` (one random emotion for the
    whole clip, as in MEAD) or ``"segments"`` (several emotions with smooth transitions).
    """

    seed: int
    identity_seed: int
    n_frames: int = 100
    size: int = 128
    emotion: str = "random"
    intensity: float | None = None
    motion: float = 1.0


@dataclass
class Clip:
    """Per-frame ground truth of a clip (T frames)."""

    spec: ClipSpec
    identity: Identity
    pose: np.ndarray  # (T, 6) POSE_FIELDS
    mouth: np.ndarray  # (T, 2) MOUTH_FIELDS
    expression: np.ndarray  # (T, 7) EXPRESSION_FIELDS
    emotion: np.ndarray  # (T,) int8 index into EMOTIONS
    intensity: np.ndarray  # (T,) float32
    speech: Speech

    @property
    def n_frames(self) -> int:
        return len(self.pose)

    def factors(self, i: int) -> tuple[Pose, Mouth, Expression]:
        """The factor dataclasses of frame i."""
        return (
            Pose.from_vector(self.pose[i]),
            Mouth.from_vector(self.mouth[i]),
            Expression.from_vector(self.expression[i]),
        )

    def frames(self, renderer: Renderer | None = None) -> Iterator[Frame]:
        """Render the frames one by one."""
        r = renderer or Renderer(self.spec.size)
        for i in range(self.n_frames):
            yield r.render(self.identity, *self.factors(i))


def check_size(size: int) -> int:
    """Validate a frame size for the renderer and H.264 (even, 64..256)."""
    if not (MIN_SIZE <= int(size) <= MAX_SIZE) or int(size) % 2:
        raise EdtalkError(
            f"--size {size} is not supported",
            hint=f"use an even number of pixels between {MIN_SIZE} and {MAX_SIZE}, e.g. 128",
        )
    return int(size)


def check_emotion(emotion: str) -> str:
    if emotion not in EMOTIONS and emotion not in EMOTION_MODES:
        raise EdtalkError(
            f"--emotion {emotion!r} is not known",
            hint=f"use one of {', '.join(EMOTIONS + EMOTION_MODES)}",
        )
    return emotion


def make_clip(spec: ClipSpec) -> Clip:
    """Sample the factor trajectories and the speech of a clip (deterministic in spec)."""
    check_size(spec.size)
    check_emotion(spec.emotion)
    if spec.n_frames < 1:
        raise EdtalkError(f"a clip needs at least 1 frame, got {spec.n_frames}", hint="use --seconds >= 0.04")
    rng = np.random.default_rng(np.random.SeedSequence([int(spec.seed), 0xC11]))
    identity = Identity.from_seed(spec.identity_seed)
    speech = synthesize(int(rng.integers(2**31 - 1)), spec.n_frames)
    pose = head_motion(rng, spec.n_frames, FPS, spec.motion)
    if spec.emotion == "segments":
        emo = None
    elif spec.emotion == "random":
        emo = EMOTIONS[int(rng.integers(len(EMOTIONS)))]
    else:
        emo = spec.emotion
    expr, label, level = expression_track(rng, spec.n_frames, FPS, emo, spec.intensity)
    mouth = np.stack([speech.jaw, speech.lip], axis=1).astype(np.float32)
    return Clip(spec, identity, pose, mouth, expr, label, level, speech)


def _mask_box(m: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return (-1, -1, -1, -1)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _write_video(path: Path, frames: Iterator[np.ndarray], size: int, crf: int) -> None:
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(
        str(path),
        (size, size),
        fps=FPS,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        quality=None,
        macro_block_size=2,
        output_params=["-crf", str(int(crf)), "-preset", "medium"],
        ffmpeg_log_level="error",
    )
    writer.send(None)
    try:
        for f in frames:
            writer.send(np.ascontiguousarray(f))
    finally:
        writer.close()


def _write_wav(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")


def chmod_default(path: Path | str, mode: int = 0o666) -> None:
    """Give a mkstemp/mkdtemp path the permissions a normal create would (mode & ~umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _mkdtemp(prefix: str, parent: Path) -> Path:
    """A temporary directory next to its destination, with the usual (umask) permissions."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    chmod_default(path, 0o777)
    return path


def _replace_dir(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Move a finished temporary directory into place (optionally replacing dest)."""
    if dest.exists():
        if not overwrite:
            raise EdtalkError(f"'{dest}' already exists", hint="choose another directory or pass --overwrite")
        trash = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, trash / dest.name)
        os.replace(tmp, dest)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def write_clip_files(clip: Clip, directory: Path, crf: int = DEFAULT_CRF) -> dict:
    """Render and write video.mp4, audio.wav and factors.npz into an existing directory."""
    T = clip.n_frames
    lms = np.zeros((T, 68, 2), dtype=np.float32)
    boxes = np.zeros((T, len(MASK_NAMES), 4), dtype=np.int16)
    renderer = Renderer(clip.spec.size)

    def frames() -> Iterator[np.ndarray]:
        for i, fr in enumerate(clip.frames(renderer)):
            lms[i] = fr.landmarks
            boxes[i] = [_mask_box(fr.masks[k]) for k in MASK_NAMES]
            yield fr.image

    _write_video(directory / VIDEO_NAME, frames(), clip.spec.size, crf)
    _write_wav(directory / AUDIO_NAME, clip.speech.audio)
    np.savez_compressed(
        directory / FACTORS_NAME,
        identity=clip.identity.to_vector(),
        identity_seed=np.int64(clip.spec.identity_seed),
        seed=np.int64(clip.spec.seed),
        pose=clip.pose,
        mouth=clip.mouth,
        expression=clip.expression,
        emotion=clip.emotion,
        intensity=clip.intensity,
        silent=clip.speech.silent,
        landmarks=lms,
        mask_boxes=boxes,
        fps=np.int64(FPS),
        sample_rate=np.int64(SAMPLE_RATE),
        size=np.int64(clip.spec.size),
        pose_fields=np.array(POSE_FIELDS),
        mouth_fields=np.array(MOUTH_FIELDS),
        expression_fields=np.array(EXPRESSION_FIELDS),
        emotion_names=np.array(EMOTIONS),
        mask_names=np.array(MASK_NAMES),
    )
    counts = np.bincount(clip.emotion.astype(np.int64), minlength=len(EMOTIONS))
    return {
        "frames": T,
        "identity": f"synth-{clip.spec.identity_seed}",
        "emotion": EMOTIONS[int(np.argmax(counts))] if counts.max() == T else "mixed",
        "has_factors": True,
    }


def write_clip(spec: ClipSpec, out_dir: Path, overwrite: bool = False, crf: int = DEFAULT_CRF) -> dict:
    """Make a clip and write it to ``out_dir`` atomically. Returns its index entry fields."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise EdtalkError(f"'{out_dir}' already exists", hint="choose another directory or pass --overwrite")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clip = make_clip(spec)
    tmp = _mkdtemp(f".{out_dir.name}.tmp-", out_dir.parent)
    try:
        info = write_clip_files(clip, tmp)
        _replace_dir(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


# ----------------------------------------------------------------------------- index


@dataclass
class ClipEntry:
    """One clip of a dataset index; ``path`` is relative to the dataset root."""

    split: str
    name: str
    path: str
    frames: int
    identity: str
    emotion: str = "unknown"
    has_factors: bool = False


@dataclass
class DatasetIndex:
    """The ``index.json`` of a dataset root."""

    fps: int = FPS
    sample_rate: int = SAMPLE_RATE
    size: int = 256
    source: str = ""
    clips: list[ClipEntry] = field(default_factory=list)

    def split(self, name: str) -> list[ClipEntry]:
        return [c for c in self.clips if c.split == name]

    def to_json(self) -> str:
        data = {"format": INDEX_FORMAT, "version": INDEX_VERSION, **asdict(self)}
        return json.dumps(data, indent=1)

    def write(self, root: Path) -> None:
        with atomic_write(Path(root) / INDEX_NAME) as fh:
            fh.write(self.to_json())


def read_index(root: Path | str) -> DatasetIndex:
    """Read and validate ``ROOT/index.json``; clip paths are checked to exist."""
    root = Path(root)
    path = root / INDEX_NAME
    if not path.is_file():
        raise ManifestError(
            f"'{path}' not found",
            hint="a dataset root needs an index.json (see docs/dataset.md); "
            "create one with `edtalk synth dataset` or a converter",
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"'{path}' is not valid JSON: {exc}", hint="regenerate the index") from exc
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise ManifestError(f"'{path}': field 'format' must be {INDEX_FORMAT!r}", hint="see docs/dataset.md")
    if data.get("version") != INDEX_VERSION:
        raise ManifestError(f"'{path}': field 'version' must be {INDEX_VERSION}, got {data.get('version')!r}")
    clips = []
    for k, c in enumerate(data.get("clips", [])):
        try:
            entry = ClipEntry(**c)
        except TypeError as exc:
            raise ManifestError(
                f"'{path}': clips[{k}] is malformed ({exc})", hint="see docs/dataset.md"
            ) from exc
        if entry.split not in SPLITS:
            raise ManifestError(f"'{path}': clips[{k}].split must be 'train' or 'test', got {entry.split!r}")
        clip_dir = root / entry.path
        for fname in (VIDEO_NAME, AUDIO_NAME):
            if not (clip_dir / fname).is_file():
                raise ManifestError(
                    f"'{path}': clips[{k}] ({entry.name}) has no '{clip_dir / fname}'",
                    hint="regenerate the dataset or remove the entry",
                )
        clips.append(entry)
    return DatasetIndex(
        fps=int(data.get("fps", FPS)),
        sample_rate=int(data.get("sample_rate", SAMPLE_RATE)),
        size=int(data.get("size", 256)),
        source=str(data.get("source", "")),
        clips=clips,
    )


def load_factors(path: Path | str) -> dict[str, np.ndarray]:
    """Load a clip's ``factors.npz`` into a dict of arrays."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------- datasets


def split_seeds(
    seed: int, n_train: int, n_test: int, clips_per_identity: int = 1
) -> dict[str, list[ClipSpec]]:
    """Clip specs of both splits; train and test identity seeds are disjoint."""
    k = max(1, int(clips_per_identity))
    n_id = {"train": -(-n_train // k), "test": -(-n_test // k)}
    used: set[int] = set()
    ids: dict[str, list[int]] = {}
    for code, split in enumerate(SPLITS):
        ss = np.random.SeedSequence([int(seed), 0x1D5, code])
        cand = [int(v) for v in ss.generate_state(n_id[split] * 2 + 8, dtype=np.uint32)]
        chosen: list[int] = []
        for v in cand:
            if v not in used and len(chosen) < n_id[split]:
                chosen.append(v)
                used.add(v)
        ids[split] = chosen
    specs: dict[str, list[ClipSpec]] = {}
    for code, split in enumerate(SPLITS):
        n = n_train if split == "train" else n_test
        clip_seeds = np.random.SeedSequence([int(seed), 0xC5, code]).generate_state(
            max(n, 1), dtype=np.uint32
        )
        specs[split] = [ClipSpec(seed=int(clip_seeds[j]), identity_seed=ids[split][j // k]) for j in range(n)]
    return specs


def _write_one(args: tuple[ClipSpec, str]) -> dict:
    spec, dest = args
    return write_clip(spec, Path(dest))


def write_dataset(
    root: Path | str,
    n_train: int,
    n_test: int = 0,
    *,
    size: int = 128,
    seconds: float = 4.0,
    seed: int = 0,
    emotion: str = "random",
    clips_per_identity: int = 1,
    workers: int = 1,
    overwrite: bool = False,
    on_clip: Callable[[int, int], None] | None = None,
) -> DatasetIndex:
    """Write a synthetic dataset (train/test splits with disjoint identities) atomically."""
    root = Path(root)
    check_size(size)
    check_emotion(emotion)
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise EdtalkError(
            "a dataset needs at least one clip", hint="pass --clips N (and optionally --test-clips M)"
        )
    n_frames = round(float(seconds) * FPS)
    if n_frames < 1:
        raise EdtalkError(f"--seconds {seconds} gives no frame", hint="use --seconds >= 0.04")
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise EdtalkError(
            f"'{root}' already exists and is not empty", hint="choose another directory or pass --overwrite"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    specs = split_seeds(seed, n_train, n_test, clips_per_identity)
    tmp_root = _mkdtemp(f".{root.name}.partial-", root.parent)
    jobs: list[tuple[ClipSpec, str]] = []
    entries: list[ClipEntry] = []
    for split in SPLITS:
        (tmp_root / split).mkdir()
        for j, base in enumerate(specs[split][: n_train if split == "train" else n_test]):
            spec = ClipSpec(
                seed=base.seed,
                identity_seed=base.identity_seed,
                n_frames=n_frames,
                size=size,
                emotion=emotion,
            )
            name = f"{split}{j:05d}"
            jobs.append((spec, str(tmp_root / split / name)))
            entries.append(ClipEntry(split, name, f"{split}/{name}", n_frames, ""))
    try:
        done = 0
        infos: list[dict] = []
        if workers <= 1:
            for job in jobs:
                infos.append(_write_one(job))
                done += 1
                if on_clip:
                    on_clip(done, len(jobs))
        else:
            with ProcessPoolExecutor(max_workers=int(workers)) as pool:
                for info in pool.map(_write_one, jobs):
                    infos.append(info)
                    done += 1
                    if on_clip:
                        on_clip(done, len(jobs))
        for e, info in zip(entries, infos, strict=True):
            e.identity = info["identity"]
            e.emotion = info["emotion"]
            e.has_factors = True
        index = DatasetIndex(size=size, source=f"synthetic seed={seed}", clips=entries)
        index.write(tmp_root)
        if root.exists() and not any(root.iterdir()):
            root.rmdir()
        _replace_dir(tmp_root, root, overwrite)
    except BaseException:
        shutil.rmtree(tmp_root, ignore_errors=True)
        raise
    return index
