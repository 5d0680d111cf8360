"""Peak memory of `edtalk render` against job length: streaming must keep it flat.

Renders the same image job with a short and a long audio track (default 10 s and 10 min), each
in a fresh process, and reports the peak RSS of each and their ratio. Uses a small random-init
model in the official layout, so the measurement is about the pipeline (audio features, plan,
engine, paste-back, encoder), not about model size.

``--dubbing`` renders a dubbing job instead: a 1920x1080 source video (the real face of
``../shared/real/pose_source2.mp4`` moving across a larger frame, made with ffmpeg), ``crop: auto``
with paste-back, as long as the audio (default 10 s and 20 s).

    python benchmarks/bench_memory.py [--short 10] [--long 600] [--size 64]
    python benchmarks/bench_memory.py --dubbing [--short 10] [--long 20] [--height 1080]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from edtalk_cli.manifest import load_manifest
from edtalk_cli.weights.bundle import ModelBundle
from edtalk_cli.pipeline.options import RenderOptions
from edtalk_cli.pipeline.render import JobRenderer
manifest, weights = sys.argv[1], sys.argv[2]
job = load_manifest(manifest).jobs[0]
renderer = JobRenderer(ModelBundle.from_dir(weights), options=RenderOptions(batch_size=16))
t0 = time.perf_counter()
result = renderer.render(job)
wall = time.perf_counter() - t0
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"frames": result.frames, "wall_s": wall, "peak_rss_mb": peak_kb / 1024}))
"""


def make_inputs(root: Path, seconds: float, size: int) -> tuple[Path, Path]:
    import numpy as np
    import soundfile as sf
    import torch
    from PIL import Image

    from edtalk_cli.model import Audio2Lip, EDTalkGenerator, ModelConfig

    weights = root / "weights"
    if not weights.exists():
        weights.mkdir()
        cfg = ModelConfig(size=size, style_dim=64, channel_base=size * 16, channel_max=64, eem_hidden=16)
        torch.manual_seed(0)
        torch.save({"gen": EDTalkGenerator(cfg).state_dict()}, weights / "EDTalk.pt")
        torch.save({"audio2lip": Audio2Lip(cfg).state_dict()}, weights / "Audio2Lip.pt")
        (root / "face.png").parent.mkdir(exist_ok=True, parents=True)
        rng = np.random.default_rng(0)
        Image.fromarray((rng.random((256, 256, 3)) * 255).astype(np.uint8)).save(root / "face.png")
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    # a syllable-rate amplitude-modulated tone: not silent, cheap to make for any length
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    wav = root / f"speech_{int(seconds)}s.wav"
    sf.write(wav, audio.astype(np.float32), sr)
    manifest = root / f"job_{int(seconds)}s.yaml"
    manifest.write_text(
        "version: 1\njobs:\n"
        f"  - name: len{int(seconds)}\n    source: {{path: face.png, crop: none}}\n"
        f"    audio: {wav.name}\n    output: out/len{int(seconds)}.mp4\n"
    )
    return manifest, weights


REAL_CLIP = Path(__file__).resolve().parents[1] / ".." / "shared" / "real" / "pose_source2.mp4"


def make_dubbing_source(root: Path, seconds: float, height: int) -> Path:
    """A ``height``p 16:9 clip of ``seconds``: the real talking head scaled to height/2 and drifting."""
    import imageio_ffmpeg

    width, face = 2 * round(height * 8 / 9), 2 * round(height / 4)
    path = root / f"actor_{height}p_{int(seconds)}s.mp4"
    graph = (
        f"color=c=0x506070:s={width}x{height}:r=25[bg];[0:v]fps=25,scale={face}:{face}[f];"
        f"[bg][f]overlay=x='{width // 3}+{width // 10}*sin(t/2)':y={height // 4}:shortest=1"
    )
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(REAL_CLIP), "-t", f"{seconds}"]
    cmd += [
        "-filter_complex",
        graph,
        "-an",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "20",
        str(path),
    ]
    subprocess.run(cmd, check=True)
    return path


def make_dubbing_job(root: Path, seconds: float, height: int, size: int) -> tuple[Path, Path]:
    """The image job's inputs with the source replaced by a ``height``p video as long as the audio."""
    manifest, weights = make_inputs(root, seconds, size)
    source = make_dubbing_source(root, seconds, height)
    name = f"dub{int(seconds)}"
    manifest.write_text(
        "version: 1\njobs:\n"
        f"  - name: {name}\n    source: {{path: {source.name}, crop: auto}}\n"
        f"    audio: speech_{int(seconds)}s.wav\n    output: out/{name}.mp4\n"
        "    encode: {preset: veryfast}\n"
    )
    return manifest, weights


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", type=float, default=10.0)
    parser.add_argument("--long", type=float, default=600.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--dubbing", action="store_true", help="a dubbing job with a video source")
    parser.add_argument("--height", type=int, default=1080, help="--dubbing: the source's frame height")
    args = parser.parse_args(sys.argv[1:])
    if args.dubbing and "--long" not in sys.argv:
        args.long = 20.0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seconds in (args.short, args.long):
            if args.dubbing:
                manifest, weights = make_dubbing_job(root, seconds, args.height, args.size)
            else:
                manifest, weights = make_inputs(root, seconds, args.size)
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(manifest), str(weights)], capture_output=True, text=True
            )
            if out.returncode != 0:
                raise SystemExit(out.stderr)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["seconds"] = seconds
            row["process_s"] = time.perf_counter() - started
            rows.append(row)
    short, long = rows
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print("| audio | frames | render wall (s) | peak RSS (MB) |")
    print("|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['seconds']:.0f} s | {row['frames']} | {row['wall_s']:.1f} | {row['peak_rss_mb']:.0f} |"
        )
    print(f"\npeak RSS ratio long/short: {long['peak_rss_mb'] / short['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
