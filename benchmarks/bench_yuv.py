"""CPU cost per output frame of a dubbing job: the RGB path against the I420 path.

The RGB path decodes every source frame to RGB (ffmpeg's accurate swscale conversion), pastes the
face into the RGB frame and has the encoder convert it back to yuv420p; the I420 path
(``JobRenderer.render`` of an eligible job) decodes the source's own planes, converts only the
face's box and hands the planes to the encoder. Both render the same job (a ``--height``p source
made by ``bench_memory.make_dubbing_source``, ``crop: auto``, paste-back, a small random-init
model: the model's cost is the same on both paths) in this one process, one after the other.
CPU time counts this process and its ffmpeg children (decoders, encoder). Also times the
full-range -> tv-range conversion of a frame's planes: ``Colorimetry.to_output`` (OpenCV)
against ffmpeg's ``scale=out_range=tv``.

    OMP_NUM_THREADS=1 python benchmarks/bench_yuv.py [--seconds 4] [--height 1080] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_memory import make_dubbing_job


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _measure(run) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``run()``."""
    cpu, wall = _cpu(), time.perf_counter()
    run()
    return _cpu() - cpu, time.perf_counter() - wall


def range_conversion_ms(height: int, repeat: int = 100) -> dict[str, float]:
    """ms per frame of pc -> tv range on (height, 16:9) I420 planes: LUT here vs ffmpeg's scale."""
    import numpy as np

    from edtalk_cli.video._ffmpeg import ffmpeg_exe
    from edtalk_cli.video.yuv import Colorimetry

    width = 2 * round(height * 8 / 9)
    rng = np.random.default_rng(0)
    planes = rng.integers(0, 256, (height * 3 // 2, width), dtype=np.uint8)
    colorimetry = Colorimetry("bt709", full_range=True)
    _, wall = _measure(lambda: [colorimetry.to_output(planes) for _ in range(repeat)])  # one thread
    _, copy_wall = _measure(lambda: [planes.copy() for _ in range(repeat)])
    raw = planes.tobytes() * repeat

    def ffmpeg(vf: list[str]) -> None:
        cmd = [
            ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuvj420p",
            "-s",
            f"{width}x{height}",
        ]
        cmd += ["-i", "pipe:0", *vf, "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"]
        subprocess.run(cmd, input=raw, stdout=subprocess.DEVNULL, check=True)

    scaled, _ = _measure(
        lambda: ffmpeg(["-vf", "scale=out_range=tv", "-threads", "1", "-filter_threads", "1"])
    )
    passed, _ = _measure(lambda: ffmpeg(["-vf", "setparams=range=pc"]))
    return {
        "opencv_ms": 1e3 * wall / repeat,
        "copy_ms": 1e3 * copy_wall / repeat,
        "ffmpeg_scale_ms": 1e3 * (scaled - passed) / repeat,  # over a pass-through of the same pipe
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--size", type=int, default=64, help="model crop size of the random-init model")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each path (the lowest is kept)")
    args = parser.parse_args()

    from edtalk_cli.manifest import load_manifest
    from edtalk_cli.pipeline.faces import VideoFaceSource
    from edtalk_cli.pipeline.options import RenderOptions
    from edtalk_cli.pipeline.render import JobRenderer
    from edtalk_cli.video import probe_video, write_mp4
    from edtalk_cli.weights.bundle import ModelBundle

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest, weights = make_dubbing_job(root, args.seconds, args.height, args.size)
        job = load_manifest(manifest).jobs[0]
        info = probe_video(job.source.path)
        renderer = JobRenderer(ModelBundle.from_dir(weights), options=RenderOptions(batch_size=1))

        def tracking() -> None:
            VideoFaceSource(job.source.path, fps=job.fps, size=renderer.engine.size, crop=job.source.crop)

        def rgb_path() -> None:
            produced = renderer.frames(job)
            assert produced.pixel_format == "rgb24"
            write_mp4(produced.images, root / "rgb.mp4", job.fps, job.audio, n_frames=produced.count,
                      crf=job.encode.crf, preset=job.encode.preset)  # fmt: skip

        frames = 0

        def i420_path() -> None:
            nonlocal frames
            frames = renderer.render(job).frames

        i420_path()  # warm-up: dlib, the model, the page cache
        results: dict[str, list[tuple[float, float]]] = {"tracking": [], "rgb": [], "i420": []}
        for _ in range(args.repeat):
            results["tracking"].append(_measure(tracking))
            results["rgb"].append(_measure(rgb_path))
            results["i420"].append(_measure(i420_path))
        best = {name: min(runs) for name, runs in results.items()}
        per_frame = {name: 1e3 * cpu / frames for name, (cpu, _) in best.items()}
        report = {
            "machine": platform.processor() or platform.machine(),
            "threads": os.environ.get("OMP_NUM_THREADS"),
            "source": f"{info.width}x{info.height} {info.pix_fmt}",
            "frames": frames,
            "cpu_ms_per_frame": per_frame,
            "cpu_ms_per_frame_without_tracking": {
                name: per_frame[name] - per_frame["tracking"] for name in ("rgb", "i420")
            },
            "i420_over_rgb": per_frame["i420"] / per_frame["rgb"],
            "wall_s": {name: wall for name, (_, wall) in best.items()},
            "range_conversion": range_conversion_ms(args.height),
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
