"""`edtalk eval`: measure a model against the synthetic world's exact ground truth.

On held-out synthetic identities (never seen in training) the evaluation drives a frontal,
neutral source frame of each identity and compares what the model renders with what the
renderer draws for the same factors:

* **self-reenactment**: mouth, pose and expression all from a clip of the same identity;
* **three-way cross-reenactment**: the mouth of clip A, the pose of clip B and the expression
  of clip C, three other identities; the target is rendered exactly;
* **audio-driven lip sync**: clip A's speech through Audio2Lip; the jaw opening the judges
  read from the output is correlated with clip A's ground-truth jaw;
* **leakage**: one driver at a time is swapped for another clip's, and the judges measure how
  far the two factors that should stay put move (in units of their natural spread);
* **expression transfer**: the same mouth and pose drivers with, in turn, an expression clip of
  each of the 7 emotions (other identities), so the emotion accuracy covers every emotion equally;
* **emotion presets**: each preset of the model, recognised by the emotion judge.

Every image comparison also reports ``face_detail_ratio`` (edge strength of the output over the
ground truth's, inside the face): a blurred head scores well below 1, and then small leakage
only means that nothing moves.

Metrics (PSNR/SSIM full and per region, M-LMD/F-LMD, emotion accuracy, lip-sync r, leakage)
come from :mod:`edtalk_cli.synthetic.metrics` and the judges. A *system* is what is measured
(:mod:`edtalk_cli.evaluation.systems`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from edtalk_cli.atomic import atomic_write
from edtalk_cli.evaluation.systems import Driver, EvalSystem
from edtalk_cli.synthetic.dataset import ClipSpec, make_clip
from edtalk_cli.synthetic.factors import EMOTIONS, Expression, Identity, Mouth, Pose
from edtalk_cli.synthetic.judges import judge_frames
from edtalk_cli.synthetic.metrics import (
    FACTOR_SCALES,
    cross_reenactment_target,
    detail_ratio,
    emotion_accuracy,
    f_lmd,
    leakage,
    lip_sync_correlation,
    m_lmd,
    psnr,
    region_scores,
)
from edtalk_cli.synthetic.render import Frame, Renderer
from edtalk_cli.training.data import TEST_SEED_BASE as HELD_OUT_SEED_BASE

REGIONS = ("mouth", "eyes", "brows")
FACTOR_GROUPS = ("mouth", "pose", "expression")


@dataclass
class EvalSettings:
    identities: int = 4
    frames: int = 50
    seed: int = 0
    contact_frames: int = 4
    transfer_frames: int = 16  # frames per emotion clip of the expression transfer


@dataclass
class _Collected:
    """Per-identity outputs, concatenated over identities at the end."""

    self_out: list[np.ndarray] = field(default_factory=list)
    self_gt: list[list[Frame]] = field(default_factory=list)
    cross_out: list[np.ndarray] = field(default_factory=list)
    cross_gt: list[list[Frame]] = field(default_factory=list)
    cross_emotion: list[np.ndarray] = field(default_factory=list)
    cross_source_copy: list[np.ndarray] = field(default_factory=list)
    sync_out: list[np.ndarray] = field(default_factory=list)
    sync_gt: list[list[Frame]] = field(default_factory=list)
    sync_jaw: list[np.ndarray] = field(default_factory=list)
    # group -> per identity, the output (and the exact target) with that group's driver swapped;
    # the reference is the cross-reenactment output (and target) of the same identity
    leak: dict[str, list[np.ndarray]] = field(default_factory=dict)
    leak_gt: dict[str, list[np.ndarray]] = field(default_factory=dict)
    presets: list[tuple[str, np.ndarray]] = field(default_factory=list)
    # expression transfer: per identity and emotion, the output and the exact target
    transfer_out: list[np.ndarray] = field(default_factory=list)
    transfer_gt: list[list[Frame]] = field(default_factory=list)
    transfer_emotion: list[np.ndarray] = field(default_factory=list)
    contact: list[np.ndarray] = field(default_factory=list)


@lru_cache(maxsize=4)
def _renderer(size: int) -> Renderer:
    return Renderer(size)


def _clip(seed: int, identity_seed: int, frames: int, size: int, emotion: str, motion: float = 1.0) -> Driver:
    spec = ClipSpec(
        seed, identity_seed, n_frames=frames, size=size, emotion=emotion, intensity=1.0, motion=motion
    )
    clip = make_clip(spec)
    return Driver(clip, list(clip.frames(_renderer(size))))


def evaluate(
    system: EvalSystem,
    settings: EvalSettings | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict, np.ndarray]:
    """Run every measurement on ``settings.identities`` held-out identities.

    Returns the JSON-able report and the contact sheet (H, W, 3) uint8: per row one time step
    of the first identities' cross-reenactment, columns source, mouth driver, pose driver,
    expression driver, ground truth and output.
    """
    cfg = settings or EvalSettings()
    if cfg.identities < 1 or cfg.frames < 8:
        raise ValueError("the evaluation needs at least 1 identity and 8 frames")
    size = system.size
    renderer = _renderer(size)
    got = _Collected()
    steps = cfg.identities
    for k in range(cfg.identities):
        if progress is not None:
            progress("identities", k, steps)
        base = HELD_OUT_SEED_BASE + 100 * k
        seeds = np.random.SeedSequence([cfg.seed, k]).generate_state(8)
        identity = Identity.from_seed(base)
        source = renderer.render(identity, Pose(), Mouth(), Expression())
        system.set_source(source.image, identity)
        emotion = EMOTIONS[1 + (k % (len(EMOTIONS) - 1))]  # an emotional expression driver
        other_emotion = EMOTIONS[1 + ((k + 3) % (len(EMOTIONS) - 1))]
        mouth = _clip(int(seeds[0]), base + 1, cfg.frames, size, "neutral", motion=0.5)
        pose = _clip(int(seeds[1]), base + 2, cfg.frames, size, "neutral")
        expression = _clip(int(seeds[2]), base + 3, cfg.frames, size, emotion, motion=0.5)
        own = _clip(int(seeds[3]), base, cfg.frames, size, "random")

        # self-reenactment: the same identity's clip drives all three factors
        got.self_out.append(system.drive(own, own, own))
        got.self_gt.append(own.frames)

        # three-way cross-reenactment against the exact target
        target = cross_reenactment_target(
            identity, mouth.clip.mouth, pose.clip.pose, expression.clip.expression, size
        )
        output = system.drive(mouth, pose, expression)
        got.cross_out.append(output)
        got.cross_gt.append(target)
        got.cross_emotion.append(expression.clip.emotion.astype(np.int64))
        got.cross_source_copy.append(np.broadcast_to(source.image, output.shape))
        if len(got.contact) < cfg.contact_frames:
            for t in np.linspace(0, cfg.frames - 1, cfg.contact_frames).astype(int)[
                : cfg.contact_frames - len(got.contact)
            ]:
                got.contact.append(
                    np.concatenate(
                        [
                            source.image,
                            mouth.frames[t].image,
                            pose.frames[t].image,
                            expression.frames[t].image,
                            target[t].image,
                            output[t],
                        ],
                        axis=1,
                    )
                )

        # audio-driven lip sync (source pose and expression)
        synced = system.drive_audio(mouth)
        got.sync_out.append(synced)
        got.sync_jaw.append(mouth.clip.mouth[: len(synced), 0])
        got.sync_gt.append(
            [
                renderer.render(identity, Pose(), Mouth.from_vector(m), Expression())
                for m in mouth.clip.mouth[: len(synced)]
            ]
        )

        # leakage: swap one driver for another clip's
        swaps = {
            "mouth": (
                _clip(int(seeds[4]), base + 4, cfg.frames, size, "neutral", motion=0.5),
                pose,
                expression,
            ),
            "pose": (mouth, _clip(int(seeds[5]), base + 5, cfg.frames, size, "neutral"), expression),
            "expression": (
                mouth,
                pose,
                _clip(int(seeds[6]), base + 6, cfg.frames, size, other_emotion, motion=0.5),
            ),
        }
        if not system.has_expression:  # a lip+pose model has no expression driver to swap
            del swaps["expression"]
        for group, drivers in swaps.items():
            got.leak.setdefault(group, []).append(system.drive(*drivers))
            swapped_target = cross_reenactment_target(
                identity, drivers[0].clip.mouth, drivers[1].clip.pose, drivers[2].clip.expression, size
            )
            got.leak_gt.setdefault(group, []).append(np.stack([f.image for f in swapped_target]))

        # expression transfer: one clip of each emotion (other identities) on the same mouth and pose
        if system.has_expression:
            n = min(cfg.transfer_frames, cfg.frames)
            transfer_seeds = np.random.SeedSequence([cfg.seed, k, 1]).generate_state(len(EMOTIONS) + 1)
            transfer_mouth = _clip(int(transfer_seeds[0]), base + 1, n, size, "neutral", motion=0.5)
            transfer_pose = _clip(int(transfer_seeds[1]), base + 2, n, size, "neutral", motion=0.5)
            for j, name in enumerate(EMOTIONS[1:]):
                expression_clip = _clip(int(transfer_seeds[2 + j]), base + 10 + j, n, size, name, motion=0.5)
                got.transfer_out.append(system.drive(transfer_mouth, transfer_pose, expression_clip))
                got.transfer_gt.append(
                    cross_reenactment_target(
                        identity,
                        transfer_mouth.clip.mouth,
                        transfer_pose.clip.pose,
                        expression_clip.clip.expression,
                        size,
                    )
                )
                got.transfer_emotion.append(expression_clip.clip.emotion.astype(np.int64))

        # emotion presets
        if system.has_expression:
            for name in EMOTIONS:
                frame = system.preset(name)
                if frame is not None:
                    got.presets.append((name, frame))
    if progress is not None:
        progress("judging", steps, steps)
    report = _report(system, cfg, got)
    return report, _contact_sheet(got.contact, size)


def _masks(frames: list[Frame]) -> dict[str, np.ndarray]:
    return {name: np.stack([f.masks[name] for f in frames]) for name in REGIONS}


def _image_scores(out: np.ndarray, gt: list[Frame]) -> dict:
    images = np.stack([f.image for f in gt])
    faces = np.stack([f.masks["face"] for f in gt])
    return {**region_scores(out, images, _masks(gt)), "face_detail_ratio": detail_ratio(out, images, faces)}


def _emotion_scores(answers: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy of judged emotions against the driver's, with what it is worth: the majority
    baseline (always answering the commonest label), the share of the judge's commonest answer
    (near 1: it reads one emotion everywhere, as on a blurred or faceless output) and the
    accuracy per driver emotion."""
    labels, answers = np.asarray(labels), np.asarray(answers)
    return {
        "emotion_accuracy": emotion_accuracy(answers, labels),
        "emotion_majority_baseline": float(np.bincount(labels).max() / len(labels)),
        "emotion_judged_top_share": float(np.bincount(answers).max() / len(labels)),
        "emotion_accuracy_per_driver_emotion": {
            EMOTIONS[e]: emotion_accuracy(answers[labels == e], labels[labels == e])
            for e in np.unique(labels).tolist()
        },
    }


