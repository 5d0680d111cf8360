"""Measurements of a trained model on held-out synthetic identities, and the emotion presets."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edtalk_cli.audio import smooth_mouth_coeffs
from edtalk_cli.synthetic import EMOTIONS, Expression, Mouth, Pose, emotion_expression
from edtalk_cli.training.data import SyntheticWorld, sample_mouth, sample_pose, to_tensor
from edtalk_cli.training.stages import psnr


@torch.no_grad()
def reconstruction_psnr(
    gen: nn.Module,
    size: int,
    identities: int = 8,
    pairs_per_identity: int = 4,
    seed: int = 0,
    emotions: str = "neutral",
) -> dict[str, float]:
    """Self-reenactment on held-out identities: PSNR of ``reconstruct(src, drv)`` vs ``drv``.

    Baselines: the source frame itself (no motion transfer) and the per-pixel mean driver image.
    """
    world = SyntheticWorld(size, identities, emotions, held_out=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE7A1]))
    src, drv = [], []
    for i in range(identities):
        ident = world.identity(i)
        for _ in range(pairs_per_identity):
            src.append(world.render(ident, Pose(), Mouth(), Expression()))
            expr = (
                emotion_expression(EMOTIONS[int(rng.integers(len(EMOTIONS)))], 1.0)
                if emotions == "all"
                else Expression()
            )
            drv.append(world.render(ident, sample_pose(rng), sample_mouth(rng), expr))
    s, d = to_tensor(src), to_tensor(drv)
    pred = torch.cat([gen.reconstruct(s[i : i + 16], d[i : i + 16]) for i in range(0, len(s), 16)])
    mean = d.mean(0, keepdim=True).expand_as(d)
    return {
        "psnr": float(psnr(pred, d).mean()),
        "psnr_source_copy": float(psnr(s, d).mean()),
        "psnr_mean_image": float(psnr(mean, d).mean()),
        "n": float(len(s)),
    }


def _fit_probe(x: np.ndarray, y: np.ndarray, ridge: float = 1e-2) -> np.ndarray:
    """Ridge regression weights (with bias as the last row) of y on x."""
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    return np.linalg.solve(xb.T @ xb + ridge * np.eye(xb.shape[1]), xb.T @ y)


def _apply_probe(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((len(x), 1))], axis=1) @ w


@torch.no_grad()
def lip_sync_correlation(
    gen: nn.Module,
    audio2lip: nn.Module,
    size: int,
    train_clips: int = 8,
    test_clips: int = 8,
    frames: int = 75,
    seed: int = 0,
) -> dict[str, float]:
    """Lip sync through a linear probe from mouth coefficients to the ground-truth jaw opening.

    The probe is fitted on the generator's image mouth coefficients of training identities;
    on held-out clips it reads the jaw from (a) the image coefficients (how well the mouth
    bank encodes the jaw) and (b) Audio2Lip's smoothed coefficients (lip sync). Pearson r vs GT.
    """
    from edtalk_cli.training.trainer import mouth_targets

    audio2lip.eval()
    train_world = SyntheticWorld(size, 400, "neutral")
    test_world = SyntheticWorld(size, 64, "neutral", held_out=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5CC]))
    tr = train_world.audio_pool(rng, train_clips, frames)
    te = test_world.audio_pool(rng, test_clips, frames)
    dev = next(gen.parameters()).device
    x_tr = torch.cat(mouth_targets(gen, tr.frames, dev)).numpy()
    probe = _fit_probe(x_tr, np.concatenate(tr.jaw))
    img_coeffs = mouth_targets(gen, te.frames, dev)
    jaw = np.concatenate(te.jaw)
    from_image = _apply_probe(probe, torch.cat(img_coeffs).numpy())
    audio = [smooth_mouth_coeffs(audio2lip(torch.from_numpy(m)[:, None].to(dev)).cpu()) for m in te.mels]
    from_audio = _apply_probe(probe, torch.cat(audio).numpy())
    return {
        "jaw_r_image_coeffs": float(np.corrcoef(from_image, jaw)[0, 1]),
        "jaw_r_audio": float(np.corrcoef(from_audio, jaw)[0, 1]),
        "jaw_r_probe_train": float(np.corrcoef(_apply_probe(probe, x_tr), np.concatenate(tr.jaw))[0, 1]),
        "frames": float(len(jaw)),
    }


@torch.no_grad()
def emotion_presets(
    gen: nn.Module, size: int, identities: int = 12, frames_per_identity: int = 4, seed: int = 0
) -> dict[str, np.ndarray]:
    """Mean ``exp_fc(fc(E(frame)))`` per emotion prototype (intensity 1) over training identities.

    Frames have small random poses and random speech mouths, so only the expression is
    constant within an emotion. Returns name -> (1, exp_dim) float32.
    """
    world = SyntheticWorld(size, 400, "all")
    dev = next(gen.parameters()).device
    out: dict[str, np.ndarray] = {}
    for e_i, name in enumerate(EMOTIONS):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE30, e_i]))
        imgs = []
        for i in range(identities):
            ident = world.identity(i * 7)
            for _ in range(frames_per_identity):
                pose = Pose(yaw=float(rng.uniform(-8, 8)), pitch=float(rng.uniform(-5, 5)))
                imgs.append(world.render(ident, pose, sample_mouth(rng), emotion_expression(name, 1.0)))
        latent = gen.encode_latent(to_tensor(imgs).to(dev))
        coeffs = gen.expression_coeffs(latent)
        out[name] = coeffs.mean(0, keepdim=True).cpu().numpy().astype(np.float32)
    return out


@torch.no_grad()
def preset_separation(gen: nn.Module, presets: dict[str, np.ndarray], size: int, seed: int = 1) -> float:
    """Nearest-preset accuracy of single held-out frames' expression coefficients (8-way)."""
    world = SyntheticWorld(size, 16, "all", held_out=True)
    names = list(presets)
    table = np.concatenate([presets[n] for n in names])
    dev = next(gen.parameters()).device
    correct = total = 0
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E9]))
    for e_i, name in enumerate(names):
        imgs = [
            world.render(
                world.identity(i),
                Pose(yaw=float(rng.uniform(-8, 8))),
                sample_mouth(rng),
                emotion_expression(name, 1.0),
            )
            for i in range(8)
        ]
        coeffs = gen.expression_coeffs(gen.encode_latent(to_tensor(imgs).to(dev))).cpu().numpy()
        guess = np.argmin(((coeffs[:, None] - table[None]) ** 2).sum(-1), axis=1)
        correct += int((guess == e_i).sum())
        total += len(imgs)
    return correct / total
