"""Issue 29's GPU targets, each measured as one whole `edtalk render` command in a fresh process.

Usage:
    python benchmarks/bench_targets.py [--device cuda] [--jobs 8] [--frames 500] [--seconds 20]
        [--photo-size 256] [--precisions fp32,tf32] [--targets photo,dub1080] [--weights DIR]
        [--no-warmup] [--out results.json]
    python benchmarks/bench_targets.py --device cpu --jobs 2 --frames 16 --seconds 2   # dry run

Targets (frames/s of the whole command: start-up, model loads, audio, face detection, crop,
model, paste-back, encode and mux included):

* ``photo``: ``--jobs`` photo jobs of ``--frames`` frames each, the real photo
  ``../shared/real/uncrop_face.jpg`` centre-cropped and resized to ``--photo-size`` px, at >= 1000;
* ``dub1080``: one dubbing job of ``--seconds``, a 1920x1080 video with the real talking head of
  ``../shared/real/pose_source2.mp4`` moving across it (``bench_memory.make_dubbing_source``), at >= 200.
* ``dub1080_cpu_blend`` (a variant, not a target of its own): the same job with
  ``EDTALK_PASTE_ON_DEVICE=0``, blended frame by frame with OpenCV on the CPU instead of in torch
  batches on the device (both on the source's I420 planes), to see which a GPU machine should take.

The model is the official-layout stand-in (256 px, ``$EDTALK_PARITY_DIR/weights.py``) unless
``--weights`` names a weights directory. The speech is the real ``../shared/real/mouth_source.wav``,
tiled to length. Every command runs with the defaults a user gets on the device (``--devices``
only; batch size, backend, workers, encode codec ``auto``, a fresh content cache), once per
precision: ``fp32`` is the default (no ``--precision`` flag); the others add ``--precision``.
Default precisions: ``fp32,tf32`` on CUDA, ``fp32`` elsewhere. A short warm-up render first fills
the disk caches that a user's second run would find warm.

Prints the machine (GPU name, torch, ffmpeg and whether it can open h264_nvenc), then one line per
target and precision: ``TARGET <name> <precision>: <frames/s> ... >= <target>: PASS|FAIL`` with the
encoder that wrote the mp4s (from the JSON report), the device and batch size. Exits 1 when a
command failed (the other measurements still run), else 0, whether or not the targets are met.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
REAL = BENCH.parent.parent / "shared" / "real"
sys.path.insert(0, str(BENCH))

import bench_engine  # noqa: E402  (make_weights, machine_line)
from bench_jobs import make_photo  # noqa: E402
from bench_memory import make_dubbing_source  # noqa: E402

TARGETS = {"photo": 1000.0, "dub1080": 200.0}  # issue 29: frames/s of the whole command on a GPU
# variants measured beside a target: the same manifest under other environment settings
VARIANTS = {
    # the dubbing job blended with OpenCV on the CPU, against the default torch paste-back on the
    # device (both on the source's I420 planes)
    "dub1080_cpu_blend": ("dub1080", {"EDTALK_PASTE_ON_DEVICE": "0"}),
}
FPS = 25  # the frame rate of every job (the library's default output rate)
EMOTIONS = ("happy", "sad", "angry", "neutral")


def make_speech(path: Path, frames: int, shift: int = 0) -> Path:
    """The real speech, rolled by ``shift`` samples and tiled to cover ``frames`` frames (16 kHz mono)."""
    import soundfile as sf

    wav, rate = sf.read(REAL / "mouth_source.wav", dtype="float32")
    samples = int(np.ceil(frames / FPS * rate))
    sf.write(path, np.resize(np.roll(wav, shift), samples), rate)
    return path


def photo_manifest(root: Path, jobs: int, frames: int, size: int) -> Path:
    """``jobs`` photo jobs of ``frames`` frames on the real photo at ``size`` px, one emotion each."""
    photo = make_photo(root, size, size)
    lines = ["version: 1", "defaults:", f"  source: {photo.name}", '  output: "out/{name}.mp4"', "jobs:"]
    for i in range(jobs):
        speech = make_speech(root / f"speech{i}.wav", frames, shift=997 * i)
        lines += [f"  - name: photo{i}", f"    audio: {speech.name}", f"    emotion: {EMOTIONS[i % 4]}"]
    manifest = root / "photo.yaml"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def dubbing_manifest(root: Path, seconds: float) -> Path:
    """One dubbing job: the 1080p moving-face video as the source, as long as the speech."""
    source = make_dubbing_source(root, seconds, 1080)
    speech = make_speech(root / "dub_speech.wav", round(seconds * FPS))
    manifest = root / "dub1080.yaml"
    manifest.write_text(
        f"version: 1\njobs:\n  - name: dub1080\n    source: {source.name}\n"
        f"    audio: {speech.name}\n    output: out/dub1080.mp4\n"
    )
    return manifest


def render(
    manifest: Path,
    weights: Path,
    device: str,
    precision: str,
    cache: Path,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run `edtalk render` on ``manifest`` in a fresh process (``extra_env`` added to its environment);
    the wall time and the report's jobs."""
    report = cache.with_suffix(".report.json")
    cmd = [sys.executable, "-m", "edtalk_cli", "render", str(manifest), "--weights", str(weights)]
    cmd += ["--devices", device, "--force", "-q", "--report", str(report)]
    if precision != "fp32":
        cmd += ["--precision", precision]
    env = {**os.environ, "EDTALK_CACHE": str(cache), **(extra_env or {})}
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=manifest.parent, capture_output=True, text=True)
    wall = time.perf_counter() - started
    jobs = json.loads(report.read_text())["jobs"] if report.is_file() else []
    if proc.returncode != 0 or not jobs or any(j["status"] != "done" for j in jobs):
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"`edtalk render {manifest.name}` exited {proc.returncode}:\n{tail}")
    return {"wall_s": wall, "jobs": jobs}


