"""Training data: the synthetic world rendered on the fly, or a dataset in the generic layout.

Both sources give batches of float images (B, 3, S, S) in [-1, 1] for the four stages:

* ``pairs`` - source and driver frames of the same identity (stages 0 and 2);
* ``swaps`` - two people A, B and the mouth-swapped composites (stage 1);
* ``audio_pool`` - clips of frames with their per-frame mel windows (stage 3).

Randomness comes only from the ``numpy`` generator passed in, so a resumed run that seeds
it with ``(seed, step)`` draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from edtalk_cli.audio import mel_windows, melspectrogram
from edtalk_cli.defaults import SAMPLE_RATE
from edtalk_cli.errors import EdtalkError
from edtalk_cli.synthetic import (
    EMOTIONS,
    ClipSpec,
    Expression,
    Frame,
    Identity,
    Mouth,
    Pose,
    Renderer,
    emotion_expression,
    load_factors,
    make_clip,
    read_index,
)
from edtalk_cli.synthetic.correspondence import backward_flow
from edtalk_cli.synthetic.timeline import head_motion

TRAIN_SEED_BASE = 1_000_000  # synthetic training identities: seeds BASE + i
TEST_SEED_BASE = 9_000_000  # held-out identities (never used in training)


def to_tensor(images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [-1, 1]."""
    arr = np.asarray(images, dtype=np.float32)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3)."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class AudioPool:
    """Stage-3 data: ``frames`` list of (T, H, W, 3) uint8, ``mels`` list of (T, 80, 16) float32."""

    frames: list[np.ndarray]
    mels: list[np.ndarray]
    jaw: list[np.ndarray] | None = None  # synthetic ground-truth jaw (T,) per clip, for evaluation


