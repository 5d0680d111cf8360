"""onnxruntime against the torch RenderEngine, side by side on the same stand-in weights (CPU).

Usage:
    python benchmarks/bench_onnx.py [--frames N] [--threads K] [--batch-sizes 1,4] [--repeats R]
        [--out results.json]

Writes the stand-in official checkpoints (256 px, ``$EDTALK_PARITY_DIR/weights.py``), exports
them with ``edtalk_cli.pipeline.onnx_export.export_onnx`` and renders the same job with both
engines: the ``static`` variant of ``bench_engine.py`` (source encoded once, constant pose,
audio mouth track, exp weights), fp32, N uint8 frames. The engines are timed in alternation,
each warmed up once and then timed ``--repeats`` times (the best run is kept: the machine may
be shared); process CPU time is reported next to wall time. Both use ``--threads`` threads
(torch intra-op threads; onnxruntime intra-op threads). The largest pixel difference between
the two engines' uint8 frames is printed as a sanity check.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import engine_static, load_inputs, machine_line, make_weights, parity_dir


def timed(render, frames: int) -> tuple[float, float, list[np.ndarray]]:
    """(wall s, process CPU s, frames) of one full render."""
    wall, cpu = time.perf_counter(), time.process_time()
    images = list(render(frames))
    return time.perf_counter() - wall, time.process_time() - cpu, images


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import onnxruntime
    import torch

    from edtalk_cli.pipeline.engine import RenderEngine
    from edtalk_cli.pipeline.onnx_backend import OnnxGraphs, OnnxRenderEngine
    from edtalk_cli.pipeline.onnx_export import export_onnx
    from edtalk_cli.weights import load_model

    torch.set_num_threads(args.threads)
    inputs = load_inputs(parity_dir(), args.frames)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = make_weights(Path(tmp))
        started = time.perf_counter()
        export = export_onnx(checkpoint.parent, Path(tmp) / "onnx", model="edtalk")
        export_s = time.perf_counter() - started
        generator, _ = load_model(checkpoint, "edtalk")
        graphs = OnnxGraphs(export.directory, threads=args.threads)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            engines = {
                "torch": RenderEngine(generator, precision="fp32", batch_size=batch),
                "onnxruntime": OnnxRenderEngine(generator, graphs, batch_size=batch),
            }

            def render(name: str, engines=engines):
                return lambda n: engine_static(engines[name], inputs, n)

            best: dict[str, tuple[float, float]] = {}
            frames: dict[str, list[np.ndarray]] = {}
            for name in engines:  # warm-up
                timed(render(name), min(batch, args.frames))
            for _ in range(args.repeats):
                for name in engines:
                    wall, cpu, frames[name] = timed(render(name), args.frames)
                    if name not in best or wall < best[name][0]:
                        best[name] = (wall, cpu)
            max_diff = int(
                np.abs(np.stack(frames["torch"]).astype(int) - np.stack(frames["onnxruntime"])).max()
            )
            for name, (wall, cpu) in best.items():
                rows.append(
                    {
                        "engine": name,
                        "batch": batch,
                        "wall_s": round(wall, 3),
                        "frames_per_s": round(args.frames / wall, 3),
                        "cpu_s_per_frame": round(cpu / args.frames, 3),
                        "vs_torch": round(best["torch"][0] / wall, 3),
                        "max_uint8_diff": max_diff,
                    }
                )
    machine = f"{machine_line('cpu', args.threads)}, onnxruntime {onnxruntime.__version__}"
    print(
        f"{machine}; {args.frames} frames of 256 px, best of {args.repeats}; export took {export_s:.1f} s\n"
    )
    print("| engine | batch | wall s | frames/s | vs torch | CPU s/frame | max uint8 diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['engine']} | {r['batch']} | {r['wall_s']:.2f} | {r['frames_per_s']:.2f} | "
            f"{r['vs_torch']:.2f}x | {r['cpu_s_per_frame']:.3f} | {r['max_uint8_diff']} |"
        )
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "frames": args.frames, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
