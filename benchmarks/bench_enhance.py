"""Per-frame cost of face enhancement (GFPGAN, 256 -> 512) beside the model's own per-frame cost.

Usage:
    python benchmarks/bench_enhance.py [--device cpu|cuda] [--threads K] [--batch-size B]
        [--frames N] [--weights EDTalk.pt] [--gfpgan GFPGANv1.4.pth] [--out results.json]

Measured on the same machine, in one process, each warmed up once and then timed over
``--frames`` frames in batches of ``--batch-size``:

* ``model``: the EDTalk generator alone (``RenderEngine.render_batches`` on random
  coefficients with the source encoded once): generated 256 px faces, uint8;
* ``upscale``: the 2x bicubic upscale alone (``strength: 0``);
* ``enhance``: upscale + GFPGAN + blend (``FaceEnhancer.enhance``, ``strength: 1``).

Wall time and process CPU time are reported in ms per frame. Without ``--weights`` the
stand-in official checkpoint (full size, 256 px) is written by
``$EDTALK_PARITY_DIR/weights.py``; without ``--gfpgan`` a stand-in GFPGANv1.4 (spandrel's
architecture, random init) is built: the cost does not depend on the weight values.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edtalk_cli.pipeline.engine import RenderEngine, tensor_to_images  # noqa: E402
from edtalk_cli.pipeline.enhance import FaceEnhancer  # noqa: E402
from edtalk_cli.weights import load_model  # noqa: E402
from edtalk_cli.weights.enhancer import import_spandrel, load_enhancer  # noqa: E402


def standin_edtalk(tmp: Path) -> Path:
    parity = Path(os.environ.get("EDTALK_PARITY_DIR", REPO.parent / "shared" / "parity"))
    spec = importlib.util.spec_from_file_location("parity_weights", parity / "weights.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.write_checkpoints(tmp)["edtalk"])


def standin_gfpgan(tmp: Path) -> Path:
    import_spandrel()
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    path = tmp / "GFPGANv1.4.pth"
    torch.save({"params_ema": GFPGAN().state_dict()}, path)
    return path


def timed(fn: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """(wall s, process CPU s) of ``fn``, after a CUDA sync when on a GPU."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--weights", type=Path, default=None, help="an EDTalk.pt (default: stand-in)")
    parser.add_argument("--gfpgan", type=Path, default=None, help="a GFPGANv1.4.pth (default: stand-in)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch, frames = args.batch_size, args.frames
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        generator, _ = load_model(args.weights or standin_edtalk(tmp), "edtalk", device=device)
        network = load_enhancer(args.gfpgan or standin_gfpgan(tmp), device=device)
    engine = RenderEngine(generator, device=device, precision="fp32", batch_size=batch)
    rng = np.random.default_rng(0)
    engine.set_source(rng.integers(0, 256, (engine.size, engine.size, 3), dtype=np.uint8))
    cfg = generator.config
    coeffs = engine.coefficient_matrix(
        frames,
        rng.normal(size=(frames, cfg.lip_dim)),
        rng.normal(size=(frames, cfg.pose_dim)),
        rng.normal(size=(frames, cfg.exp_dim)),
    )
    faces = np.concatenate([tensor_to_images(x) for x in engine.render_batches(coeffs)])  # (N, 256, 256, 3)
    upscale, enhance = FaceEnhancer(None, strength=0.0), FaceEnhancer(network, strength=1.0, device=device)

    def run_model() -> None:
        for images in engine.render_batches(coeffs):
            tensor_to_images(images)

    def per_batch(enhancer: FaceEnhancer) -> Callable[[], None]:
        return lambda: [enhancer.enhance(faces[i : i + batch]) for i in range(0, frames, batch)]

    results = {}
    for name, fn in (("model", run_model), ("upscale", per_batch(upscale)), ("enhance", per_batch(enhance))):
        if name == "enhance":
            enhance.enhance(faces[:batch])  # warm-up
        else:
            fn()
        wall, cpu = timed(fn, device)
        results[name] = {"wall_ms_per_frame": 1000 * wall / frames, "cpu_ms_per_frame": 1000 * cpu / frames}
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "model_size": engine.size,
        "enhanced_size": int(enhance.enhance(faces[:1]).shape[1]),
        "batch_size": batch,
        "frames": frames,
        "results": results,
        "enhance_over_model": results["enhance"]["wall_ms_per_frame"] / results["model"]["wall_ms_per_frame"],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
