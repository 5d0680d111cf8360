"""Whole jobs side by side: CPU time per output frame, broken down by stage.

Usage:
    python benchmarks/bench_jobs.py [--frames 12] [--threads 1] [--batch-size N] [--weights DIR]
        [--jobs photo512,photo1080,dub450,dub1080[,dub1080vf]] [--official-full] [--out results.json]

In one process, with the same model (the official-layout stand-in weights of
``$EDTALK_PARITY_DIR/weights.py``, 256 px, unless ``--weights`` names a weights directory), it runs

* ``official loop``: the official demo's per-frame loop (``bench_engine.official_loop``), the model alone,
  the baseline of every ratio; ``--official-full`` adds it with the EEM branch the official code
  computes and discards (what the real demo costs; ``model.dec`` skips that branch);
* ``model only``: :class:`RenderEngine` with the source encoded once and a constant pose
  (``bench_engine.engine_static``), the model alone;
* ``dubbing, model only``: the engine's per-frame-source path (one encoder pass per frame serving
  both the frame's coefficients and its rendering), the model alone: the floor of a dubbing job;
* whole ``edtalk render`` jobs through :class:`JobRenderer` (crop: auto, paste-back, x264 at the
  default preset, audio muxed): a photo at 512x512 and at 1920x1080 (the real photo of
  ``../shared/real/uncrop_face.jpg``), and dubbing a 450x450 and a 1920x1080 video (the real
  talking head of ``../shared/real/pose_source2.mp4``, the 1080p one moving across a larger frame);
  ``dub1080vf`` (only when named) is the 1080p dubbing job encoded with x264 ``veryfast``.

Each job's CPU time (this process and its ffmpeg children) is split by stage by wrapping the
library's functions in this process only: decode (Python side, plus the ffmpeg decoders' CPU from
a calibration pass per kind of decode: the tracking pass's grey frames, the render pass's RGB or
I420 frames), detection/landmarks, crop, model (encoder, decoder, Audio2Lip, tensor <-> uint8),
audio features, paste-back, colour (I420 dubbing: the face box to RGB and back, range mapping),
encode (the x264 child's CPU and the pipe) and other (the rest). Start-up (imports and loading the weights in a fresh process) is
measured once, in a subprocess, and reported next to ``edtalk --help``. A warm-up job runs first.
Defaults keep the run under about 5 minutes on a 2-core CPU; ``--frames`` makes it steadier.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edtalk_cli.defaults import CPU_BATCH_SIZE

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
REAL = REPO.parent / "shared" / "real"
sys.path.insert(0, str(BENCH))

import bench_engine  # noqa: E402  (the official loop and the static engine, reused)
from bench_memory import make_dubbing_source  # noqa: E402

STAGES = (
    "decode",
    "detection/landmarks",
    "crop",
    "model",
    "audio",
    "paste-back",
    "colour",
    "encode",
    "other",
)
JOBS = ("photo512", "photo1080", "dub450", "dub1080")
# jobs run only when named in --jobs: the 1080p dubbing job encoded with x264 `veryfast`
EXTRA_JOBS = ("dub1080vf",)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class StageTimer(bench_engine.ExclusiveTimer):
    """Exclusive process-CPU time per stage; counts the frames each kind of video decode yields
    (a kind: the file, pixel format, size and scaling flags asked of ``iter_video_frames``)."""

    def __init__(self) -> None:
        super().__init__(sync=lambda: None, clock=time.process_time)
        self.decoded: dict[tuple, int] = defaultdict(int)

    def reset(self) -> None:
        self.totals = defaultdict(float)
        self.decoded = defaultdict(int)

    def timed_iterator(self, iterator: Iterator[Any], kind: tuple) -> Iterator[Any]:
        while True:
            with self.span("decode"):
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            self.decoded[kind] += 1
            yield item


def instrument(timer: StageTimer) -> None:
    """Wrap the pipeline's stages (in this process only; nothing is written to the package)."""
    from edtalk_cli.model.audio2lip import Audio2Lip
    from edtalk_cli.model.generator import _EDTalkBase
    from edtalk_cli.pipeline import engine, faces, paste, render

    for name in ("read_image",):
        timer.wrap(faces, name, "decode")
    for name in ("track_faces", "track_landmarks", "find_face_landmarks", "find_face"):
        timer.wrap(faces, name, "detection/landmarks")
    timer.wrap(paste.FacePaster, "whole_frame_landmarks", "detection/landmarks")
    for name in ("crop_image", "crop_face", "resize_square"):
        timer.wrap(faces, name, "crop")
    for name in ("encode_source", "encode_latent", "synthesize", "motion_coeffs", "motion_bases"):
        timer.wrap(_EDTalkBase, name, "model")
    timer.wrap(Audio2Lip, "forward", "model")
    timer.wrap(engine, "tensor_to_images", "model")
    timer.wrap(render, "tensor_to_images", "model")
    timer.wrap(render, "audio_features", "audio")
    timer.wrap(paste.FacePaster, "paste", "paste-back")
    timer.wrap(render, "resize_to_frame", "paste-back")
    timer.wrap(render, "write_mp4", "encode")
    for owner in (paste, faces):  # I420 dubbing: the face box to RGB and back
        for name in ("to_rgb", "write_rgb"):
            if hasattr(owner, name):
                timer.wrap(owner, name, "colour")
    from edtalk_cli.video.yuv import Colorimetry

    timer.wrap(Colorimetry, "to_output", "colour")
    import edtalk_cli.video as video

    decode = video.iter_video_frames  # the pipeline imports it from the package at call time

    def counted(path, *args, **kwargs):
        kind = decode_kind(path, kwargs)
        return timer.timed_iterator(decode(path, *args, **kwargs), kind)

    video.iter_video_frames = counted


