"""Train the two judges on renders of the synthetic world (CPU).

    python -m edtalk_cli.synthetic.judges.train [--train 8000] [--test 1000] [--epochs 7]
        [--emotion-epochs 8] [--stage all|emotion] [--cache frames.npz]
        [--seed 0] [--workers 2] [--out edtalk_cli/synthetic/judges]

Training and held-out frames use disjoint identity seed streams (even / odd seeds). Frames
are rendered at 128 px and stored at the judges' 96 px input. Factors are drawn over the
ranges clips use: yaw +-30, pitch +-15, roll +-10 degrees, small translation/zoom, any
mouth, one emotion prototype at intensity 0.5-1 plus per-factor noise (std 0.12), blinks
in 15 % of frames. The factor judge sees the whole frame; the emotion judge sees two crops
aligned on the landmarks (ground truth with jitter in training, the factor judge's in
use). ``--stage emotion`` retrains only the emotion judge. Writes factor_judge.safetensors,
emotion_judge.safetensors (float16) and judges.json with the held-out metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from edtalk_cli.atomic import atomic_write
from edtalk_cli.synthetic.factors import EMOTIONS, Expression, Identity, Mouth, Pose, emotion_matrix
from edtalk_cli.synthetic.judges import JUDGE_SIZE
from edtalk_cli.synthetic.render import Renderer

RENDER_SIZE = 128
# (first, last, weight) output groups of the factor judge: landmarks, pose, mouth, expression
LOSS_GROUPS = ((0, 136, 1.0), (136, 142, 1.0), (142, 144, 3.0), (144, 151, 3.0))


def sample_factors(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Random per-frame factors (pose (n,6), mouth (n,2), expression (n,7), emotion, intensity)."""
    pose = np.stack(
        [
            rng.uniform(-30, 30, n),
            rng.uniform(-15, 15, n),
            rng.uniform(-10, 10, n),
            rng.uniform(-0.08, 0.08, n),
            rng.uniform(-0.07, 0.07, n),
            rng.uniform(0.94, 1.06, n),
        ],
        1,
    )
    mouth = np.stack([rng.uniform(0, 1, n) ** 1.3, rng.uniform(-1, 1, n)], 1)
    emotion = rng.integers(len(EMOTIONS), size=n)
    intensity = rng.uniform(0.5, 1.0, n)
    expr = np.zeros((n, 7))
    expr[:, :6] = emotion_matrix()[emotion] * intensity[:, None] + rng.normal(0, 0.12, (n, 6))
    expr[:, :6] = np.clip(expr[:, :6], -1, 1)
    expr[:, 5] = np.clip(expr[:, 5], 0, 1)
    blink = rng.random(n) < 0.15
    expr[:, 6] = np.where(blink, rng.uniform(0, 1, n), 0.0)
    return {
        "pose": pose.astype(np.float32),
        "mouth": mouth.astype(np.float32),
        "expression": expr.astype(np.float32),
        "emotion": emotion.astype(np.int64),
        "intensity": intensity.astype(np.float32),
    }


