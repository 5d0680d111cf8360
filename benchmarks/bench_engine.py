"""RenderEngine vs the official EDTalk demo loop, side by side on the same stand-in weights.

Usage:
    python benchmarks/bench_engine.py [--frames N] [--device cpu|cuda] [--threads K]
        [--batch-sizes 1,4,8] [--precisions fp32,bf16] [--repeats R] [--profile] [--out results.json]

Variants (each runs in a fresh subprocess, so peak-memory figures do not mix):

* ``official``: the semantics of the official ``test_EDTalk_A_use_exp_weight`` demo loop,
  written with this project's modules: per frame and with batch 1 it computes the QR bases
  twice, re-encodes the source (latent and features), encodes the pose frame, runs the pose
  head, builds ``[audio mouth | pose | exp weights]``, runs EEM + decoder (``model.dec``)
  and converts the frame to uint8. Always float32; it is the baseline of every ratio.
  ``model.dec`` skips the EEM branch that the official code computes and throws away, so
  this baseline is slightly faster than the real demo; ``official-full`` (not run by
  default, ``--variants``) evaluates that dead branch too.
* ``static``: ``RenderEngine`` with the source encoded once and a constant pose (the pose
  coefficients of the source itself).
* ``clip``: ``RenderEngine`` driven by a 10-frame pose clip looped to N frames, going
  through ``extract_coefficients`` (each distinct frame encoded once); the encoding is timed.

Every variant is warmed up once, then timed ``--repeats`` times (the best run is kept; the
machine may be shared). Timings include encoding the source, so they are the cost of
turning inputs into N uint8 frames. Process CPU time is reported next to wall time: on a
shared machine it is the steadier of the two. Peak memory is the process RSS high-water
mark (``getrusage``) next to the RSS right after loading, and on CUDA
``torch.cuda.max_memory_allocated``. ``--profile`` adds a per-frame breakdown of where the
time goes: exclusive time of the encoder and of the decoder's pieces (process CPU time on
the CPU, wall time after a sync on CUDA), measured by wrapping them in that process only.

bf16/fp16 on a CPU without native support (e.g. AVX2-only) is emulated and very slow
(about 70 s per frame here); they are meant for ``--device cuda``.

The stand-in checkpoint is written by ``$EDTALK_PARITY_DIR/weights.py`` (default
``../shared/parity`` next to the repository) unless ``--weights`` names an ``EDTalk.pt``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIP_LENGTH = 10  # distinct frames in the looped pose clip


# ----------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------
def parity_dir() -> Path:
    return Path(os.environ.get("EDTALK_PARITY_DIR", REPO.parent / "shared" / "parity")).resolve()


def read_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def pose_clip(drive: np.ndarray, length: int = CLIP_LENGTH) -> list[np.ndarray]:
    """``length`` distinct frames: ``drive`` shifted by a few pixels (a small head sway)."""
    frames = []
    for k in range(length):
        dx = round(4 * np.sin(2 * np.pi * k / length))
        dy = round(2 * np.cos(2 * np.pi * k / length))
        frames.append(np.ascontiguousarray(np.roll(drive, (dy, dx + k % 2), axis=(0, 1))))
    keys = {f.tobytes() for f in frames}
    assert len(keys) == length, "pose clip frames must be distinct"
    return frames


def load_inputs(pdir: Path, frames: int) -> dict[str, Any]:
    """Source, looped pose frames, mouth track (T, 20) and exp weights (10,) from the fixtures."""
    expected = np.load(pdir / "expected.npz")
    lips = expected["audio2lip_smoothed"].astype(np.float32)  # (32, 20): real Audio2Lip output
    clip = pose_clip(read_rgb(pdir / "drive_a.png"))
    return {
        "source": read_rgb(pdir / "source.png"),
        "clip": clip,
        "pose_frames": [clip[i % len(clip)] for i in range(frames)],
        "mouth": lips[np.arange(frames) % len(lips)],
        "exp": expected["exp_weights"].astype(np.float32)[0],
    }


# ----------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------
def reset_rss_peak() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) of this process; False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_peak_mib() -> float | None:
    """VmHWM of this process in MiB (since the last reset), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def maxrss_mib() -> float:
    """Lifetime RSS high-water mark from getrusage (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------------------
# the variants (run inside a worker subprocess)
# ----------------------------------------------------------------------------------------
def official_loop(
    model, inputs: dict[str, Any], frames: int, device, dead_branch: bool = False
) -> Iterator[np.ndarray]:
    """The official demo's per-frame semantics (batch 1, nothing cached), yielding uint8 frames.

    ``dead_branch``: also evaluate the EEM branch the official code computes and discards
    (``leaky_relu(AdaIN1(conv1(f), e), 0.01)`` per level); ``model.dec`` skips it.
    """
    import torch
    import torch.nn.functional as F

    from edtalk_cli.pipeline.engine import images_to_tensor, tensor_to_images

    source = images_to_tensor(inputs["source"], torch.float32, device)  # the demo loads it once
    mouth = torch.as_tensor(inputs["mouth"], device=device)
    exp = torch.as_tensor(inputs["exp"], device=device)[None]
    with torch.no_grad():
        for i in range(frames):
            bases = model.motion_bases()  # the official code runs the QR twice per frame
            bases = model.motion_bases()
            latent_src, feats = model.encode(source)  # source re-encoded every frame
            pose_image = images_to_tensor(inputs["pose_frames"][i], torch.float32, device)
            pose = model.pose_coeffs(model.encode_latent(pose_image))  # (1, 6)
            coeffs = torch.cat([mouth[i : i + 1], pose, exp], dim=1)  # (1, 36)
            direction, exp_latent = model.motion_latents(coeffs, bases)
            image = model.dec(latent_src + direction, feats, exp_latent)  # EEM + decoder
            if dead_branch:
                for block, feat in zip(model.dec.fineadainresblock, feats):
                    F.leaky_relu(block.norm1(block.conv1(feat), exp_latent), 0.01)
            yield tensor_to_images(image)[0]


def engine_static(engine, inputs: dict[str, Any], frames: int) -> Iterator[np.ndarray]:
    """Engine, constant pose: the pose coefficients of the source image."""
    import torch

    source = engine.set_source(inputs["source"])
    with torch.no_grad():
        pose = engine.model.pose_coeffs(source.latent)[0].float().cpu().numpy()
    yield from engine.render(frames, inputs["mouth"][:frames], pose, inputs["exp"])


def engine_clip(engine, inputs: dict[str, Any], frames: int) -> Iterator[np.ndarray]:
    """Engine, looped pose clip: extract the pose track (distinct frames encoded once), render."""
    engine.clear_cache()
    engine.set_source(inputs["source"])
    track = engine.extract_coefficients(inputs["pose_frames"][:frames])
    yield from engine.render(frames, inputs["mouth"][:frames], track.pose, inputs["exp"])


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_variant(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the model, warm the variant up once, time it ``repeats`` times; report the best."""
    import torch

    from edtalk_cli.pipeline.engine import RenderEngine
    from edtalk_cli.weights import load_model

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    model, _ = load_model(spec["weights"], "edtalk", device=device, dtype=torch.float32)
    model.eval()
    inputs = load_inputs(Path(spec["parity_dir"]), spec["frames"])
    frames, kind = spec["frames"], spec["variant"]

    if kind in ("official", "official-full"):
        engine = None

        def job(n: int) -> Iterator[np.ndarray]:
            return official_loop(model, inputs, n, device, dead_branch=kind == "official-full")

        warm_frames = 1
    else:
        engine = RenderEngine(model, device=device, precision=spec["precision"], batch_size=spec["batch"])
        body = engine_static if kind == "static" else engine_clip

        def job(n: int) -> Iterator[np.ndarray]:
            return body(engine, inputs, n)

        warm_frames = min(spec["batch"], frames)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    hwm_reset = reset_rss_peak()
    rss_after_load = rss_peak_mib()

    for _ in job(warm_frames):  # warm-up (allocator, oneDNN/cuDNN kernel selection)
        pass
    _sync(device)

    keep = bool(spec.get("frames_out"))  # frames are kept only for the sanity check
    times, cpu_times, out = [], [], []
    for _ in range(spec["repeats"]):
        if engine is not None:
            engine.clear_cache()
        out = []
        t0, c0 = time.perf_counter(), time.process_time()
        for frame in job(frames):
            if keep:
                out.append(frame)
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    best = int(np.argmin(times))
    result = {
        **{k: spec[k] for k in ("variant", "batch", "precision", "frames", "device", "threads")},
        "seconds": times[best],
        "all_seconds": times,
        "fps": frames / times[best],
        "cpu_seconds": cpu_times[best],
        "peak_rss_mib": maxrss_mib(),
        "rss_after_load_mib": rss_after_load if hwm_reset else None,
        "peak_rss_run_mib": rss_peak_mib() if hwm_reset else None,
        "cuda_peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }
    if keep:
        np.save(spec["frames_out"], np.stack(out))
    return result


# ----------------------------------------------------------------------------------------
# profile: exclusive time per piece, by wrapping functions in this process only
# ----------------------------------------------------------------------------------------
class ExclusiveTimer:
    """Nested timers; each label gets its own time minus the time of timed calls inside it."""

    def __init__(self, sync: Callable[[], None], clock: Callable[[], float] = time.perf_counter) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[list[float]] = []  # [start, time of children]
        self.sync = sync
        self.clock = clock

    @contextmanager
    def span(self, label: str):
        self.sync()
        self.stack.append([self.clock(), 0.0])
        try:
            yield
        finally:
            self.sync()
            start, children = self.stack.pop()
            elapsed = self.clock() - start
            self.totals[label] += elapsed - children
            if self.stack:
                self.stack[-1][1] += elapsed

    def wrap(self, owner: Any, name: str, label: str | Callable[..., str]) -> None:
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            with self.span(label(*args) if callable(label) else label):
                return original(*args, **kwargs)

        setattr(owner, name, wrapped)


def instrument(timer: ExclusiveTimer) -> None:
    """Wrap the model's pieces (in this process only; nothing is written to the package)."""
    import torch.nn.functional as F

    from edtalk_cli.model import decoder, encoder, generator, layers

    timer.wrap(encoder.Encoder, "forward", "encoder (all convs)")
    timer.wrap(generator, "orthonormal_bases", "QR bases")

    def modconv_label(module, *_: Any) -> str:
        if module.upsample:
            return "modulated conv, upsampling (grouped conv_transpose2d)"
        if module.kernel_size == 1:
            return "modulated conv 1x1 (ToFlow)"
        return "modulated conv 3x3 (grouped conv2d)"

    timer.wrap(layers.ModulatedConv2d, "forward", modconv_label)
    timer.wrap(layers, "upfirdn2d", "blur / upfirdn2d (depthwise 4x4)")
    timer.wrap(layers.FusedLeakyReLU, "forward", "fused leaky ReLU")
    timer.wrap(F, "grid_sample", "grid_sample (warp)")
    timer.wrap(decoder.EEM, "modulate", "EEM affine")
    timer.wrap(decoder.EEM, "normalized", "EEM conv2 + instance norm")
    timer.wrap(decoder.ToRGB, "forward", "ToRGB (1x1 conv)")
    timer.wrap(decoder.ToFlow, "forward", "ToFlow rest (tanh, sigmoid, mask mix)")
    timer.wrap(decoder.Synthesis, "render", "decoder rest")


def run_profile(spec: dict[str, Any]) -> dict[str, Any]:
    """Per-frame exclusive times (ms) of the official loop and the static engine per batch size."""
    import torch

    from edtalk_cli.pipeline.engine import RenderEngine
    from edtalk_cli.weights import load_model

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    model, _ = load_model(spec["weights"], "edtalk", device=device, dtype=torch.float32)
    inputs = load_inputs(Path(spec["parity_dir"]), max([2, *spec["batch_sizes"]]))
    # CPU: process CPU time (robust on a shared machine); CUDA: wall time after a sync
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    timer = ExclusiveTimer(lambda: _sync(device), clock)
    instrument(timer)
    report: dict[str, Any] = {}

    def measure(label: str, frames: int, job: Callable[[], Iterator[np.ndarray]]) -> None:
        for _ in job():  # warm-up
            pass
        timer.totals.clear()
        t0 = clock()
        with timer.span("uint8 conversion, glue"):
            for _ in job():
                pass
        wall = clock() - t0
        report[label] = {
            "frames": frames,
            "ms_per_frame": 1000 * wall / frames,
            "pieces_ms_per_frame": {k: 1000 * v / frames for k, v in sorted(timer.totals.items())},
        }
        print(f"  profiled {label}: {1000 * wall / frames:.0f} ms/frame", file=sys.stderr, flush=True)

    measure("official (B=1)", 2, lambda: official_loop(model, inputs, 2, device))
    for batch in spec["batch_sizes"]:
        engine = RenderEngine(model, device=device, precision=spec["precision"], batch_size=batch)
        engine.set_source(inputs["source"])
        pose = engine.model.pose_coeffs(engine.source.latent).detach()[0].float().cpu().numpy()

        def render(engine=engine, pose=pose, batch=batch) -> Iterator[np.ndarray]:
            return engine.render(batch, inputs["mouth"][:batch], pose, inputs["exp"])

        measure(f"engine render, B={batch}", batch, render)
    return report


# ----------------------------------------------------------------------------------------
# parent: spawn workers, collect, print
# ----------------------------------------------------------------------------------------
def spawn(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one worker in a fresh interpreter and return its JSON result."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(spec["threads"])
    env["MKL_NUM_THREADS"] = str(spec["threads"])
    # benchmark the checkout this script belongs to, whatever is installed
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        result_path = Path(tmp.name)
    try:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec), str(result_path)]
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"worker for {spec.get('variant', 'profile')} failed (exit {proc.returncode})")
        if proc.stderr:
            sys.stderr.write(proc.stderr)
        return json.loads(result_path.read_text())
    finally:
        result_path.unlink(missing_ok=True)


