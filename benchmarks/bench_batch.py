"""Batch throughput: the same jobs rendered by 1 worker, then by 2 workers (``edtalk render``).

Usage:
    python benchmarks/bench_batch.py [--jobs 6] [--frames 64] [--size 64] [--workers 1,2]
        [--devices cpu] [--precision fp32] [--batch-size N] [--repeats 1] [--out results.json]
        [--no-results-md]

Each configuration runs the real CLI in a fresh process (``--backend loky``, ``--force``, a fresh
content cache), so the timings include worker start-up and model loading, as a production batch
would. A warm-up run first fills the on-disk caches that are not ours (numba's for librosa).
Reported: wall time, jobs/hour, frames/s, and the scaling efficiency
``(T_1 / T_n) / n`` against the first configuration. The model is a random-init EDTalk of the
given size (``--size 64`` is the test model; 256 is the real size) with the official layout.

A section with the machine and the numbers is appended to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def parity_dir() -> Path:
    return Path(os.environ.get("EDTALK_PARITY_DIR", REPO.parent / "shared" / "parity")).resolve()


def make_weights(root: Path, size: int) -> Path:
    import torch

    from edtalk_cli.model import Audio2Lip, EDTalkGenerator, ModelConfig

    if size == 256:
        config = ModelConfig()
    else:
        config = ModelConfig(
            size=size,
            style_dim=64,
            channel_base=1024,
            channel_max=64,
            eem_hidden=16,
            audio_widths=(8, 8, 16, 16, 32),
        )
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save({"gen": EDTalkGenerator(config).state_dict()}, root / "EDTalk.pt")
    torch.save({"audio2lip": Audio2Lip(config).state_dict()}, root / "Audio2Lip.pt")
    presets = root / "predefined_exp_weights"
    presets.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ("neutral", "happy", "sad", "angry"):
        np.save(presets / f"{name}.npy", rng.normal(size=(1, 10)).astype(np.float32))
    return root


def make_jobs(root: Path, jobs: int, frames: int) -> Path:
    """A manifest of ``jobs`` jobs of ``frames`` frames each (speech tiled to length)."""
    import soundfile as sf
    from PIL import Image

    from edtalk_cli.audio import load_audio

    Image.open(parity_dir() / "source.png").save(root / "face.png")
    speech = load_audio(parity_dir() / "speech.wav")
    emotions = ["happy", "sad", "angry", "neutral"]
    lines = [
        "version: 1",
        "defaults:",
        "  source: {path: face.png, crop: none}",
        '  output: "out/{name}.mp4"',
        "jobs:",
    ]
    for i in range(jobs):
        wav = np.tile(np.roll(speech, 997 * i), frames // 32 + 1)[: frames * 640]
        sf.write(root / f"speech{i}.wav", wav, 16000)
        lines += [
            f"  - name: job{i}",
            f"    audio: speech{i}.wav",
            f"    emotion: {emotions[i % len(emotions)]}",
        ]
    manifest = root / "batch.yaml"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def run_cli(
    manifest: Path, weights: Path, devices: str, cache: Path, report: Path, extra: list[str] | None = None
) -> float:
    env = {**os.environ, "EDTALK_CACHE": str(cache), "EDTALK_PRESETS": str(manifest.parent / "none")}
    cmd = [sys.executable, "-m", "edtalk_cli", "render", str(manifest), "--weights", str(weights)]
    cmd += [
        "--devices",
        devices,
        "--backend",
        "loky",
        "--force",
        "-q",
        "--report",
        str(report),
        *(extra or []),
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=manifest.parent, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"edtalk render failed:\n{proc.stderr}")
    return wall


def machine() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        info["cpu"] = model
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    if hasattr(os, "getloadavg"):
        info["load_average_before"] = [round(v, 2) for v in os.getloadavg()]
    return info


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=64, choices=(64, 128, 256))
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, e.g. 1,2")
    parser.add_argument("--devices", default="cpu", help="device of every worker (cpu or cuda:N)")
    parser.add_argument(
        "--precision", default="fp32", help="edtalk render --precision (fp32, tf32, bf16, ...)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="edtalk render --batch-size (default: its own)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per configuration (best kept)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-results-md", action="store_true")
    args = parser.parse_args()

    counts = [int(n) for n in args.workers.split(",")]
    extra = ["--precision", args.precision]
    if args.batch_size:
        extra += ["--batch-size", str(args.batch_size)]
    results = []
    with tempfile.TemporaryDirectory(prefix="edtalk-bench-batch-") as tmp:
        root = Path(tmp)
        weights = make_weights(root / "weights", args.size)
        manifest = make_jobs(root, args.jobs, args.frames)
        info = machine()
        (root / "warm").mkdir()
        warm = make_jobs(root / "warm", 1, 16)
        run_cli(warm, weights, args.devices, root / "cache-warm", root / "warm.json", extra)
        for n in counts:
            devices = ",".join([args.devices] * n)
            walls = []
            for r in range(args.repeats):
                report = root / f"report-{n}-{r}.json"
                walls.append(run_cli(manifest, weights, devices, root / f"cache-{n}-{r}", report, extra))
                statuses = {j["status"] for j in json.loads(report.read_text())["jobs"]}
                assert statuses == {"done"}, statuses
            wall = min(walls)
            results.append(
                {
                    "workers": n,
                    "devices": devices,
                    "wall_s": round(wall, 2),
                    "jobs_per_hour": round(args.jobs / wall * 3600, 1),
                    "frames_per_s": round(args.jobs * args.frames / wall, 2),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    base = results[0]
    for row in results:
        speedup = base["wall_s"] / row["wall_s"]
        row["speedup"] = round(speedup, 3)
        row["efficiency"] = round(speedup / (row["workers"] / base["workers"]), 3)
    if hasattr(os, "getloadavg"):
        info["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    summary = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": info,
        "jobs": args.jobs,
        "frames_per_job": args.frames,
        "model_size": args.size,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "results": results,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    if not args.no_results_md:
        append_results(summary)


def append_results(summary: dict) -> None:
    """Append a section to benchmarks/RESULTS.md (other benchmarks write there too: never overwrite)."""
    m = summary["machine"]
    lines = [
        "",
        f"## Batch runner: 1 vs 2 workers ({summary['date'][:10]}, `benchmarks/bench_batch.py`)",
        "",
        f"Machine: {m.get('cpu', m['processor'])}, {m['cpu_count']} CPU cores, {m['platform']}, "
        f"Python {m['python']}, torch {m['torch']}. Load average before/after: "
        f"{m.get('load_average_before')} / {m.get('load_average_after')} (a shared machine: other work ran "
        "at the same time, so these numbers are noisy).",
        "",
        f"{summary['jobs']} jobs of {summary['frames_per_job']} frames (random-init EDTalk at "
        f"{summary['model_size']} px, crop none, emotion presets, H.264 + AAC output), `edtalk render "
        "--backend loky --force`, wall time of the whole command (start-up and model loads included).",
        "",
        "| workers | devices | wall (s) | jobs/hour | frames/s | speed-up | scaling efficiency |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in summary["results"]:
        lines.append(
            f"| {r['workers']} | {r['devices']} | {r['wall_s']} | {r['jobs_per_hour']} | {r['frames_per_s']} "
            f"| {r['speedup']}x | {r['efficiency'] * 100:.0f}% |"
        )
    path = REPO / "benchmarks" / "RESULTS.md"
    with open(path, "a") as fh:
        if path.stat().st_size == 0:
            fh.write("# Benchmark results\n")
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