# Scales that bring each synthetic factor to about [-1, 1] (pose: the training range of
# :func:`sample_pose`), in the order of :func:`factor_vector`: pose 6 | jaw, lip | expression 7.
FACTOR_SCALE = np.array([25, 12, 8, 0.05, 0.05, 0.05, 1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=np.float32)
FACTOR_OFFSET = np.array([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.float32)


# The three-way cross drivers of ``SyntheticWorld.pairs(crosses=...)``: each shows one group of
# the target's factors (drawn in this order; the groups sit at 1, 0, 2 of a (pose, mouth,
# expression) factor triple).
CROSS_DRIVERS: tuple[str, ...] = ("mouth_driver", "pose_driver", "expression_driver")
_CROSS_GROUP_IN_TRIPLE = (1, 0, 2)


def factor_vector(pose: Pose, mouth: Mouth, expression: Expression) -> np.ndarray:
    """(15,) float32: a frame's exact factors scaled to about [-1, 1] (the ``anchor`` loss targets)."""
    raw = np.concatenate([pose.to_vector(), mouth.to_vector(), expression.to_vector()])
    return ((raw - FACTOR_OFFSET) / FACTOR_SCALE).astype(np.float32)


@lru_cache(maxsize=1)
def expression_factor_std() -> np.ndarray:
    """(7,) float32: the spread of each scaled expression factor of ``factor_vector`` under
    :func:`sample_expression` with all emotions (4096 fixed draws; smirk and blink are rare)."""
    rng = np.random.default_rng(0)
    draws = np.stack([factor_vector(Pose(), Mouth(), sample_expression(rng, "all"))[8:] for _ in range(4096)])
    return draws.std(axis=0)


def sample_pose(rng: np.random.Generator) -> Pose:
    """A random head pose inside the range of the synthetic clips."""
    return Pose(
        yaw=float(rng.uniform(-25, 25)),
        pitch=float(rng.uniform(-12, 12)),
        roll=float(rng.uniform(-8, 8)),
        tx=float(rng.uniform(-0.05, 0.05)),
        ty=float(rng.uniform(-0.05, 0.05)),
        scale=float(rng.uniform(0.95, 1.05)),
    )


def sample_mouth(rng: np.random.Generator) -> Mouth:
    """A random articulation; a quarter of the draws are closed lips, as in speech pauses."""
    jaw = 0.0 if rng.random() < 0.25 else float(rng.uniform(0, 1) ** 0.8)
    return Mouth(jaw=jaw, lip=float(rng.uniform(-1, 1)))


def sample_expression(rng: np.random.Generator, emotions: str) -> Expression:
    """Neutral (with occasional blinks) or a random emotion at a random intensity."""
    blink = float(rng.uniform(0.5, 1.0)) if rng.random() < 0.1 else 0.0
    if emotions == "neutral":
        return Expression(blink=blink)
    name = EMOTIONS[int(rng.integers(len(EMOTIONS)))]
    return emotion_expression(name, float(rng.uniform(0.4, 1.0)), blink=blink)


class SyntheticWorld:
    """Renders training batches of the synthetic world on the fly (exact factors)."""

    def __init__(
        self, size: int, identities: int = 400, emotions: str = "neutral", held_out: bool = False
    ) -> None:
        self.size = size
        self.renderer = Renderer(size)
        self.emotions = emotions
        base = TEST_SEED_BASE if held_out else TRAIN_SEED_BASE
        self.identity_seeds = [base + i for i in range(identities)]
        self._identities: dict[int, Identity] = {}

    def identity(self, index: int) -> Identity:
        seed = self.identity_seeds[index % len(self.identity_seeds)]
        if seed not in self._identities:
            self._identities[seed] = Identity.from_seed(seed)
        return self._identities[seed]

    def render(self, ident: Identity, pose: Pose, mouth: Mouth, expr: Expression) -> np.ndarray:
        return self.renderer.render(ident, pose, mouth, expr).image

    def render_with_flow(
        self, ident: Identity, source: tuple, driver: tuple
    ) -> tuple[Frame, Frame, np.ndarray, np.ndarray]:
        """Source and driver frames of factor triples (pose, mouth, expression), and the exact
        backward flow from driver to source: (source, driver, grid (S, S, 2), valid (S, S))."""
        src = self.renderer.render(ident, *source, surface=True)
        drv = self.renderer.render(ident, *driver, surface=True)
        twin = self.render(ident, driver[0], source[1], source[2])  # the source's painted face
        features = (ident, driver[0], (driver[1], driver[2]), (source[1], source[2]))
        grid, valid = backward_flow(self.renderer, src, source[0], drv, twin, features)
        return src, drv, grid, valid

    def pairs(
        self,
        rng: np.random.Generator,
        batch: int,
        near: float = 0.0,
        neutral_source: bool = False,
        expression_twins: bool = False,
        flows: bool = False,
        forced: float = 0.0,
        crosses: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Same identity, independent pose/mouth/expression: ``source``, ``driver``.

        ``neutral_source`` draws sources like the official MEAD stage 0 does (a frame of the
        actor's *neutral* video): neutral expression, and the head pose of a talking-head clip
        frame instead of the uniform training range.

        ``near`` is the fraction of pairs whose driver factors lie a fraction t = u**2 (u uniform
        in [0, 1], so small motions are dense) of the way from the source's factors to the random
        ones, so the decoder also sees tiny motions and learns to pass sharp source detail through.

        ``expression_twins`` adds ``driver_neutral``: each driver re-rendered with the same
        identity, pose, mouth and blink but no emotion, so ``driver - driver_neutral`` is exactly
        the expression's own pixels (the ``expr_diff`` loss of stage 2).

        ``flows`` adds ``flow`` (B, S, S, 2), the exact driver-to-source sampling grid, and
        ``flow_valid`` (B, S, S) in {0, 1} (see :mod:`edtalk_cli.synthetic.correspondence`).
        ``driver_factors`` (B, 15) holds each driver's :func:`factor_vector` (``source_factors`` the
        source's); ``forced`` > 0 adds
        ``forced`` (B,) in {0, 1}: the drivers to render from their exact factors (drawn last, so
        the images do not depend on it).

        ``crosses`` > 0 adds the three-way cross drivers ``mouth_driver``, ``pose_driver`` and
        ``expression_driver`` (B, 3, S, S): for that share of the pairs, three frames of *other*
        identities, each showing one of the driver's factor groups (its mouth, its pose, its
        expression) with the other two groups drawn at random; ``driver`` stays the exact target,
        the source's identity wearing all three. For the other pairs all three are the driver
        itself, so reading each group from its own driver gives back plain self-reconstruction.
        This is the evaluation's three-way cross-reenactment, supervised exactly.
        """
        crossed: dict[str, list[np.ndarray]] = {name: [] for name in CROSS_DRIVERS}
        drawn: list[tuple[Identity, tuple, np.ndarray]] = []
        src, drv, twins, mouth_boxes, eye_boxes, grids, valids = [], [], [], [], [], [], []
        src_factors, drv_factors = [], []
        for _ in range(batch):
            ident = self.identity(int(rng.integers(len(self.identity_seeds))))
            if neutral_source:
                factors = (
                    Pose.from_vector(head_motion(rng, 1)[0]),
                    sample_mouth(rng),
                    sample_expression(rng, "neutral"),
                )
            else:
                factors = (sample_pose(rng), sample_mouth(rng), sample_expression(rng, self.emotions))
            target = (sample_pose(rng), sample_mouth(rng), sample_expression(rng, self.emotions))
            if near > 0 and rng.random() < near:
                t = float(rng.random()) ** 2  # denser near t = 0 (tiny motions)
                target = tuple(
                    type(a).from_vector(a.to_vector() + t * (b.to_vector() - a.to_vector()))
                    for a, b in zip(factors, target)
                )
            if flows:
                source_frame, frame, grid, valid = self.render_with_flow(ident, factors, target)
                src.append(source_frame.image)
                grids.append(grid)
                valids.append(valid)
            else:
                src.append(self.render(ident, *factors))
                frame = self.renderer.render(ident, *target)
            drv.append(frame.image)
            src_factors.append(factor_vector(*factors))
            drv_factors.append(factor_vector(*target))
            if expression_twins:
                twins.append(self.render(ident, target[0], target[1], Expression(blink=target[2].blink)))
            mouth_boxes.append(_box(frame.masks["mouth"]))
            eye_boxes.append(_box(frame.masks["eyes"] | frame.masks["brows"]))
            drawn.append((ident, target, frame.image))
        # cross drivers are drawn after the pairs, so the pairs are those of crosses=0
        for ident, target, image in drawn if crosses > 0 else ():
            for name, driver in self._cross_drivers(rng, ident, target, crosses, image).items():
                crossed[name].append(driver)
        out = {
            "source": to_tensor(src),
            "driver": to_tensor(drv),
            "mouth_box": torch.tensor(mouth_boxes),
            "eyes_box": torch.tensor(eye_boxes),
            "driver_factors": torch.from_numpy(np.stack(drv_factors)),
            "source_factors": torch.from_numpy(np.stack(src_factors)),
        }
        if expression_twins:
            out["driver_neutral"] = to_tensor(twins)
        if flows:
            out["flow"] = torch.from_numpy(np.stack(grids))
            out["flow_valid"] = torch.from_numpy(np.stack(valids).astype(np.float32))
        if crosses > 0:
            out.update({name: to_tensor(images) for name, images in crossed.items()})
        if forced > 0:
            out["forced"] = torch.from_numpy((rng.random(batch) < forced).astype(np.float32))
        return out

    def _cross_drivers(
        self, rng: np.random.Generator, ident: Identity, target: tuple, share: float, image: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The three single-factor drivers of one pair (see ``pairs(crosses=...)``)."""
        if rng.random() >= share:
            return dict.fromkeys(CROSS_DRIVERS, image)
        n = len(self.identity_seeds)
        out = {}
        for name, kept in zip(CROSS_DRIVERS, _CROSS_GROUP_IN_TRIPLE):
            other = self.identity(int(rng.integers(n)))
            if n > 1:
                while other is ident:
                    other = self.identity(int(rng.integers(n)))
            factors = [sample_pose(rng), sample_mouth(rng), sample_expression(rng, self.emotions)]
            factors[kept] = target[kept]
            out[name] = self.render(other, *factors)
        return out

    def swaps(self, rng: np.random.Generator, batch: int, flows: bool = False) -> dict[str, torch.Tensor]:
        """Stage-1 quadruples: A and B (identity frame + target) and the mouth-swapped composites.

        ``a_with_b_mouth`` is A's target frame rendered with B's mouth factors (exactly what the
        official landmark paste approximates), ``b_with_a_mouth`` the converse. ``flows`` adds
        ``flow_a``/``flow_b`` and ``flow_a_valid``/``flow_b_valid``: the exact grids from each
        target to its identity frame (every reconstruction of A is decoded from ``a_id``).
        ``a_factors``, ``b_factors``, ``a_with_b_mouth_factors`` and ``b_with_a_mouth_factors``
        (B, 15) hold the exact :func:`factor_vector` of those frames.
        """
        out: dict[str, list[np.ndarray]] = {
            k: [] for k in ("a_id", "a", "b_id", "b", "a_with_b_mouth", "b_with_a_mouth")
        }
        n = len(self.identity_seeds)
        for _ in range(batch):
            ia = int(rng.integers(n))
            ib = (ia + 1 + int(rng.integers(n - 1))) % n if n > 1 else ia
            a, b = self.identity(ia), self.identity(ib)
            ea, eb = sample_expression(rng, self.emotions), sample_expression(rng, self.emotions)
            pa, pb, ma, mb = sample_pose(rng), sample_pose(rng), sample_mouth(rng), sample_mouth(rng)
            a_id = (sample_pose(rng), sample_mouth(rng), sample_expression(rng, self.emotions))
            b_id = (sample_pose(rng), sample_mouth(rng), sample_expression(rng, self.emotions))
            for name, ident, id_factors, target in (
                ("a", a, a_id, (pa, ma, ea)),
                ("b", b, b_id, (pb, mb, eb)),
            ):
                if flows:
                    id_frame, frame, grid, valid = self.render_with_flow(ident, id_factors, target)
                    out[f"{name}_id"].append(id_frame.image)
                    out[name].append(frame.image)
                    out.setdefault(f"flow_{name}", []).append(grid)
                    out.setdefault(f"flow_{name}_valid", []).append(valid.astype(np.float32))
                else:
                    out[f"{name}_id"].append(self.render(ident, *id_factors))
                    out[name].append(self.render(ident, *target))
            out["a_with_b_mouth"].append(self.render(a, pa, mb, ea))
            out["b_with_a_mouth"].append(self.render(b, pb, ma, eb))
            for name, factors in (
                ("a", (pa, ma, ea)),
                ("b", (pb, mb, eb)),
                ("a_with_b_mouth", (pa, mb, ea)),
                ("b_with_a_mouth", (pb, ma, eb)),
            ):
                out.setdefault(f"{name}_factors", []).append(factor_vector(*factors))
        return {
            k: torch.from_numpy(np.stack(v))
            if k.startswith("flow") or k.endswith("_factors")
            else to_tensor(v)
            for k, v in out.items()
        }

    def audio_pool(self, rng: np.random.Generator, clips: int, frames: int) -> AudioPool:
        """Rendered neutral talking clips with their mel windows and ground-truth jaw."""
        pool = AudioPool([], [], [])
        for _ in range(clips):
            ident_seed = self.identity_seeds[int(rng.integers(len(self.identity_seeds)))]
            clip = make_clip(
                ClipSpec(
                    seed=int(rng.integers(2**31 - 1)),
                    identity_seed=ident_seed,
                    n_frames=frames,
                    size=self.size,
                    emotion="neutral",
                )
            )
            pool.frames.append(np.stack([f.image for f in clip.frames(self.renderer)]))
            mel = melspectrogram(clip.speech.audio)
            pool.mels.append(mel_windows(mel, frames).astype(np.float32))
            pool.jaw.append(clip.mouth[:, 0].copy())
        return pool


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a bool mask, whole image if empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0, 0, mask.shape[1], mask.shape[0])
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


# ----------------------------------------------------------------------------- generic dataset


def _read_video(path: Path, size: int) -> np.ndarray:
    """All frames of an mp4 as (T, size, size, 3) uint8 (ffmpeg scales if needed)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), output_params=["-vf", f"scale={size}:{size}"])
    meta = next(reader)
    del meta
    frames = [np.frombuffer(buf, np.uint8).reshape(size, size, 3) for buf in reader]
    if not frames:
        raise EdtalkError(f"video {path} has no frames", hint="re-create the clip (docs/dataset.md)")
    return np.stack(frames)


class DatasetFrames:
    """A dataset in the generic layout (docs/dataset.md), frames decoded once and kept in memory.

    ``max_clips`` caps how many clips are decoded (for small machines).
    """

    def __init__(
        self, root: str | Path, size: int, split: str = "train", max_clips: int | None = None
    ) -> None:
        self.root = Path(root)
        index = read_index(self.root)
        entries = index.split(split)
        if not entries:
            raise EdtalkError(f"dataset {self.root} has no '{split}' clips", hint="check index.json")
        self.entries = entries[:max_clips] if max_clips else entries
        self.size = size
        self._frames: dict[int, np.ndarray] = {}
        self.by_identity: dict[str, list[int]] = {}
        for i, e in enumerate(self.entries):
            self.by_identity.setdefault(e.identity, []).append(i)
        self.identity_names = sorted(self.by_identity)

    def frames(self, i: int) -> np.ndarray:
        if i not in self._frames:
            self._frames[i] = _read_video(self.root / self.entries[i].path / "video.mp4", self.size)
        return self._frames[i]

    def _random_frame(self, rng: np.random.Generator, clip: int) -> tuple[np.ndarray, int]:
        frames = self.frames(clip)
        t = int(rng.integers(len(frames)))
        return frames[t], t

    def pairs(self, rng: np.random.Generator, batch: int) -> dict[str, torch.Tensor]:
        """Source: a random frame of a clip of the same person (a neutral clip when there is one)."""
        src, drv = [], []
        for _ in range(batch):
            ident = self.identity_names[int(rng.integers(len(self.identity_names)))]
            clips = self.by_identity[ident]
            target = clips[int(rng.integers(len(clips)))]
            neutral = [c for c in clips if self.entries[c].emotion == "neutral"] or clips
            source = neutral[int(rng.integers(len(neutral)))]
            src.append(self._random_frame(rng, source)[0])
            drv.append(self._random_frame(rng, target)[0])
        return {"source": to_tensor(src), "driver": to_tensor(drv)}

    def _landmarks(self, clip: int) -> np.ndarray:
        entry = self.entries[clip]
        path = self.root / entry.path / "factors.npz"
        if not entry.has_factors or not path.is_file():
            raise EdtalkError(
                f"stage 1 on a dataset needs per-frame landmarks; clip {entry.name} has no factors.npz",
                hint="add 68 landmarks per frame as 'landmarks' (T, 68, 2) in factors.npz, or train on 'synthetic'",
            )
        return load_factors(path)["landmarks"]

    def swaps(self, rng: np.random.Generator, batch: int) -> dict[str, torch.Tensor]:
        """Mouth swap by pasting the donor's mouth box (landmarks 48-67, +-5 px) at the receiver's mouth."""
        out: dict[str, list[np.ndarray]] = {
            k: [] for k in ("a_id", "a", "b_id", "b", "a_with_b_mouth", "b_with_a_mouth")
        }
        names = self.identity_names
        for _ in range(batch):
            ia = int(rng.integers(len(names)))
            ib = (ia + 1 + int(rng.integers(len(names) - 1))) % len(names) if len(names) > 1 else ia
            ca = self.by_identity[names[ia]][int(rng.integers(len(self.by_identity[names[ia]])))]
            cb = self.by_identity[names[ib]][int(rng.integers(len(self.by_identity[names[ib]])))]
            a, ta = self._random_frame(rng, ca)
            b, tb = self._random_frame(rng, cb)
            la, lb = self._landmarks(ca)[ta], self._landmarks(cb)[tb]
            out["a_id"].append(self._random_frame(rng, ca)[0])
            out["b_id"].append(self._random_frame(rng, cb)[0])
            out["a"].append(a)
            out["b"].append(b)
            out["a_with_b_mouth"].append(paste_mouth(a, la, b, lb))
            out["b_with_a_mouth"].append(paste_mouth(b, lb, a, la))
        return {k: to_tensor(v) for k, v in out.items()}

    def audio_pool(self, rng: np.random.Generator, clips: int, frames: int) -> AudioPool:
        """Up to ``clips`` clips, each cut to ``frames`` frames, with mel windows from audio.wav."""
        import soundfile

        pool = AudioPool([], [], None)
        order = rng.permutation(len(self.entries))[:clips]
        for i in order:
            video = self.frames(int(i))
            wav, sr = soundfile.read(
                str(self.root / self.entries[int(i)].path / "audio.wav"), dtype="float32"
            )
            if sr != SAMPLE_RATE:
                raise EdtalkError(
                    f"{self.entries[int(i)].name}/audio.wav is {sr} Hz", hint=f"resample to {SAMPLE_RATE} Hz"
                )
            n = min(frames, len(video))
            mel = melspectrogram(wav[: len(video) * 640])
            pool.frames.append(video[:n])
            pool.mels.append(mel_windows(mel, len(video)).astype(np.float32)[:n])
        return pool


def paste_mouth(
    receiver: np.ndarray, rec_lmk: np.ndarray, donor: np.ndarray, don_lmk: np.ndarray
) -> np.ndarray:
    """The receiver image with the donor's mouth region moved onto the receiver's mouth centre."""
    size = receiver.shape[0]
    mouth_r, mouth_d = rec_lmk[48:68], don_lmk[48:68]
    x0, y0 = np.floor(mouth_r.min(0)).astype(int) - 5
    x1, y1 = np.ceil(mouth_r.max(0)).astype(int) + 6
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
    shift = np.round(mouth_d.mean(0) - mouth_r.mean(0)).astype(int)
    out = receiver.copy()
    sx0, sy0 = x0 + shift[0], y0 + shift[1]
    sx1, sy1 = sx0 + (x1 - x0), sy0 + (y1 - y0)
    if sx0 < 0 or sy0 < 0 or sx1 > size or sy1 > size or x1 <= x0 or y1 <= y0:
        return out
    out[y0:y1, x0:x1] = donor[sy0:sy1, sx0:sx1]
    return out