def make_weights(directory: Path) -> Path:
    """Write the stand-in official checkpoints with the parity fixtures' generator."""
    script = parity_dir() / "weights.py"
    if not script.is_file():
        raise SystemExit(f"{script} not found: set EDTALK_PARITY_DIR or pass --weights EDTalk.pt")
    subprocess.run([sys.executable, str(script), str(directory)], check=True, capture_output=True)
    return directory / "EDTalk.pt"


def weights_dir_or_standin(weights: Path | None, root: Path) -> Path:
    """``weights`` when given, else the stand-in checkpoints written to ``root/weights``."""
    if weights is not None:
        return weights
    (root / "weights").mkdir()
    make_weights(root / "weights")
    return root / "weights"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(device: str, threads: int) -> str:
    import torch

    gpu = ""
    if device == "cuda" and torch.cuda.is_available():
        gpu = f", GPU {torch.cuda.get_device_name(0)}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpu_model()} ({cores} cores visible, {threads} torch threads){gpu}, "
        f"torch {torch.__version__}, Python {platform.python_version()}, {dt.date.today().isoformat()}"
    )


def fmt_mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def fmt_ratio(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.2f}x"


def markdown_table(results: list[dict[str, Any]], baseline: dict[str, Any] | None) -> str:
    """One row per variant; ratios are against the official loop (wall and process CPU time)."""
    base_fps = baseline["fps"] if baseline else float("nan")
    base_cpu = baseline["cpu_seconds"] / baseline["frames"] if baseline else float("nan")
    rows = [
        "| variant | batch | precision | frames | wall s | frames/s | vs official | "
        "CPU s/frame | vs official (CPU time) | RSS after load MiB | peak RSS MiB | CUDA peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {
        "official": "(a) official loop semantics",
        "official-full": "(a') official loop incl. the discarded EEM branch",
        "static": "(b1) engine, static pose",
        "clip": "(b2) engine, looped 10-frame pose clip (encode timed)",
    }
    for r in results:
        rows.append(
            f"| {names[r['variant']]} | {r['batch']} | {r['precision']} | {r['frames']} | "
            f"{r['seconds']:.2f} | {r['fps']:.3f} | {fmt_ratio(r['fps'] / base_fps)} | "
            f"{r['cpu_seconds'] / r['frames']:.2f} | {fmt_ratio(base_cpu / (r['cpu_seconds'] / r['frames']))} | "
            f"{fmt_mib(r['rss_after_load_mib'])} | {fmt_mib(r['peak_rss_mib'])} | {fmt_mib(r['cuda_peak_mib'])} |"
        )
    return "\n".join(rows)


