"""Face enhancement before paste-back: the generated face, upscaled 2x, restored by GFPGAN.

For each generated face (S, S, 3) of a model of size S:

1. ``up``: PIL bicubic resize to (2S, 2S), as the official ``--face_sr`` upscales 256 -> 512;
2. ``restored``: GFPGAN on ``up`` (resized to GFPGAN's 512 and back when 2S != 512), with the
   noise buffers stored in the weights instead of fresh random noise, so a frame renders the
   same every time (chunked and whole renders agree);
3. ``up + strength * (restored - up)``: strength 1 is fully restored, 0 is ``up`` itself
   (GFPGAN does not run).

The paste-back then receives a (2S, 2S) face.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from edtalk_cli.manifest.model import Enhance, Job
from edtalk_cli.weights.enhancer import GFPGAN_SIZE, resolve_enhancer_weights
from edtalk_cli.weights.store import resolve_weights_dir

ENHANCE_SCALE = 2  # the face given to paste-back is this many times the model size


def with_default_enhancement(job: Job) -> Job:
    """``job`` with the default enhancement (``--enhance``) unless the job sets its own."""
    return job if job.enhance is not None else job.model_copy(update={"enhance": Enhance()})


def enhancer_weights_file(job: Job, weights: str | Path | None = None) -> Path | None:
    """The GFPGAN weights file ``job`` enhances with, None without enhancement.

    ``weights`` is the command line's ``--weights`` (it overrides the job's): without
    ``enhance.weights`` the file is looked for in that weights directory, as the models are.
    """
    if job.enhance is None:
        return None
    weights_dir = resolve_weights_dir(weights if weights is not None else job.weights)
    return resolve_enhancer_weights(job.enhance.weights, weights_dir)


def upscale_faces(faces: np.ndarray, scale: int = ENHANCE_SCALE) -> np.ndarray:
    """uint8 (B, S, S, 3) -> (B, scale*S, scale*S, 3), PIL bicubic per face."""
    side = faces.shape[1] * scale
    return np.stack([np.asarray(Image.fromarray(f).resize((side, side), Image.BICUBIC)) for f in faces])


class FaceEnhancer:
    """Upscales and restores batches of generated faces with a loaded GFPGAN network."""

    def __init__(
        self, network: nn.Module | None, *, strength: float, device: str | torch.device = "cpu"
    ) -> None:
        """``network``: a GFPGAN from :func:`~edtalk_cli.weights.enhancer.load_enhancer` (None only
        with strength 0)."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        if network is None and strength > 0:
            raise ValueError("a strength above 0 needs the GFPGAN network")
        self.network = network
        self.strength = float(strength)
        self.device = torch.device(device)

    @torch.no_grad()
    def restore(self, images: np.ndarray) -> np.ndarray:
        """GFPGAN on uint8 (B, H, H, 3) faces -> float32 (B, H, H, 3) in [0, 255]."""
        side = images.shape[1]
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        if side != GFPGAN_SIZE:  # (B, 3, 512, 512)
            x = F.interpolate(x, size=GFPGAN_SIZE, mode="bicubic", align_corners=False, antialias=True)
        assert self.network is not None
        x = x.contiguous(memory_format=torch.contiguous_format)  # GFPGAN flattens with .view
        out, _ = self.network(x * 2.0 - 1.0, return_rgb=False, randomize_noise=False)
        out = (out.float().clamp(-1.0, 1.0) + 1.0) * 0.5  # (B, 3, 512, 512) in [0, 1]
        if side != GFPGAN_SIZE:
            out = F.interpolate(out, size=side, mode="bicubic", align_corners=False, antialias=True)
        return (out.clamp(0.0, 1.0) * 255.0).permute(0, 2, 3, 1).cpu().numpy()

    def enhance(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (B, S, S, 3) generated faces -> uint8 (B, 2S, 2S, 3) enhanced faces."""
        up = upscale_faces(np.asarray(faces))
        if self.strength == 0.0:
            return up
        restored = self.restore(up)
        base = up.astype(np.float32)
        blended = base + self.strength * (restored - base)
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8)

    def stream(self, faces: Iterable[np.ndarray], batch: int) -> Iterator[np.ndarray]:
        """Enhance a stream of (S, S, 3) faces, ``batch`` at a time, yielding one face per input."""
        pending: list[np.ndarray] = []
        for face in faces:
            pending.append(face)
            if len(pending) >= batch:
                yield from self.enhance(np.stack(pending))
                pending = []
        if pending:
            yield from self.enhance(np.stack(pending))