def describe_output(job: dict[str, Any]) -> str:
    """The written mp4's stream: codec, size and frame count (from its header, not decoded)."""
    from edtalk_cli.video import probe_video

    info = probe_video(job["output"])
    return f"{info.codec} {info.width}x{info.height}, {info.n_frames} frames"


def measure(
    name: str, manifest: Path, weights: Path, device: str, precision: str, cache: Path
) -> dict[str, Any]:
    """One target (or variant, :data:`VARIANTS`) at one precision: frames/s of the whole command
    against the target."""
    target, extra_env = VARIANTS.get(name, (name, None))
    run = render(manifest, weights, device, precision, cache, extra_env)
    jobs = run["jobs"]
    frames = sum(int(j["frames"]) for j in jobs)
    fps = frames / run["wall_s"]
    return {
        "target": name,
        "precision": precision,
        "jobs": len(jobs),
        "frames": frames,
        "wall_s": round(run["wall_s"], 3),
        "frames_per_s": round(fps, 2),
        "goal_frames_per_s": TARGETS[target],
        "passed": fps >= TARGETS[target],
        "job_render_s": round(sum(float(j["wall_s"]) for j in jobs), 3),  # inside the workers
        "encoders": sorted({str(j.get("encoder")) for j in jobs}),
        "devices": sorted({str(j.get("device")) for j in jobs}),
        "batch_sizes": sorted({j.get("batch_size") for j in jobs}, key=str),
        "frames_without_face": sum(int(j.get("frames_without_face") or 0) for j in jobs),
        "output": describe_output(jobs[0]),
    }


def target_line(row: dict[str, Any], label: str) -> str:
    if "error" in row:
        return f"TARGET {label} {row['precision']}: ERROR ({row['error'].splitlines()[0]})"
    verdict = "PASS" if row["passed"] else "FAIL"
    precision = row["precision"] + (" (default)" if row["precision"] == "fp32" else "")
    return (
        f"TARGET {label} {precision}: {row['frames_per_s']:.1f} frames/s "
        f"({row['frames']} frames of {row['jobs']} job(s) in {row['wall_s']:.2f} s, whole command; "
        f"{row['job_render_s']:.2f} s inside the jobs) >= {row['goal_frames_per_s']:.0f}: {verdict}"
        f" | encoder {','.join(row['encoders'])}, device {','.join(row['devices'])}, "
        f"batch {','.join(str(b) for b in row['batch_sizes'])}, output {row['output']}, "
        f"frames without a face {row['frames_without_face']}"
    )