def profile_table(report: dict[str, Any]) -> str:
    labels = list(report)
    pieces = sorted({p for v in report.values() for p in v["pieces_ms_per_frame"]})
    order = sorted(pieces, key=lambda p: -max(v["pieces_ms_per_frame"].get(p, 0.0) for v in report.values()))
    rows = ["| piece (ms per frame) | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for p in order:
        cells = [f"{report[k]['pieces_ms_per_frame'].get(p, 0.0):.1f}" for k in labels]
        rows.append(f"| {p} | " + " | ".join(cells) + " |")
    rows.append("| **total** | " + " | ".join(f"**{report[k]['ms_per_frame']:.0f}**" for k in labels) + " |")
    return "\n".join(rows)


def parse_list(text: str, cast: Callable[[str], Any]) -> list[Any]:
    return [cast(x) for x in text.split(",") if x.strip()]


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        spec = json.loads(sys.argv[2])
        result = run_profile(spec) if spec.get("profile") else run_variant(spec)
        Path(sys.argv[3]).write_text(json.dumps(result))
        return

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20, help="frames per variant (default 20)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=cores, help="torch threads (default: all cores)")
    ap.add_argument("--batch-sizes", default=None, help="engine batch sizes (default cpu 1,4,8; cuda 1,8,32)")
    ap.add_argument(
        "--precisions", default="fp32", help="engine precisions: fp32,tf32,bf16,fp16 (default fp32)"
    )
    ap.add_argument(
        "--variants",
        default="official,static,clip",
        help="subset of official,official-full,static,clip (official-full: with the dead EEM branch)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per variant, best kept (default 1)")
    ap.add_argument("--weights", type=Path, default=None, help="an EDTalk.pt (default: write the stand-in)")
    ap.add_argument("--profile", action="store_true", help="also print a per-piece time breakdown")
    ap.add_argument("--out", type=Path, default=None, help="write all results as JSON here")
    args = ap.parse_args()

    if args.frames < 1 or args.repeats < 1 or args.threads < 1:
        ap.error("--frames, --repeats and --threads must be >= 1")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            ap.error("--device cuda: no CUDA device is available to torch here")
    batch_sizes = parse_list(
        args.batch_sizes or ("1,8,32" if args.device.startswith("cuda") else "1,4,8"), int
    )
    precisions = parse_list(args.precisions, str)
    variants = parse_list(args.variants, str)
    from edtalk_cli.pipeline.engine import PRECISIONS

    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not set(variants) <= {"official", "official-full", "static", "clip"}:
        ap.error(f"unknown precision or variant in {precisions} / {variants}")

    if not (parity_dir() / "expected.npz").is_file():
        raise SystemExit(
            f"{parity_dir()}: parity fixtures not found; set EDTALK_PARITY_DIR to the fixture folder"
        )
    with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
        weights = args.weights or make_weights(Path(tmp))
        base = {
            "frames": args.frames,
            "device": args.device,
            "threads": args.threads,
            "repeats": args.repeats,
            "weights": str(weights),
            "parity_dir": str(parity_dir()),
        }
        specs = []
        for kind in ("official", "official-full"):
            if kind in variants:
                specs.append({**base, "variant": kind, "batch": 1, "precision": "fp32"})
        for precision in precisions:
            for kind in ("static", "clip"):
                if kind in variants:
                    specs += [
                        {**base, "variant": kind, "batch": b, "precision": precision} for b in batch_sizes
                    ]
        # outputs kept for a sanity check: the official loop and the clip engine (largest batch)
        # render the same frames
        check = {"official": None, "clip": None}
        for spec in sorted(specs, key=lambda sp: -sp["batch"]):
            if spec["variant"] in check and check[spec["variant"]] is None and spec["precision"] == "fp32":
                check[spec["variant"]] = spec["frames_out"] = str(Path(tmp) / f"{spec['variant']}.npy")

        results = []
        t_start = time.perf_counter()
        for spec in specs:
            print(
                f"running {spec['variant']} B={spec['batch']} {spec['precision']} ...",
                file=sys.stderr,
                flush=True,
            )
            r = spawn(spec)
            print(
                f"  {r['fps']:.3f} frames/s ({r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU)",
                file=sys.stderr,
                flush=True,
            )
            results.append(r)
        agreement = None
        if all(check.values()):
            a = np.load(check["official"]).astype(np.int16)
            b = np.load(check["clip"]).astype(np.int16)
            diff = np.abs(a - b)
            agreement = {"max_abs_uint8": int(diff.max()), "mean_abs_uint8": float(diff.mean())}
        profile = None
        if args.profile:
            print("profiling ...", file=sys.stderr, flush=True)
            profile = spawn({**base, "profile": True, "batch_sizes": batch_sizes, "precision": precisions[0]})
        total = time.perf_counter() - t_start

    baseline = next((r for r in results if r["variant"] == "official"), None)
    base_fps = baseline["fps"] if baseline else float("nan")
    print()
    print(f"Machine: {machine_line(args.device, args.threads)}")
    print(f"Command: `python benchmarks/bench_engine.py {' '.join(sys.argv[1:])}`")
    print(f"Stand-in EDTalk.pt (full model), 256x256, float32 weights; {args.frames} frames per variant.")
    print()
    print(markdown_table(results, baseline))
    for kind in ("static", "clip"):
        for precision in precisions:
            rows = [r for r in results if r["variant"] == kind and r["precision"] == precision]
            if rows:
                best = max(rows, key=lambda r: r["fps"])
                best_cpu = min(rows, key=lambda r: r["cpu_seconds"] / r["frames"])
                print(
                    f"\nFastest engine batch size, {kind}, {precision}: {best['batch']} by wall time "
                    f"({best['fps']:.3f} frames/s, {fmt_ratio(best['fps'] / base_fps)} the official loop), "
                    f"{best_cpu['batch']} by CPU time"
                )
    if agreement:
        print(
            f"\nSanity check, official loop vs engine (largest batch) with the same pose clip (fp32): "
            f"max |diff| {agreement['max_abs_uint8']} uint8 levels, mean {agreement['mean_abs_uint8']:.4f}"
        )
    if profile:
        what = "wall" if args.device.startswith("cuda") else "process CPU"
        print(f"\nWhere the time goes (exclusive {what} ms per frame, {args.threads} threads):\n")
        print(profile_table(profile))
    print(f"\nTotal benchmark time: {total:.0f} s")

    if args.out:
        payload = {
            "machine": machine_line(args.device, args.threads),
            "argv": sys.argv[1:],
            "results": results,
            "agreement": agreement,
            "profile": profile,
        }
        tmp_out = args.out.with_name(f".{args.out.name}.tmp")
        tmp_out.write_text(json.dumps(payload, indent=2))
        os.replace(tmp_out, args.out)


if __name__ == "__main__":
    main()
