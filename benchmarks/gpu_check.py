"""GPU correctness: the engine on CUDA against the official float64 outputs, and the bundled
demo rendered on the GPU against the same demo rendered on the CPU.

Usage:
    python benchmarks/gpu_check.py [--device cuda] [--precisions fp64,fp32,tf32,bf16]
        [--render-precisions fp32,tf32,bf16] [--skip-parity] [--skip-render] [--out results.json]

* **parity**: every entry of ``shared/parity/expected.npz`` (official code, float64) recomputed
  on ``--device`` through the same loaders and engine as ``tests/test_parity.py``, once per
  precision. fp64 and fp32 are held to the fixtures' tolerances (fp64: max |diff| <= 1e-6;
  fp32: mean |diff| <= 1e-4 and under 0.1 % of values off by more than 2/255; audio: max
  <= 1e-4); tf32, bf16 and fp16 are reported only.
* **render**: ``edtalk render examples/demo.yaml`` in private copies of ``examples/``, once with
  ``--devices cpu`` (fp32, the reference) and once per ``--render-precisions`` with ``--devices
  DEVICE``. The mp4 files are decoded and compared frame by frame (uint8 levels), with their
  frame counts and audio/video durations; fp32 must match the CPU within H.264 noise.
* **decode**: whether ffmpeg decodes H.264 with NVDEC here (``video/hwdecode.py``: the probe
  and its reason), and, when it does, the real footage of ``shared/real`` decoded with
  ``-hwaccel cuda`` and in software (RGB native, RGB resampled to 30 fps and scaled, grey, I420),
  timed; the frames must be identical.

The exit status is 1 when a held check fails. Runs on a CPU too (``--device cpu``), which
only checks the script itself.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_engine import make_weights, parity_dir  # this folder is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]


def check_parity(device: str, precisions: list[str], workdir: Path) -> tuple[list[dict[str, Any]], bool]:
    """One row per (precision, output) with the error figures and whether the tolerance held."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_parity import IMAGE_KEYS, _official_outputs  # one implementation with the tests

    parity = parity_dir()
    expected = np.load(parity / "expected.npz")
    edtalk = make_weights(workdir / "standin")  # writes all three official-layout checkpoints
    checkpoints = {
        "edtalk": edtalk,
        "edtalk_lip_pose": edtalk.with_name("EDTalk_lip_pose.pt"),
        "audio2lip": edtalk.with_name("Audio2Lip.pt"),
    }
    rows, ok = [], True
    for precision in precisions:
        start = time.perf_counter()
        outputs = _official_outputs(parity, checkpoints, precision, device=device)
        seconds = time.perf_counter() - start
        for key in ["mel", "audio2lip", "audio2lip_smoothed", *IMAGE_KEYS]:
            diff = np.abs(outputs[key] - expected[key])
            row = {
                "precision": precision,
                "output": key,
                "max": float(diff.max()),
                "mean": float(diff.mean()),
                "off_2_255": float((diff > 2 / 255).mean()),
                "seconds": round(seconds, 2),
            }
            if precision == "fp64":
                row["pass"] = bool(row["max"] <= 1e-6)
            elif precision == "fp32" and key in IMAGE_KEYS:
                row["pass"] = bool(row["mean"] <= 1e-4 and row["off_2_255"] < 1e-3)
            elif precision == "fp32":
                row["pass"] = bool(row["max"] <= 1e-4)
            ok &= row.get("pass", True)
            rows.append(row)
    return rows, ok


