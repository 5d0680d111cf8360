"""Quick probes of a generator (and Audio2Lip) as ``nn.Module``s on held-out synthetic identities.

What ``edtalk train evaluate`` reports: it takes training checkpoints as well as weights
directories, so it measures the networks directly (single frames, linear read-outs), where
:mod:`edtalk_cli.evaluation.harness` measures a model bundle through the render engine on clips.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edtalk_cli.audio import smooth_mouth_coeffs
from edtalk_cli.errors import EdtalkError
from edtalk_cli.model.generator import SourceEncoding
from edtalk_cli.synthetic import EMOTIONS, Expression, Mouth, Pose, emotion_expression
from edtalk_cli.training.calibration import read_expression
from edtalk_cli.training.data import SyntheticWorld, sample_mouth, sample_pose, to_tensor
from edtalk_cli.training.presets import emotion_presets
from edtalk_cli.training.stages import expression_difference_l1, psnr


def probe_report(
    gen: nn.Module,
    audio2lip: nn.Module | None = None,
    *,
    identities: int = 8,
    expression_ceiling: bool = False,
    name: str = "the generator",
) -> dict[str, object]:
    """Every probe that applies to ``gen`` (a full model gets the expression probes, an
    ``audio2lip`` the lip-sync probe); ``expression_ceiling`` adds the slow decoder ceiling."""
    size = gen.config.size
    full = hasattr(gen, "exp_fc")
    if expression_ceiling and not full:
        raise EdtalkError(
            f"--expression-ceiling needs a full generator with an expression bank; {name} is lip+pose only",
            hint="pass a stage-2 checkpoint (EDTalk.pt) or drop --expression-ceiling",
        )
    report: dict[str, object] = {"self_reenactment_neutral": reconstruction_psnr(gen, size, identities)}
    report["self_reenactment_emotional"] = reconstruction_psnr(gen, size, identities, emotions="all")
    report["encoder_emotion_probe"] = encoder_emotion_probe(gen, size)
    if full:
        report["preset_nearest_accuracy"] = preset_separation(gen, emotion_presets(gen, size), size)
        report["expression_readout_r"] = expression_readout(gen, size)
        if expression_ceiling:
            report["expression_render_ceiling"] = expression_render_ceiling(gen, size)
    if audio2lip is not None:
        report["lip_sync"] = lip_sync_probe(gen, audio2lip, size)
    return report


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
def encoder_emotion_probe(
    gen: nn.Module,
    size: int,
    train_identities: int = 40,
    test_identities: int = 10,
    frames_per_emotion: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """Does the encoder latent carry emotion? Linear read-outs of ``E(frame)``, the latent ELN reads.

    Frames are near-frontal (yaw +-3 degrees) with the mouth closed, so the emotion is the only
    factor that varies within an identity. One-vs-all ridge probes over the 8 emotions are fitted
    on training identities and scored on held-out ones:

    - ``accuracy_held_out``: on the latent itself, as ELN and the presets must read it;
    - ``accuracy_identity_centred``: on the latent minus its identity's mean over all emotions,
      i.e. is the emotion in the latent at all, as a displacement from the person's face;
    - ``pixels_identity_centred``: the same probe on 16x16 thumbnails, the ceiling of this probe.

    A high centred score with a low plain one means the emotion is there but entangled with the
    identity (what stage 2 has to untangle); both near chance (1/8) means train stage 0 longer
    or use the stage-2 variant with ``unfreeze``.
    """

    def frames(world: SyntheticWorld, count: int, rng: np.random.Generator):
        imgs, labels, people = [], [], []
        for i in range(count):
            ident = world.identity(i)
            for e_i, name in enumerate(EMOTIONS):
                for _ in range(frames_per_emotion):
                    pose = Pose(yaw=float(rng.uniform(-3, 3)))
                    imgs.append(world.render(ident, pose, Mouth(), emotion_expression(name, 1.0)))
                    labels.append(e_i)
                    people.append(i)
        return to_tensor(imgs), np.array(labels), np.array(people)

    def latents(batch: torch.Tensor) -> np.ndarray:
        z = [gen.encode_latent(batch[i : i + 32].to(dev)) for i in range(0, len(batch), 32)]
        return torch.cat(z).cpu().double().numpy()

    def centred(x: np.ndarray, people: np.ndarray) -> np.ndarray:
        out = x.copy()
        for person in np.unique(people):
            out[people == person] -= x[people == person].mean(0)
        return out

    def accuracy(x_tr: np.ndarray, x_te: np.ndarray) -> float:
        mean, std = x_tr.mean(0), x_tr.std(0) + 1e-8
        probe = _fit_probe((x_tr - mean) / std, np.eye(len(EMOTIONS))[y_tr], ridge=100.0)
        return float((_apply_probe(probe, (x_te - mean) / std).argmax(1) == y_te).mean())

    dev = next(gen.parameters()).device
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE3C]))
    img_tr, y_tr, p_tr = frames(SyntheticWorld(size, 400, "all"), train_identities, rng)
    img_te, y_te, p_te = frames(SyntheticWorld(size, 64, "all", held_out=True), test_identities, rng)
    z_tr, z_te = latents(img_tr), latents(img_te)
    thumbs = [F.adaptive_avg_pool2d(x, 16).flatten(1).double().numpy() for x in (img_tr, img_te)]
    return {
        "accuracy_held_out": accuracy(z_tr, z_te),
        "accuracy_identity_centred": accuracy(centred(z_tr, p_tr), centred(z_te, p_te)),
        "pixels_identity_centred": accuracy(centred(thumbs[0], p_tr), centred(thumbs[1], p_te)),
        "chance": 1.0 / len(EMOTIONS),
        "frames_held_out": float(len(y_te)),
    }


def expression_render_ceiling(
    gen: nn.Module, size: int, pairs: int = 8, steps: int = 150, seed: int = 0
) -> dict[str, float]:
    """Can the decoder render an expression at all, whatever the encoder and ELN say?

    On held-out identities (neutral source, emotional driver and the driver's neutral twin), the
    ``expr_diff`` error of three renders of the difference driver minus twin:

    - ``no_change``: the render does not change with the expression (predicting a zero delta);
    - ``model``: the model's own coefficients for driver and twin;
    - ``oracle``: the driver's expression coefficients and a latent offset (style width) optimised
      per sample (Adam, ``steps`` steps) against the ground-truth difference, decoder frozen.

    An ``oracle`` not clearly below ``no_change`` means no stage-2 training of ELN/EEM (or of the
    encoder) can make presets recognisable: the decoder itself must render finer detail first.
    Synthetic only (it needs neutral twins). Full model (with ``exp_fc``) only.
    """
    world = SyntheticWorld(size, 64, "all", held_out=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCE1]))
    batch = world.pairs(rng, pairs, neutral_source=True, expression_twins=True)
    dev = next(gen.parameters()).device
    source, driver, twin = (batch[k].to(dev) for k in ("source", "driver", "driver_neutral"))
    target = driver - twin
    was_training = gen.training
    gen.eval()
    frozen = [p for p in gen.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            encoding = gen.encode_source(source)
            bases = gen.motion_bases()
            drv_coeffs = gen.motion_coeffs(gen.encode_latent(driver))
            twin_coeffs = gen.motion_coeffs(gen.encode_latent(twin))
            twin_render = gen.synthesize(encoding, twin_coeffs, bases)
            model = expression_difference_l1(
                gen.synthesize(encoding, drv_coeffs, bases) - twin_render, target
            )
            no_change = expression_difference_l1(torch.zeros_like(target), target)
        keep = drv_coeffs[:, : gen.expression_slice.start]
        exp = drv_coeffs[:, gen.expression_slice].clone().requires_grad_(True)
        offset = torch.zeros_like(encoding.latent, requires_grad=True)
        opt = torch.optim.Adam([exp, offset], lr=5e-3)
        best = float(model)
        with torch.enable_grad():
            for _ in range(steps):
                shifted = SourceEncoding(encoding.latent + offset, encoding.feats, encoding.eem_normalized)
                pred = gen.synthesize(shifted, torch.cat([keep, exp], 1), bases)
                err = expression_difference_l1(pred - twin_render, target)
                best = min(best, float(err.detach()))
                opt.zero_grad(set_to_none=True)
                err.backward()
                opt.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
        gen.train(was_training)
    return {"no_change": float(no_change), "model": float(model), "oracle": best, "pairs": float(pairs)}


@torch.no_grad()
def lip_sync_probe(
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


def expression_readout(gen: nn.Module, size: int, frames: int = 512, seed: int = 2) -> dict[str, float]:
    """How well the 7 anchored expression coefficients read the true expression off new faces.

    Pearson r per factor between ``exp_fc(fc(E(frame)))`` and the exact (scaled) factor, over
    ``frames`` held-out frames of random identity, pose, mouth and emotion. This is what an
    emotion *reference clip* relies on; presets bypass it. Only meaningful for a model trained
    with ``weights.anchor`` (its expression columns are the factors).
    """
    read, exact = read_expression(gen, size, frames, seed)
    names = [f.name for f in fields(Expression)]  # the factor order of factor_vector's expression part
    out = {name: float(np.corrcoef(read[:, k], exact[:, k])[0, 1]) for k, name in enumerate(names)}
    out["mean"] = float(np.mean(list(out.values())))
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
