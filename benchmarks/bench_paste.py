"""Paste-back at 1080p: the per-frame OpenCV path against the batched torch path, and their parity.

    python benchmarks/bench_paste.py                       # torch on the CPU
    python benchmarks/bench_paste.py --device cuda --batch 32 --out paste.json

The real photo (``../shared/real/uncrop_face.jpg``) is placed on a 1920x1080 canvas and the crop
transform turns it by 10 degrees; each region (face / lower / mouth, colour matching off and on)
pastes ``--frames`` 256 px faces. Reports ms per frame for both paths (CUDA timings synchronised,
upload and download included) and the largest difference between their frames.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from edtalk_cli.manifest.model import PasteBack
from edtalk_cli.pipeline.paste import FacePaster
from edtalk_cli.video import read_image
from edtalk_cli.video.align import AlignTransform, official_template, warp_to_crop

PHOTO = Path(__file__).resolve().parents[1] / ".." / "shared" / "real" / "uncrop_face.jpg"
SIZE = 256


def scene() -> tuple[np.ndarray, AlignTransform]:
    """A 1080p frame with the photo's face, and a 10-degree crop of 480 frame px around it."""
    photo = read_image(PHOTO)
    canvas = np.full((1080, 1920, 3), (70, 90, 110), np.uint8)
    h, w = photo.shape[:2]
    y0, x0 = (1080 - h) // 2 if h < 1080 else 0, 600
    canvas[y0 : y0 + min(h, 1080), x0 : x0 + w] = photo[: min(h, 1080)]
    angle, scale = np.deg2rad(10.0), SIZE / 480
    rot = scale * np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    centre = np.array([x0 + w / 2, y0 + h * 0.42])
    shift = np.full(2, (SIZE - 1) / 2) - rot @ centre
    return canvas, AlignTransform(np.column_stack([rot, shift]), SIZE, canvas.shape[:2])


def timed(fn, device: str, repeats: int) -> float:
    fn()  # warm-up (kernels, caches)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch and OpenCV)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import cv2

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    frame, transform = scene()
    crop = warp_to_crop(frame, transform)
    rng = np.random.default_rng(0)
    faces = np.stack(
        [np.clip(crop.astype(np.int16) + rng.integers(-12, 12, (1, 1, 3)), 0, 255).astype(np.uint8)]
        * args.batch
    )
    frames = [frame] * args.batch
    lm = official_template(SIZE)
    rows = []
    for region in ("face", "lower", "mouth"):
        for color_match in (False, True):
            options = PasteBack(region=region, color_match=color_match)
            cpu = FacePaster(options, SIZE, on_device=False)
            dev = FacePaster(options, SIZE, device=args.device, on_device=True)
            kwargs = {"landmarks": [lm] * args.batch, "references": [crop] * args.batch}
            want = cpu.paste_many(frames, faces, [transform] * args.batch, **kwargs)
            got = dev.paste_many(frames, faces, [transform] * args.batch, **kwargs)
            diff = np.abs(np.stack(want).astype(np.int16) - np.stack(got))
            cpu_s = timed(
                lambda c=cpu, k=kwargs: c.paste_many(frames, faces, [transform] * args.batch, **k),
                "cpu",
                args.repeats,
            )
            dev_s = timed(
                lambda d=dev, k=kwargs: d.paste_many(frames, faces, [transform] * args.batch, **k),
                args.device,
                args.repeats,
            )
            row = {
                "region": region,
                "color_match": color_match,
                "opencv_ms_per_frame": round(1000 * cpu_s / args.batch, 2),
                "torch_ms_per_frame": round(1000 * dev_s / args.batch, 2),
                "max_abs_diff": int(diff.max()),
                "fraction_diff_gt_1": float((diff > 1).mean()),
            }
            rows.append(row)
            print(json.dumps(row))
    result = {
        "device": args.device if not args.device.startswith("cuda") else torch.cuda.get_device_name(),
        "frame": "1920x1080",
        "batch": args.batch,
        "threads": args.threads,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