def _leakage(reference: dict[str, np.ndarray], changed: list[np.ndarray], moved: str) -> dict:
    """Leakage of one swapped driver: ``reference`` is what the judges read from the unswapped
    frames, ``changed`` the per-identity frames with ``moved``'s driver swapped."""
    shift = leakage(reference, judge_frames(np.concatenate(changed)))
    others = {g: round(shift[g], 4) for g in FACTOR_GROUPS if g != moved}
    return {"driven": round(shift[moved], 4), "others": others, "max_other": round(max(others.values()), 4)}


def _rounded(tree):
    """Floats to 4 decimals for JSON: infinities as "inf"/"-inf", NaN (an empty region) as null."""
    if isinstance(tree, dict):
        return {k: _rounded(v) for k, v in tree.items()}
    if isinstance(tree, float):
        if math.isinf(tree):
            return "inf" if tree > 0 else "-inf"
        return None if math.isnan(tree) else round(float(tree), 4)
    return tree


def _report(system: EvalSystem, cfg: EvalSettings, got: _Collected) -> dict:
    cat = np.concatenate
    flat = lambda lists: [f for frames in lists for f in frames]  # noqa: E731
    self_gt, cross_gt, sync_gt = flat(got.self_gt), flat(got.cross_gt), flat(got.sync_gt)
    cross_out = cat(got.cross_out)
    cross_gt_images = np.stack([f.image for f in cross_gt])
    judged = judge_frames(cross_out)
    judged_gt = judge_frames(cross_gt_images)
    gt_landmarks = np.stack([f.landmarks for f in cross_gt])
    size = system.size
    mouth_distance = m_lmd(judged["landmarks"], gt_landmarks)
    face_distance = f_lmd(judged["landmarks"], gt_landmarks)
    cross = {
        **_image_scores(cross_out, cross_gt),
        "psnr_source_copy": psnr(cat(got.cross_source_copy), cross_gt_images),
        "m_lmd_px": mouth_distance,
        "f_lmd_px": face_distance,
        "m_lmd_pct_width": 100 * mouth_distance / size,
        "f_lmd_pct_width": 100 * face_distance / size,
        "judge_floor_m_lmd_px": m_lmd(judged_gt["landmarks"], gt_landmarks),
        "judge_floor_f_lmd_px": f_lmd(judged_gt["landmarks"], gt_landmarks),
    }
    # the literature's LMD: one detector on the output and on the real frame, so its bias on a
    # face cancels (floor 0); the keys above hold the judge's own error as well
    for name, distance in (("m", m_lmd), ("f", f_lmd)):
        paired = distance(judged["landmarks"], judged_gt["landmarks"])
        cross[f"{name}_lmd_paired_px"] = paired
        cross[f"{name}_lmd_paired_pct_width"] = 100 * paired / size
    report: dict = {
        "system": system.name,
        "size": size,
        "identities": cfg.identities,
        "frames_per_clip": cfg.frames,
        "seed": cfg.seed,
        "held_out_identity_seeds": f"{HELD_OUT_SEED_BASE}+100k .. +16",
        "self_reenactment": _image_scores(cat(got.self_out), self_gt),
        "cross_reenactment": cross,
    }
    if system.has_expression:
        labels = cat(got.cross_emotion)
        report["cross_reenactment"].update(_emotion_scores(judged["emotion"], labels))
        report["cross_reenactment"]["judge_floor_emotion_accuracy"] = emotion_accuracy(
            judged_gt["emotion"], labels
        )
    if got.transfer_out:
        out, gt = cat(got.transfer_out), flat(got.transfer_gt)
        labels = cat(got.transfer_emotion)
        floor = _emotion_scores(judge_frames(np.stack([f.image for f in gt]))["emotion"], labels)
        report["expression_transfer"] = {
            "clips": len(got.transfer_out),
            "frames_per_clip": len(got.transfer_out[0]),
            **_image_scores(out, gt),
            **_emotion_scores(judge_frames(out)["emotion"], labels),
            "judge_floor_emotion_accuracy": floor["emotion_accuracy"],
            "judge_floor_per_driver_emotion": floor["emotion_accuracy_per_driver_emotion"],
        }
    # lip sync: Pearson r per clip (identities differ in their judged resting jaw), then the mean
    sync_r, floor_r, sync_landmarks = [], [], []
    for out, gt, jaw in zip(got.sync_out, got.sync_gt, got.sync_jaw):
        seen = judge_frames(out)
        sync_landmarks.append(seen["landmarks"])
        sync_r.append(lip_sync_correlation(jaw, seen["mouth"][:, 0]))
        floor_r.append(
            lip_sync_correlation(jaw, judge_frames(np.stack([f.image for f in gt]))["mouth"][:, 0])
        )
    report["lip_sync"] = {
        "jaw_r": float(np.mean(sync_r)),
        "jaw_r_per_clip": [round(r, 4) for r in sync_r],
        "judge_floor_jaw_r": float(np.mean(floor_r)),
        "m_lmd_px": m_lmd(cat(sync_landmarks), np.stack([f.landmarks for f in sync_gt])),
        "frames": len(sync_gt),
    }
    report["leakage"] = {
        "units": "mean |change| of the judged factors, in units of their natural spread "
        + json.dumps({k: v.tolist() for k, v in FACTOR_SCALES.items()}),
        **{g: _leakage(judged, got.leak[g], g) for g in got.leak},
        "judge_floor": {g: _leakage(judged_gt, got.leak_gt[g], g) for g in got.leak_gt},
    }
    if got.presets:
        names = [n for n, _ in got.presets]
        predicted = judge_frames(np.stack([f for _, f in got.presets]))["emotion"]
        per = {}
        for name in dict.fromkeys(names):
            hits = [EMOTIONS[p] == name for n, p in zip(names, predicted) if n == name]
            per[name] = sum(hits) / len(hits)
        report["emotion_presets"] = {
            "accuracy": float(np.mean([EMOTIONS[p] == n for n, p in zip(names, predicted)])),
            "per_preset": per,
        }
    return _rounded(report)