def _render_chunk(args: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Render one chunk: (seed, n, split code) -> images (n, 3, 96, 96) uint8 and targets."""
    import torch

    from edtalk_cli.synthetic.judges import preprocess

    torch.set_num_threads(1)
    seed, n, split = args
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7D, split]))
    f = sample_factors(rng, n)
    id_seeds = np.random.SeedSequence([seed, 0x1DE, split]).generate_state(n, dtype=np.uint32)
    # identity seeds: even for train, odd for test -> disjoint by construction
    id_seeds = (id_seeds // 2) * 2 + split
    r = Renderer(RENDER_SIZE)
    imgs = np.empty((n, RENDER_SIZE, RENDER_SIZE, 3), dtype=np.uint8)
    lms = np.empty((n, 68, 2), dtype=np.float32)
    for i in range(n):
        fr = r.render(
            Identity.from_seed(int(id_seeds[i])),
            Pose.from_vector(f["pose"][i]),
            Mouth.from_vector(f["mouth"][i]),
            Expression.from_vector(f["expression"][i]),
        )
        imgs[i] = fr.image
        lms[i] = fr.landmarks
    x = preprocess(imgs)
    f["images"] = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    f["landmarks"] = lms
    f["identity_seed"] = id_seeds.astype(np.int64)
    return f


def make_split(seed: int, n: int, split: int, workers: int, chunk: int = 250) -> dict[str, np.ndarray]:
    jobs = [(seed * 100003 + k, min(chunk, n - k * chunk), split) for k in range(math.ceil(n / chunk))]
    if workers > 1:
        with Pool(workers) as pool:
            parts = pool.map(_render_chunk, jobs)
    else:
        parts = [_render_chunk(j) for j in jobs]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _augment(x, gen):
    """Mild blur, noise and colour jitter so the judges tolerate generated frames."""
    import torch
    from torch.nn import functional as F

    n = x.shape[0]
    sig = torch.rand(n, generator=gen) * 1.2
    ax = torch.arange(-2, 3, dtype=torch.float32)
    k1 = torch.exp(-0.5 * (ax[None] / sig[:, None].clamp(min=1e-3)) ** 2)
    k1 = k1 / k1.sum(1, keepdim=True)  # (n, 5)
    k2 = (k1[:, :, None] * k1[:, None, :])[:, None]  # (n, 1, 5, 5)
    xb = F.conv2d(
        F.pad(x.reshape(1, n * 3, *x.shape[2:]), (2, 2, 2, 2), mode="replicate"),
        k2.repeat_interleave(3, 0),
        groups=n * 3,
    ).reshape_as(x)
    gain = 1 + 0.1 * (torch.rand(n, 3, 1, 1, generator=gen) - 0.5)
    bias = 0.1 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    return (xb * gain + bias + 0.02 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)


def train_net(net, x_u8, y, epochs: int, classify: bool, seed: int, log, lr: float = 2e-3) -> None:
    import torch
    from torch.nn import functional as F

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    n = len(x_u8)
    bs = 128
    steps = epochs * math.ceil(n / bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    xt = torch.from_numpy(x_u8)
    yt = torch.from_numpy(y)
    net.train()
    for ep in range(epochs):
        perm = torch.randperm(n, generator=gen)
        tot = 0.0
        t0 = time.time()
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            xb = _augment(xt[idx].float() / 127.5 - 1, gen)
            out = net(xb)
            if classify:
                loss = F.cross_entropy(out, yt[idx], label_smoothing=0.05)
            else:
                err = F.smooth_l1_loss(out, yt[idx], beta=0.05, reduction="none").mean(0)
                # balance the groups: 136 landmark outputs must not drown the 15 factors
                loss = sum(w * err[a:b].mean() for a, b, w in LOSS_GROUPS)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        log(f"  epoch {ep + 1}/{epochs}: loss {tot / n:.4f} ({time.time() - t0:.0f} s)")
    net.eval()


def train_crop(net, x_u8, lm96, y_cls, y_reg, epochs: int, seed: int, log, lr: float = 2e-3) -> None:
    """Train the crop judge; landmarks are jittered like the factor judge's errors."""
    import torch
    from torch.nn import functional as F

    from edtalk_cli.synthetic.judges import crop_regions, landmark_targets

    k = len(EMOTIONS)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    n, bs = len(x_u8), 128
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * math.ceil(n / bs), pct_start=0.15
    )
    xt, lt = torch.from_numpy(x_u8), torch.from_numpy(lm96)
    ct, rt = torch.from_numpy(y_cls), torch.from_numpy(y_reg)
    net.train()
    for ep in range(epochs):
        perm = torch.randperm(n, generator=gen)
        tot, t0 = 0.0, time.time()
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            m = len(idx)
            xb = _augment(xt[idx].float() / 127.5 - 1, gen)
            lm = lt[idx]
            cen = lm.mean(1, keepdim=True)
            scale = 1 + 0.04 * torch.randn(m, 1, 1, generator=gen)
            lm = (lm - cen) * scale + cen + 1.2 * torch.randn(m, 1, 2, generator=gen)
            lm = lm + 0.6 * torch.randn(lm.shape, generator=gen)
            out = net(crop_regions(xb, lm))
            loss = (
                F.cross_entropy(out[:, :k], ct[idx], label_smoothing=0.05)
                + 3.0 * F.smooth_l1_loss(out[:, k : k + 7], rt[idx, :7], beta=0.05)
                + 2.0 * F.smooth_l1_loss(out[:, k + 7 : k + 9], rt[idx, 7:], beta=0.05)
                + 3.0 * F.smooth_l1_loss(out[:, k + 9 :], landmark_targets(lt[idx], lm), beta=0.02)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * m
        log(f"  epoch {ep + 1}/{epochs}: loss {tot / n:.4f} ({time.time() - t0:.0f} s)")
    net.eval()


def save_half(net, path: Path) -> None:
    from safetensors.torch import save

    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in net.state_dict().items()}
    with atomic_write(path, "wb") as fh:
        fh.write(save(state))


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def main(argv: list[str] | None = None) -> None:
    import torch

    from edtalk_cli.synthetic.judges import (
        EMOTION_WEIGHTS,
        FACTOR_WEIGHTS,
        N_EMOTION_OUT,
        N_FACTOR_OUT,
        CropNet,
        EmotionJudge,
        FactorJudge,
        JudgeNet,
        encode_emotion_targets,
        encode_factors,
    )

    ap = argparse.ArgumentParser(description="Train the synthetic-world judges.")
    ap.add_argument("--train", type=int, default=8000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=7, help="factor-judge epochs")
    ap.add_argument("--emotion-epochs", type=int, default=8, help="emotion-judge epochs")
    ap.add_argument(
        "--stage", choices=("all", "emotion"), default="all", help="'emotion': keep the factor judge"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=FACTOR_WEIGHTS.parent)
    ap.add_argument(
        "--cache", type=Path, default=None, help="npz cache of the rendered frames (reused if present)"
    )
    args = ap.parse_args(argv)
    command = "python -m edtalk_cli.synthetic.judges.train " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    def log(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.time()
    if args.cache is not None and args.cache.is_file():
        with np.load(args.cache) as z:
            tr = {k[3:]: z[k] for k in z.files if k.startswith("tr_")}
            te = {k[3:]: z[k] for k in z.files if k.startswith("te_")}
        if len(tr["images"]) != args.train or len(te["images"]) != args.test:
            raise SystemExit(f"cache {args.cache} holds other split sizes; delete it")
    else:
        tr = make_split(args.seed, args.train, 0, args.workers)
        te = make_split(args.seed, args.test, 1, args.workers)
        if args.cache is not None:
            np.savez(
                args.cache, **{f"tr_{k}": v for k, v in tr.items()}, **{f"te_{k}": v for k, v in te.items()}
            )
    assert not set(tr["identity_seed"].tolist()) & set(te["identity_seed"].tolist())
    log(f"{args.train} + {args.test} frames ready in {time.time() - t0:.0f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    fpath, epath = args.out / FACTOR_WEIGHTS.name, args.out / EMOTION_WEIGHTS.name
    rpath = args.out / "judges.json"
    old = json.loads(rpath.read_text()) if rpath.is_file() else {}
    scale = RENDER_SIZE / JUDGE_SIZE
    if args.stage == "all":
        log("factor judge")
        t1 = time.time()
        fnet = JudgeNet(N_FACTOR_OUT)
        y_tr = encode_factors(tr["landmarks"], tr["pose"], tr["mouth"], tr["expression"], RENDER_SIZE)
        train_net(fnet, tr["images"], y_tr, args.epochs, False, args.seed, log)
        save_half(fnet, fpath)
        factor_info = {"command": command, "epochs": args.epochs, "train_seconds": round(time.time() - t1)}
    else:
        prev = old.get("factor_judge") or {"command": old.get("command"), "epochs": old.get("epochs")}
        factor_info = {k: v for k, v in prev.items() if k != "metrics"}

    log("emotion judge")
    t1 = time.time()
    enet = CropNet(N_EMOTION_OUT)
    lm96 = ((tr["landmarks"] + 0.5) / scale - 0.5).astype(np.float32)
    y_reg = encode_emotion_targets(tr["mouth"], tr["expression"])
    train_crop(enet, tr["images"], lm96, tr["emotion"], y_reg, args.emotion_epochs, args.seed + 1, log)
    save_half(enet, epath)
    emotion_info = {
        "command": command,
        "epochs": args.emotion_epochs,
        "train_seconds": round(time.time() - t1),
    }

    # held-out evaluation with the saved (float16) weights on the stored 96 px frames; the
    # emotion judge crops with the factor judge's predicted landmarks, as in use
    imgs = te["images"].transpose(0, 2, 3, 1)
    fj, ej = FactorJudge(fpath), EmotionJudge(epath)
    pf = fj.predict(imgs)
    pe = ej.predict_all(imgs, pf["landmarks"])
    gt = (te["landmarks"] + 0.5) / scale - 0.5
    lm_err = np.linalg.norm(pf["landmarks"] - gt, axis=-1) * scale  # in 128 px render pixels
    lm_ref = np.linalg.norm(pe["landmarks"] - gt, axis=-1) * scale  # refined by the crops
    factor_info["metrics"] = {
        "landmark_error_px128_mean": float(lm_err.mean()),
        "mouth_landmark_error_px128_mean": float(lm_err[:, 48:68].mean()),
        "yaw_mae_deg": _mae(pf["pose"][:, 0], te["pose"][:, 0]),
        "pitch_mae_deg": _mae(pf["pose"][:, 1], te["pose"][:, 1]),
        "roll_mae_deg": _mae(pf["pose"][:, 2], te["pose"][:, 2]),
        "jaw_mae": _mae(pf["mouth"][:, 0], te["mouth"][:, 0]),
        "jaw_corr": float(np.corrcoef(pf["mouth"][:, 0], te["mouth"][:, 0])[0, 1]),
    }
    emo = pe["emotion"]
    emotion_info["metrics"] = {
        "landmark_error_px128_mean": float(lm_ref.mean()),
        "mouth_landmark_error_px128_mean": float(lm_ref[:, 48:68].mean()),
        "eye_brow_landmark_error_px128_mean": float(lm_ref[:, np.r_[17:27, 36:48]].mean()),
        "emotion_accuracy": float((emo == te["emotion"]).mean()),
        "emotion_accuracy_per_class": {
            e: float((emo[te["emotion"] == k] == k).mean()) for k, e in enumerate(EMOTIONS)
        },
        "jaw_mae": _mae(pe["mouth"][:, 0], te["mouth"][:, 0]),
        "jaw_corr": float(np.corrcoef(pe["mouth"][:, 0], te["mouth"][:, 0])[0, 1]),
        "lip_mae": _mae(pe["mouth"][:, 1], te["mouth"][:, 1]),
        "expression_mae": dict(
            zip(
                ("brow_raise", "brow_furrow", "smile", "smirk", "eye_open", "wrinkle", "blink"),
                (float(v) for v in np.abs(pe["expression"] - te["expression"]).mean(0)),
                strict=True,
            )
        ),
        "expression_mae_if_predicting_mean": float(
            np.abs(te["expression"] - te["expression"].mean(0)).mean()
        ),
    }
    report = {
        "data": {
            "train_frames": args.train,
            "heldout_frames": args.test,
            "heldout": "disjoint identities (odd identity seeds; training uses even), same factor ranges",
            "seed": args.seed,
            "render_size": RENDER_SIZE,
            "input_size": JUDGE_SIZE,
        },
        "parameters": {
            "factor_judge": sum(p.numel() for p in fj.net.parameters()),
            "emotion_judge": sum(p.numel() for p in ej.net.parameters()),
        },
        "factor_judge": factor_info,
        "emotion_judge": emotion_info,
    }
    with atomic_write(rpath) as fh:
        fh.write(json.dumps(report, indent=1))
    log(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
