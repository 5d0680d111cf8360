"""Speed of the synthetic world on one CPU core.

Usage: python benchmarks/bench_synthetic.py [--frames 300] [--sizes 64 128 256]

Prints a table and, last, one markdown line for benchmarks/RESULTS.md. The renderer
target is >= 100 frames/s at 128x128 on one core. Frames use a realistic mix of poses,
mouths and expressions over 8 identities (landmarks and masks included). CPU time
(process time) is reported next to wall time because the machine may be shared.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import contextlib
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edtalk_cli.synthetic import ClipSpec, Identity, Renderer, make_clip, synthesize, write_clip


def bench_render(size: int, n: int) -> tuple[float, float]:
    """(wall fps, cpu fps) of Renderer.render over n frames of varied factors."""
    clip = make_clip(ClipSpec(seed=1, identity_seed=1, n_frames=n, size=size, emotion="segments"))
    idents = [Identity.from_seed(k) for k in range(8)]
    r = Renderer(size)
    for k in range(8):  # warm the per-identity caches
        r.render(idents[k], *clip.factors(k))
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        r.render(idents[i % 8], *clip.factors(i))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / wall, n / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    args = ap.parse_args()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # pin to one core
    res = {}
    print("| size | wall frames/s | CPU frames/s |")
    print("|---|---|---|")
    for s in args.sizes:
        res[s] = bench_render(s, args.frames)
        print(f"| {s} | {res[s][0]:.0f} | {res[s][1]:.0f} |")

    # speech: seconds of audio per second of CPU
    c0 = time.process_time()
    for k in range(10):
        synthesize(k, 250)
    speech_rt = 10 * 10.0 / (time.process_time() - c0)
    print(f"speech synthesis: {speech_rt:.0f}x real time (CPU)")

    # a written clip (render + H.264 crf 12 + wav + npz), 4 s at 128 px
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_clip(ClipSpec(seed=2, identity_seed=2, n_frames=100, size=128), Path(tmp) / "clip")
        clip_s = time.perf_counter() - t0
    print(f"write one 4 s 128 px clip: {clip_s:.2f} s wall")

    cpu = platform.processor() or platform.machine()
    line = (
        f"| synthetic renderer (`bench_synthetic.py`, 1 core, {cpu}, numpy {np.__version__}) | "
        + ", ".join(f"{s}px: {res[s][1]:.0f} fps CPU / {res[s][0]:.0f} wall" for s in args.sizes)
        + f" | speech {speech_rt:.0f}x real time; 4 s 128 px clip written in {clip_s:.1f} s | "
        + ("meets" if res.get(128, (0, 0))[1] >= 100 else "MISSES")
        + " the 100 fps @128 target |"
    )
    print()
    print(line)


if __name__ == "__main__":
    main()