def _contact_sheet(rows: list[np.ndarray], size: int) -> np.ndarray:
    """Stack rows under a header naming the columns; upscaled to at least 128 px per tile."""
    from PIL import Image, ImageDraw

    scale = max(1, math.ceil(128 / size))
    tile = size * scale
    body = np.concatenate(rows, axis=0)
    body = body.repeat(scale, axis=0).repeat(scale, axis=1)
    header = Image.new("RGB", (body.shape[1], 18), (255, 255, 255))
    draw = ImageDraw.Draw(header)
    for i, label in enumerate(
        ("source", "mouth (A)", "pose (B)", "expression (C)", "ground truth", "output")
    ):
        draw.text((i * tile + 4, 3), label, fill=(0, 0, 0))
    return np.concatenate([np.asarray(header), body], axis=0)


def write_report(report: dict, sheet: np.ndarray, out_dir: Path) -> tuple[Path, Path]:
    """Write ``eval.json`` and ``contact_sheet.png`` into ``out_dir`` (each atomically)."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "eval.json", out_dir / "contact_sheet.png"
    with atomic_write(json_path) as fh:
        fh.write(json.dumps(report, indent=1) + "\n")
    with atomic_write(png_path, "wb", suffix=".tmp.png") as fh:
        Image.fromarray(sheet).save(fh, format="PNG")
    return json_path, png_path
