"""Face tracking of a dubbing source: full-resolution RGB frames against the tracking decode.

For each clip, the ``crop: auto`` tracking pass is run on full-resolution RGB frames (ffmpeg's
accurate YUV -> RGB) and then on the tracking decode of :func:`edtalk_cli.pipeline.faces.track_video`
(grey frames scaled with ``area`` so the longer side is at most ``max_side``) for each candidate
``max_side``, in one process; ``crop: box`` likewise (its crop squares). Reported per pass: CPU ms
per tracked frame (this process and its ffmpeg children: decode, detection, landmarks), and
against the RGB pass: landmark differences per frame (mean over the 68 points; mean and max over
frames) in frame px and in px of the 256-px crop, frames whose ``found`` differs, and the smoothed
alignment's crop centre (frame px) and scale differences. On the canvases, where the real 256-px
head is placed at a known position, every pass is also compared with an independent estimate: the
256-px clip's own RGB fit placed there ("vs placed fit": mean / max per frame, frame px). Run with
one thread::

    OMP_NUM_THREADS=1 python benchmarks/bench_tracking.py --frames 200
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import REAL_CLIP, make_dubbing_source

from edtalk_cli.pipeline import faces as pipeline_faces
from edtalk_cli.video import CropTransform, FaceDetector, iter_video_frames, probe_video, track_faces
from edtalk_cli.video.align import DEFAULT_SMOOTHING, similarity_params
from edtalk_cli.video.faces import FaceTrack

SIZE = 256
FPS = 25.0


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (the ffmpeg decoders)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def rgb_track(path: Path, crop: str, detector: FaceDetector, frames: int) -> FaceTrack:
    """The tracking pass on full-resolution RGB frames."""
    stream = iter_video_frames(path, fps=FPS)
    try:
        if crop == "auto":
            return pipeline_faces._track_aligned(islice(stream, frames), detector, path, 1)
        return track_faces(islice(stream, frames), detector, every=pipeline_faces.TRACK_EVERY, source=path)
    finally:
        stream.close()


def timed(fn):
    start = cpu_seconds()
    result = fn()
    return result, cpu_seconds() - start


def align_params(track: FaceTrack, shape: tuple[int, ...]) -> np.ndarray:
    transforms = pipeline_faces.aligned_track(track, shape, SIZE, DEFAULT_SMOOTHING, "<bench>")
    return np.stack([similarity_params(t) for t in transforms])  # (T, 4): log scale, angle, cx, cy


def box_squares(track: FaceTrack, shape: tuple[int, ...], detector: FaceDetector) -> np.ndarray:
    boxes = track.crop_boxes(shape, fixed_size=True, framing=detector.framing)
    return np.array([[t.x0, t.y0, t.side] for t in (CropTransform.from_box(b, shape, SIZE) for b in boxes)])


def placed_fit(clip: FaceTrack, height: int, width: int, frames: int) -> np.ndarray:
    """The 256-px clip's landmarks (T, 68, 2) placed as ``make_dubbing_source`` places the head: scaled
    to ``face`` px, at x = width // 3 + width // 10 * sin(t / 2) (ffmpeg's overlay truncates it to an
    even integer for 4:2:0 frames), y = height // 4."""
    face = 2 * round(height / 4)
    xs = np.array([int(width // 3 + (width // 10) * math.sin(k / FPS / 2)) & ~1 for k in range(frames)])
    placed = (clip.landmarks[:frames] + 0.5) * face / 256 - 0.5
    placed[:, :, 0] += xs[:, None]
    placed[:, :, 1] += height // 4
    return placed


def error_to(track: FaceTrack, placed: np.ndarray | None) -> str:
    if placed is None:
        return "n/a"
    per_frame = np.linalg.norm(track.landmarks - placed, axis=2).mean(axis=1)
    return f"{np.nanmean(per_frame):.2f} / {np.nanmax(per_frame):.2f}"


def compare_auto(new: FaceTrack, old: FaceTrack, shape: tuple[int, ...]) -> str:
    both = new.found & old.found
    per_frame = np.linalg.norm(new.landmarks[both] - old.landmarks[both], axis=2).mean(axis=1)
    p_old, p_new = align_params(old, shape), align_params(new, shape)
    crop_px = np.exp(p_old[both, 0])  # crop px per frame px
    in_crop = per_frame * crop_px
    centre = np.abs(p_new[:, 2:] - p_old[:, 2:]).max(axis=1)
    scale = np.abs(np.exp(p_new[:, 0] - p_old[:, 0]) - 1).max()
    return (
        f"{int((new.found != old.found).sum())} | {per_frame.mean():.2f} / {per_frame.max():.2f} "
        f"({in_crop.mean():.2f} / {in_crop.max():.2f}) | {centre.mean():.2f} / {centre.max():.2f} | "
        f"{100 * scale:.1f} %"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=200, help="frames tracked per clip")
    parser.add_argument("--max-sides", default="1280,960,640", help="candidate TRACK_MAX_SIDE values")
    parser.add_argument("--crop", default="auto,box", help="crop modes to measure")
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)
    detector = FaceDetector("dlib")
    sides = [int(v) for v in args.max_sides.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        seconds = args.frames / FPS + 1
        clips = [
            ("pose_source2.mp4 256 px", REAL_CLIP),
            ("800x450 canvas", make_dubbing_source(Path(tmp), seconds, 450)),
            ("1920x1080 canvas", make_dubbing_source(Path(tmp), seconds, 1080)),
        ]
        clip_fit = rgb_track(REAL_CLIP, "auto", detector, args.frames)  # (loads the models)
        print(
            "| clip | crop | tracking frames | CPU ms/frame | found differs | landmarks mean / max px "
            "(crop px) | smoothed centre mean / max px | scale max | vs placed fit |"
        )
        print("|---|---|---|---:|---:|---|---|---:|---|")
        for name, path in clips:
            info = probe_video(path)
            shape = (info.height, info.width, 3)
            n = min(args.frames, info.frames_at(FPS))
            placed = None if path == REAL_CLIP else placed_fit(clip_fit, info.height, info.width, n)
            for crop in args.crop.split(","):
                old, t_old = timed(partial(rgb_track, path, crop, detector, n))
                versus = error_to(old, placed) if crop == "auto" else ""
                frame = f"RGB {info.width}x{info.height}"
                print(f"| {name} ({n}) | {crop} | {frame} | {1e3 * t_old / n:.1f} | | | | | {versus} |")
                seen: set[tuple[int, int] | None] = set()
                for side in sides:
                    pipeline_faces.TRACK_MAX_SIDE = side
                    size = pipeline_faces.tracking_size(info.width, info.height)
                    if size in seen:
                        continue
                    seen.add(size)
                    new, t_new = timed(
                        partial(pipeline_faces.track_video, path, FPS, crop, detector, n, info)
                    )
                    w, h = size or (info.width, info.height)
                    if crop == "auto":
                        diff = f"{compare_auto(new, old, shape)} | {error_to(new, placed)}"
                    else:
                        sq = np.abs(box_squares(new, shape, detector) - box_squares(old, shape, detector))
                        found = int((new.found != old.found).sum())
                        diff = (
                            f"{found} | crop square x0/y0 mean {sq[:, :2].mean():.2f} / max "
                            f"{sq[:, :2].max():.0f}, side max {sq[:, 2].max():.0f} | | |"
                        )
                    print(f"| | | grey {w}x{h} | {1e3 * t_new / n:.1f} | {diff} |")


if __name__ == "__main__":
    main()