def environment(device: str) -> dict[str, str]:
    """The machine line, the ffmpeg binary's version, and whether it can open h264_nvenc here."""
    from edtalk_cli.video._ffmpeg import ffmpeg_exe, run_ffmpeg
    from edtalk_cli.video.encoders import choose_encoder, probe_encoder

    version = run_ffmpeg(["-version"]).stdout.decode("utf-8", errors="replace").splitlines()
    nvenc = probe_encoder("h264_nvenc")
    cuda = device.startswith("cuda")
    return {
        "machine": bench_engine.machine_line("cuda" if cuda else device, torch_threads()),
        "ffmpeg": f"{version[0] if version else '?'} ({ffmpeg_exe()})",
        "h264_nvenc": "available" if nvenc.available else f"not available: {nvenc.reason}",
        "auto_encoder": choose_encoder("auto", cuda=cuda).encoder,
    }


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="edtalk render --devices (cuda, cuda:0, cpu)")
    parser.add_argument("--jobs", type=int, default=8, help="photo jobs in the batch")
    parser.add_argument("--frames", type=int, default=500, help="frames per photo job")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the dubbing job")
    parser.add_argument("--photo-size", type=int, default=256, help="side of the square photo in px")
    parser.add_argument("--precisions", help="comma-separated (default: fp32,tf32 on CUDA, fp32 elsewhere)")
    choices = (*TARGETS, *VARIANTS)
    parser.add_argument("--targets", default=",".join(choices), help=f"some of {','.join(choices)}")
    parser.add_argument("--weights", type=Path, help="a weights directory (default: the 256 px stand-in)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up render")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    precisions = (args.precisions or ("fp32,tf32" if cuda else "fp32")).split(",")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - set(choices)
    if unknown:
        parser.error(f"--targets: unknown {', '.join(sorted(unknown))}; choose from {', '.join(choices)}")

    env = environment(args.device)
    for key, value in env.items():
        print(f"{key}: {value}", flush=True)
    rows: list[dict[str, Any]] = []
    labels = {
        "photo": f"photo {args.photo_size}px x{args.jobs}x{args.frames}",
        "dub1080": f"dub1080 {args.seconds:g}s",
        "dub1080_cpu_blend": f"dub1080 {args.seconds:g}s, blended on the CPU",
    }
    with tempfile.TemporaryDirectory(prefix="edtalk-bench-targets-") as tmp:
        root = Path(tmp)
        weights = bench_engine.weights_dir_or_standin(args.weights, root)
        manifests = {}
        for name in targets:
            folder = root / name
            folder.mkdir()
            if name == "photo":
                manifests[name] = photo_manifest(folder, args.jobs, args.frames, args.photo_size)
            elif VARIANTS.get(name, (name,))[0] == "dub1080":
                manifests[name] = dubbing_manifest(folder, args.seconds)
        if not args.no_warmup:
            (root / "warmup").mkdir()
            warm = photo_manifest(root / "warmup", 1, 16, args.photo_size)
            started = time.perf_counter()
            try:
                render(warm, weights, args.device, precisions[0], root / "cache-warmup")
            except RuntimeError as exc:
                print(f"warm-up failed: {exc}", flush=True)
            print(f"warm-up: {time.perf_counter() - started:.1f} s", flush=True)
        for precision in precisions:  # the default precision's lines first
            for name in targets:
                cache = root / f"cache-{name}-{precision}"
                try:
                    row = measure(name, manifests[name], weights, args.device, precision, cache)
                except (RuntimeError, OSError, ValueError) as exc:
                    row = {"target": name, "precision": precision, "error": str(exc)}
                rows.append(row)
                print(target_line(row, labels[name]), flush=True)
    failed = [r for r in rows if "error" in r]
    for row in failed:
        print(f"\n{row['target']} {row['precision']} failed:\n{row['error']}")
    if args.out:
        args.out.write_text(json.dumps({**env, "results": rows}, indent=1))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