def decode_kind(path: Path, kwargs: dict[str, Any]) -> tuple:
    """What a video decode's ffmpeg cost depends on: the file, pixel format, size and scaling."""
    return (str(path), kwargs.get("pix_fmt", "rgb24"), kwargs.get("size"), kwargs.get("scale_flags"))


# ----------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------
def make_photo(root: Path, width: int, height: int) -> Path:
    """The real photo: centre-cropped to a square for a square frame, else placed in a larger frame."""
    from PIL import Image

    photo = Image.open(REAL / "uncrop_face.jpg").convert("RGB")  # 840x1024
    if width == height:
        side = min(photo.size)
        photo = photo.crop((0, (photo.height - side) // 2, side, (photo.height + side) // 2))
        image = photo.resize((width, height), Image.BICUBIC)
    else:
        scale = 0.8 * height / photo.height
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC)
        image = Image.new("RGB", (width, height), (80, 96, 112))
        image.paste(photo, (width // 3, (height - photo.height) // 2))
    path = root / f"photo_{width}x{height}.png"
    image.save(path)
    return path


def make_square_clip(root: Path, seconds: float, side: int) -> Path:
    import imageio_ffmpeg

    path = root / f"actor_{side}.mp4"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(REAL / "pose_source2.mp4")]
    cmd += ["-t", f"{seconds}", "-vf", f"fps=25,scale={side}:{side}:flags=bicubic", "-an"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", str(path)]
    subprocess.run(cmd, check=True)
    return path


def make_audio(root: Path, frames: int) -> Path:
    import soundfile as sf

    wav, rate = sf.read(REAL / "mouth_source.wav", dtype="float32")
    path = root / f"speech_{frames}.wav"
    sf.write(path, wav[: int(np.ceil(frames / 25 * rate)) + rate // 100], rate)
    return path


def make_job(root: Path, name: str, source: Path, audio: Path, preset: str | None = None):
    from edtalk_cli.manifest import load_manifest

    manifest = root / f"{name}.yaml"
    encode = f"    encode: {{preset: {preset}}}\n" if preset else ""
    manifest.write_text(
        f"version: 1\njobs:\n  - name: {name}\n    source: {source.name}\n"
        f"    audio: {audio.name}\n    output: out/{name}.mp4\n{encode}"
    )
    return load_manifest(manifest).jobs[0]


def decode_cost(kind: tuple) -> float:
    """CPU s per frame of the ffmpeg decoder (child process) streaming one decode ``kind`` at 25 fps."""
    from edtalk_cli.video.io import iter_video_frames

    path, pix_fmt, size, flags = kind
    kwargs: dict[str, Any] = {"pix_fmt": pix_fmt, "size": size}
    if flags is not None:
        kwargs["scale_flags"] = flags
    before = children_cpu()
    count = sum(1 for _ in iter_video_frames(path, fps=25, **kwargs))
    return (children_cpu() - before) / max(count, 1)


# ----------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------
def startup_cpu(weights: Path) -> dict[str, float]:
    """CPU s of a fresh process: `edtalk --help`, and importing the renderer + loading the weights."""
    load = (
        "import edtalk_cli.pipeline.render\n"
        "from edtalk_cli.weights.bundle import ModelBundle\n"
        f"ModelBundle.from_dir({str(weights)!r})\n"
    )
    out = {}
    for label, args in (
        ("edtalk --help", ["-m", "edtalk_cli", "--help"]),
        ("imports + load weights", ["-c", load]),
    ):
        before = children_cpu()
        subprocess.run([sys.executable, *args], check=True, capture_output=True, cwd=REPO)
        out[label] = children_cpu() - before
    return out


def model_rows(
    weights_dir: Path, frames: int, threads: int, batch_size: int, official_full: bool = False
) -> list[dict[str, Any]]:
    """CPU ms per frame of the official per-frame loop and of the engine alone; ``official_full``
    adds the official loop with the EEM branch the official code computes and discards."""
    import torch
    from PIL import Image

    from edtalk_cli.pipeline.engine import RenderEngine
    from edtalk_cli.weights import load_model

    torch.set_num_threads(threads)
    model, _ = load_model(weights_dir / "EDTalk.pt", "edtalk", dtype=torch.float32)
    inputs = bench_engine.load_inputs(bench_engine.parity_dir(), frames)
    size = model.config.size
    if inputs["source"].shape[0] != size:  # a model of another size: the fixtures resized to it

        def fit(image):
            return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))

        inputs["source"] = fit(inputs["source"])
        inputs["pose_frames"] = [fit(f) for f in inputs["pose_frames"]]
    rows = []
    for label, run in (
        (
            "official loop (model only)",
            lambda: bench_engine.official_loop(model, inputs, frames, torch.device("cpu")),
        ),
        (
            "engine (model only)",
            lambda: bench_engine.engine_static(RenderEngine(model, batch_size=batch_size), inputs, frames),
        ),
        (
            "dubbing, model only",
            lambda: engine_dubbing(RenderEngine(model, batch_size=batch_size), inputs, frames),
        ),
        *(
            [
                (
                    "official loop with its dead EEM branch",
                    lambda: bench_engine.official_loop(
                        model, inputs, frames, torch.device("cpu"), dead_branch=True
                    ),
                )
            ]
            if official_full
            else []
        ),
    ):
        for _ in run():  # warm-up
            break
        start = time.process_time()
        count = sum(1 for _ in run())
        rows.append({"job": label, "frames": count, "total": (time.process_time() - start) / count * 1000})
    return rows


def engine_dubbing(engine, inputs: dict[str, Any], frames: int) -> Iterator[np.ndarray]:
    """Every output frame has its own source (the pose clip's frames): encoded once, its coefficients
    read from that encoding with the mouth replaced, then rendered from the same encoding."""
    import torch

    from edtalk_cli.pipeline.engine import tensor_to_images

    sources = np.stack(inputs["pose_frames"][:frames])
    mouth = torch.as_tensor(np.asarray(inputs["mouth"][:frames]), dtype=engine.dtype)
    lips = engine.model.mouth_slice
    for start in range(0, frames, engine.batch_size):
        encoding = engine.encode_frames(sources[start : start + engine.batch_size])
        coeffs = engine.frame_coefficients(encoding).clone()
        coeffs[:, lips] = mouth[start : start + len(coeffs)]
        yield from tensor_to_images(engine.render_encoded(encoding, coeffs))


def job_row(renderer, job, timer: StageTimer) -> dict[str, Any]:
    timer.reset()
    cpu0, child0 = time.process_time(), children_cpu()
    result = renderer.render(job)
    cpu, child = time.process_time() - cpu0, children_cpu() - child0
    stages = dict(timer.totals)
    decoded = dict(timer.decoded)
    # the ffmpeg decoders' share of the children, from a calibration pass per kind of decode
    decoder = sum(decode_cost(kind) * count for kind, count in decoded.items())
    stages["decode"] = stages.get("decode", 0.0) + decoder
    stages["encode"] = stages.get("encode", 0.0) + child - decoder
    stages["other"] = cpu - sum(timer.totals.values())
    per_frame = {k: stages.get(k, 0.0) / result.frames * 1000 for k in STAGES}
    return {
        "job": job.name,
        "frames": result.frames,
        "decoded": {f"{k[1]} {k[2] or 'full'}": n for k, n in decoded.items()},
        **per_frame,
        "total": (cpu + child) / result.frames * 1000,
    }


def fmt_table(rows: list[dict[str, Any]], model_only: float, official: float) -> str:
    head = "| job | frames | " + " | ".join(STAGES) + " | total ms/frame | / model only | / official loop |"
    lines = [head, "|" + "---|" * (len(STAGES) + 5)]
    for row in rows:
        cells = [f"{row[k]:.0f}" if k in row else "" for k in STAGES]
        lines.append(
            f"| {row['job']} | {row['frames']} | "
            + " | ".join(cells)
            + f" | {row['total']:.0f} | {row['total'] / model_only:.2f} | {row['total'] / official:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=12, help="output frames per job")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=CPU_BATCH_SIZE,
        help="frames per engine batch (default: the CPU default)",
    )
    parser.add_argument("--weights", type=Path, help="a weights directory (default: the stand-in weights)")
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"some of {','.join(JOBS + EXTRA_JOBS)}")
    parser.add_argument(
        "--official-full",
        action="store_true",
        help="also the official loop with the EEM branch the official code computes and discards",
    )
    parser.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = bench_engine.weights_dir_or_standin(args.weights, root)
        started = time.perf_counter()
        startup = startup_cpu(weights)
        model = model_rows(weights, args.frames, args.threads, args.batch_size, args.official_full)

        from edtalk_cli.pipeline.options import RenderOptions
        from edtalk_cli.pipeline.render import JobRenderer
        from edtalk_cli.weights.bundle import ModelBundle

        timer = StageTimer()
        instrument(timer)
        options = RenderOptions(batch_size=args.batch_size)
        renderer = JobRenderer(ModelBundle.from_dir(weights), options=options)
        audio = make_audio(root, args.frames)
        seconds = args.frames / 25 + 0.5
        sources: dict[str, Callable[[], Path]] = {
            "photo512": lambda: make_photo(root, 512, 512),
            "photo1080": lambda: make_photo(root, 1920, 1080),
            "dub450": lambda: make_square_clip(root, seconds, 450),
            "dub1080": lambda: make_dubbing_source(root, seconds, 1080),
            "dub1080vf": lambda: make_dubbing_source(root, seconds, 1080),
        }
        renderer.render(make_job(root, "warmup", sources["photo512"](), make_audio(root, 2)))
        rows = []
        for name in jobs:
            source = sources[name]()
            preset = "veryfast" if name.endswith("vf") else None
            rows.append(job_row(renderer, make_job(root, name, source, audio, preset), timer))
            print(f"{name}: {rows[-1]['total']:.0f} CPU ms/frame", file=sys.stderr)
        wall = time.perf_counter() - started
    official, engine, dubbing, *full = model
    print(f"machine: {bench_engine.machine_line('cpu', args.threads)}")
    print(
        f"batch size {args.batch_size}, {args.frames} frames per job, {wall:.0f} s wall for the whole run\n"
    )
    print(fmt_table([official, *full, engine, dubbing, *rows], engine["total"], official["total"]))
    if full:
        print(
            f"\nagainst the official loop with its dead EEM branch ({full[0]['total']:.0f} ms): "
            + ", ".join(f"{r['job']} {r['total'] / full[0]['total']:.2f}" for r in (dubbing, *rows))
        )
    print("\nstart-up CPU s per process: " + ", ".join(f"{k} {v:.2f}" for k, v in startup.items()))
    if args.out:
        args.out.write_text(
            json.dumps({"startup": startup, "rows": [official, *full, engine, dubbing, *rows]}, indent=1)
        )


if __name__ == "__main__":
    main()
