"""A video's face tracking pass in spans on threads (``pipeline.faces.track_video(threads=N)``)
against one thread, side by side in one process, on real footage.

For each clip and crop mode, the tracking pass is run once per thread count (in turn, repeated
``--repeat`` times, the best wall time kept): wall ms and CPU ms (this process and its ffmpeg
children) per tracked frame, the speed-up over one thread, and whether the track (boxes, landmarks,
found) is identical to the one-thread track. Clips: the real 256 px talking head
``../shared/real/pose_source2.mp4`` and a 1920x1080 canvas with that head drifting across it
(``bench_memory.make_dubbing_source``, tracked on its 1280 px grey decode)::

    python benchmarks/bench_tracking_threads.py --frames 500 --threads 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import REAL_CLIP, make_dubbing_source

from edtalk_cli.pipeline.faces import track_video
from edtalk_cli.video import FaceDetector
from edtalk_cli.video.faces import FaceTrack


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _same(one: FaceTrack, other: FaceTrack) -> bool:
    landmarks = (one.landmarks is None and other.landmarks is None) or np.array_equal(
        one.landmarks, other.landmarks, equal_nan=True
    )
    return bool(
        np.array_equal(one.boxes, other.boxes) and np.array_equal(one.found, other.found) and landmarks
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--crops", default="auto,box")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    detector = FaceDetector("dlib")
    rows = []
    print(f"machine: {os.cpu_count()} cores; frames {args.frames}; best of {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        clips = {
            "pose_source2 256px": REAL_CLIP,
            "1080p canvas": make_dubbing_source(Path(tmp), args.frames / 25, 1080),
        }
        track_video(
            REAL_CLIP, 25, "auto", detector, 10, threads=max(counts)
        )  # load the models, start the threads' detectors
        for name, path in clips.items():
            for crop in args.crops.split(","):
                tracks: dict[int, FaceTrack] = {}
                timing: dict[int, tuple[float, float]] = {}
                for _ in range(args.repeat):
                    for threads in counts:
                        cpu, wall = _cpu_s(), time.perf_counter()
                        track = track_video(path, 25, crop, detector, args.frames, threads=threads)
                        wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
                        tracks[threads] = track
                        if threads not in timing or wall < timing[threads][0]:
                            timing[threads] = (wall, cpu)
                n = len(tracks[counts[0]])
                for threads in counts:
                    wall, cpu = timing[threads]
                    row = {
                        "clip": name,
                        "crop": crop,
                        "frames": n,
                        "threads": threads,
                        "wall_ms_per_frame": round(1e3 * wall / n, 2),
                        "cpu_ms_per_frame": round(1e3 * cpu / n, 2),
                        "speedup": round(timing[counts[0]][0] / wall, 2),
                        "same_track": _same(tracks[counts[0]], tracks[threads]),
                    }
                    rows.append(row)
                    print(
                        f"{name:20s} {crop:4s} {n:4d} frames, {threads} thread(s): {row['wall_ms_per_frame']:6.2f} wall ms"
                        f"/frame, {row['cpu_ms_per_frame']:6.2f} CPU ms/frame, x{row['speedup']:.2f}, "
                        f"same track: {row['same_track']}"
                    )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