def render_demo(device: str, workdir: Path, name: str, precision: str = "fp32") -> tuple[Path, float]:
    """Render a private copy (``workdir/name``) of examples/demo.yaml on ``device``; (mp4, wall s)."""
    copy = workdir / name
    shutil.copytree(REPO / "examples", copy, ignore=shutil.ignore_patterns("out"))
    cmd = [
        sys.executable,
        "-m",
        "edtalk_cli",
        "render",
        str(copy / "demo.yaml"),
        "--devices",
        device,
        "--precision",
        precision,
        "--quiet",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"render on {device} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return copy / "out" / "demo" / "demo.mp4", seconds


def check_render(device: str, precisions: list[str], workdir: Path) -> tuple[list[dict[str, Any]], bool]:
    """The demo on ``device`` in each precision against the CPU fp32 render (fp32 is held)."""
    from edtalk_cli.video.io import read_video
    from edtalk_cli.video.writer import probe_mp4

    ref_mp4, ref_s = render_demo("cpu", workdir, "reference-cpu")
    ref, ref_info = read_video(ref_mp4), probe_mp4(ref_mp4)
    rows, ok = [], True
    for precision in precisions:
        mp4, seconds = render_demo(device, workdir, f"under-test-{precision}", precision)
        frames, info = read_video(mp4), probe_mp4(mp4)
        row: dict[str, Any] = {
            "precision": precision,
            "frames": [len(ref), len(frames)],
            "wall_s": [round(ref_s, 1), round(seconds, 1)],
            "video_s": [ref_info["video"]["duration_s"], info["video"]["duration_s"]],
            "audio_s": [ref_info["audio"]["duration_s"], info["audio"]["duration_s"]],
        }
        same_length = len(ref) == len(frames) and row["audio_s"][0] == row["audio_s"][1]
        if len(ref) == len(frames):
            diff = np.abs(ref.astype(np.int16) - frames.astype(np.int16))
            row.update(
                mean_levels=float(diff.mean()),
                max_levels=int(diff.max()),
                over_8_levels=float((diff > 8).mean()),
            )
        if precision == "fp32":
            # same model, same inputs: H.264 of two nearly equal streams stays within a few levels
            row["pass"] = bool(same_length and row["mean_levels"] < 1.0 and row["over_8_levels"] < 1e-3)
            ok &= row["pass"]
        rows.append(row)
    return rows, ok


def check_decode(device: str) -> tuple[dict[str, Any], bool]:
    """NVDEC against software decoding on the real clips: identical frames, and the time of each."""
    from edtalk_cli.video.hwdecode import decode_accel, probe_hwdecode
    from edtalk_cli.video.io import iter_video_frames

    probe = probe_hwdecode("cuda")
    report: dict[str, Any] = {"available": probe.available, "reason": probe.reason}
    report["hwaccel"] = hwaccel = decode_accel(device)
    if hwaccel is None:
        return report, True
    rows, ok = [], True
    variants = {"rgb": {}, "rgb_30fps_scaled": {"fps": 30, "size": (192, 144)}, "gray": {"pix_fmt": "gray"}}
    variants["i420"] = {"pix_fmt": "yuv420p"}
    for clip in sorted((REPO.parent / "shared" / "real").glob("*.mp4")):
        for name, kwargs in variants.items():
            timed = {}
            for accel in (None, hwaccel):
                began = time.perf_counter()
                timed[accel] = np.stack(list(iter_video_frames(clip, hwaccel=accel, **kwargs)))
                timed[f"{accel}_s"] = round(time.perf_counter() - began, 3)
            same = bool(np.array_equal(timed[None], timed[hwaccel]))
            ok = ok and same
            rows.append({"clip": clip.name, "variant": name, "frames": len(timed[None]), "identical": same,
                         "software_s": timed["None_s"], "hwaccel_s": timed[f"{hwaccel}_s"]})  # fmt: skip
    report["clips"] = rows
    return report, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precisions", default="fp64,fp32,tf32,bf16")
    ap.add_argument("--render-precisions", default="fp32,tf32,bf16")
    ap.add_argument("--skip-parity", action="store_true")
    ap.add_argument("--skip-render", action="store_true")
    ap.add_argument("--skip-decode", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    report: dict[str, Any] = {
        "device": args.device,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.skip_parity:
            rows, parity_ok = check_parity(args.device, args.precisions.split(","), workdir)
            report["parity"], ok = rows, ok and parity_ok
            print(f"{'precision':9} {'output':30} {'max':>10} {'mean':>10} {'>2/255':>8}  pass")
            for r in rows:
                flag = {True: "yes", False: "NO"}.get(r.get("pass"), "-")
                print(
                    f"{r['precision']:9} {r['output']:30} {r['max']:10.2e} {r['mean']:10.2e} "
                    f"{r['off_2_255']:8.4%}  {flag}"
                )
        if not args.skip_render:
            rows, render_ok = check_render(args.device, args.render_precisions.split(","), workdir)
            report["render"], ok = rows, ok and render_ok
            for row in rows:
                print(f"demo render, cpu fp32 vs {args.device} {row['precision']}:", json.dumps(row))
        if not args.skip_decode:
            decode, decode_ok = check_decode(args.device)
            report["decode"], ok = decode, ok and decode_ok
            print("decode (NVDEC vs software):", json.dumps(decode))
    report["pass"] = ok
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print("ALL HELD CHECKS PASS" if ok else "SOME HELD CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
