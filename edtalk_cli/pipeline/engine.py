"""Batched inference engine: one source face, many frames.

Compared with the official per-frame demo loop, the engine

* encodes the source once (latent, skip features and the expression-independent part of
  every EEM block) and computes the orthonormal motion bases once per model;
* encodes driving images in batches and each distinct image only once (a looped pose
  clip costs one encoder pass per distinct frame, not per output frame);
* renders in batches and yields frames as it goes, so memory does not grow with length.

Every shortcut is exact: the cached quantities do not depend on the frame.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edtalk_cli.atomic import atomic_write
from edtalk_cli.defaults import GPU_BATCH_SIZE, PRECISION
from edtalk_cli.model.generator import SourceEncoding, _EDTalkBase

PRECISIONS = {  # name -> (weights dtype, autocast dtype or None)
    "fp64": (torch.float64, None),
    "fp32": (torch.float32, None),
    "tf32": (torch.float32, None),  # fp32 with TensorFloat-32 matrix units on NVIDIA GPUs
    "bf16": (torch.float32, torch.bfloat16),
    "fp16": (torch.float32, torch.float16),
}


@contextmanager
def tensor_float32(allowed: bool) -> Iterator[None]:
    """Allow or forbid TF32 in cuDNN convolutions and cuBLAS matmuls, then restore the flags.

    PyTorch's defaults differ (convolutions TF32, matmuls not). TF32 rounds operands to 10
    mantissa bits; on the official weights' sensitive flow warp that is visible, so plain
    ``fp32`` forbids it and ``tf32`` opts in. The flags do nothing on a CPU.
    """
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def images_to_tensor(images: np.ndarray, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> (N, 3, H, W) in [-1, 1]: ``(x / 255 - 0.5) * 2`` in float64, then cast."""
    if images.ndim == 3:
        images = images[None]
    if images.dtype != np.uint8 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB images (N, H, W, 3), got {images.dtype} {images.shape}")
    x = torch.from_numpy(np.array(images, copy=True)).to(device=device, dtype=torch.float64)
    x = (x / 255.0 - 0.5) * 2.0
    return x.permute(0, 3, 1, 2).to(dtype)


def tensor_to_images(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) generator output -> uint8 (N, H, W, 3): clamp to [-1, 1], ``(x + 1) * 127.5``, round.

    The official demo stretches the whole video by its global min/max instead; that needs the
    entire video in memory and makes each frame's contrast depend on all others, so the
    engine uses this fixed, streaming-friendly mapping.
    """
    x = ((x.float().clamp(-1, 1) + 1.0) * 127.5).round_()
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


@dataclass
class CoefficientTrack:
    """Per-frame motion coefficients extracted from images: mouth (T, 20), pose (T, 6), expression (T, 10)."""

    mouth: np.ndarray
    pose: np.ndarray
    expression: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.mouth)

    def select(self, rows: np.ndarray) -> CoefficientTrack:
        """The track's rows ``rows`` (an index array), in that order."""
        return CoefficientTrack(
            self.mouth[rows], self.pose[rows], None if self.expression is None else self.expression[rows]
        )

    def save(self, path: str | Path) -> Path:
        """Write all components to one ``.npz`` (mouth, pose[, expression])."""
        path = Path(path)
        arrays = {"mouth": self.mouth, "pose": self.pose}
        if self.expression is not None:
            arrays["expression"] = self.expression
        with atomic_write(path, "wb", suffix=".tmp.npz") as fh:
            np.savez(fh, **arrays)
        return path

    def save_components(self, directory: str | Path, stem: str) -> dict[str, Path]:
        """Write ``{stem}_{mouth,pose,expression}.npy`` files (T, dim) float32 in ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = {}
        for name in ("mouth", "pose", "expression"):
            values = getattr(self, name)
            if values is None:
                continue
            path = directory / f"{stem}_{name}.npy"
            with atomic_write(path, "wb", suffix=".tmp.npy") as fh:
                np.save(fh, values.astype(np.float32))
            written[name] = path
        return written


def select_frames(encoding: SourceEncoding, rows: np.ndarray) -> SourceEncoding:
    """The per-frame encodings ``rows`` (an index array) of a batch encoding, in that order."""
    index = torch.as_tensor(rows, dtype=torch.long, device=encoding.latent.device)
    return SourceEncoding(
        encoding.latent[index],
        [f[index] for f in encoding.feats],
        None if encoding.eem_normalized is None else [n[index] for n in encoding.eem_normalized],
    )


def frame_key(image: np.ndarray) -> bytes:
    """Content hash of a frame, used to encode identical frames once."""
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()


class RenderEngine:
    """Renders frames of one model for one source at a time, in batches.

    ``precision``: "fp32" (default; IEEE float32, TF32 forbidden), "tf32" (float32 weights, TF32
    matrix units allowed on NVIDIA GPUs), "fp64", or "bf16"/"fp16" (float32 weights under autocast).
    ``batch_size``: frames per batch of a call that does not give its own ``batch_size``.
    """

    def __init__(
        self,
        generator: _EDTalkBase,
        *,
        device: str | torch.device = "cpu",
        precision: str = PRECISION,
        batch_size: int = GPU_BATCH_SIZE,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.device = torch.device(device)
        self.dtype, self.autocast_dtype = PRECISIONS[precision]
        self.precision = precision
        self.allow_tf32 = precision == "tf32"  # every other float32 precision is IEEE float32
        self.batch_size = batch_size
        self.model = generator.to(device=self.device, dtype=self.dtype).eval()
        with torch.no_grad(), tensor_float32(self.allow_tf32):
            self.bases = self.model.motion_bases()  # (style, K), once per model
        self.source: SourceEncoding | None = None
        self._latent_cache: dict[bytes, torch.Tensor] = {}
        self._eem_cache: tuple[torch.Tensor, list[torch.Tensor]] | None = None  # (exp coeffs, feats)

    # ----- helpers ------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.model.config.size

    @property
    def has_expression(self) -> bool:
        return self.model.has_expression

    @contextmanager
    def numerics(self) -> Iterator[None]:
        """The precision's arithmetic: TF32 allowed only for ``tf32``, autocast for bf16/fp16."""
        with tensor_float32(self.allow_tf32):
            if self.autocast_dtype is None:
                yield
            else:
                with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype):
                    yield

    def batch(self, batch_size: int | None) -> int:
        """Frames per batch of a call: its own ``batch_size``, else the engine's."""
        if batch_size is None:
            return self.batch_size
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        return batch_size

    def _check_images(self, images: np.ndarray) -> None:
        if images.shape[1:3] != (self.size, self.size):
            raise ValueError(
                f"images must be {self.size}x{self.size} crops (the model size), got {images.shape[1:3]}"
            )

    # ----- encoder side -------------------------------------------------------------------
    @torch.no_grad()
    def set_source(self, image: np.ndarray) -> SourceEncoding:
        """Encode the source face (S, S, 3) uint8 once; later renders reuse it."""
        image = image[None] if image.ndim == 3 else image
        self._check_images(image)
        with self.numerics():
            source = self.model.encode_source(images_to_tensor(image, self.dtype, self.device))
        # keep the cache in the working dtype even under autocast
        self._eem_cache = None
        self.source = SourceEncoding(
            source.latent.to(self.dtype),
            [f.to(self.dtype) for f in source.feats],
            None if source.eem_normalized is None else [n.to(self.dtype) for n in source.eem_normalized],
        )
        return self.source

    @torch.no_grad()
    def encode_latents(
        self, images: Sequence[np.ndarray] | np.ndarray, *, batch_size: int | None = None
    ) -> torch.Tensor:
        """Latents (N, style) of driving images, batched; identical frames are encoded once."""
        step = self.batch(batch_size)
        keys = [frame_key(img) for img in images]
        missing: dict[bytes, np.ndarray] = {}
        for key, img in zip(keys, images):
            if key not in self._latent_cache and key not in missing:
                missing[key] = img
        pending = list(missing.items())
        for start in range(0, len(pending), step):
            chunk = pending[start : start + step]
            batch = np.stack([img for _, img in chunk])
            self._check_images(batch)
            latents = self._encode_latent_batch(batch)
            for (key, _), latent in zip(chunk, latents.to(self.dtype)):
                self._latent_cache[key] = latent
        if not keys:
            return torch.empty(0, self.model.config.style_dim, dtype=self.dtype, device=self.device)
        return torch.stack([self._latent_cache[k] for k in keys])

    def _encode_latent_batch(self, batch: np.ndarray) -> torch.Tensor:
        """Latents (N, style) of uint8 crops (N, S, S, 3), uncached."""
        with self.numerics():
            return self.model.encode_latent(images_to_tensor(batch, self.dtype, self.device))

    def _motion_coeffs(self, latents: torch.Tensor) -> torch.Tensor:
        """Coefficients (N, K) of latents (N, style)."""
        with self.numerics():
            return self.model.motion_coeffs(latents)

    def clear_cache(self) -> None:
        """Forget cached driver latents (e.g. between jobs with different references)."""
        self._latent_cache.clear()

    @torch.no_grad()
    def extract_coefficients(
        self, images: Iterable[np.ndarray], *, batch_size: int | None = None
    ) -> CoefficientTrack:
        """Coefficient track of a sequence of face crops, streamed in batches."""
        step = self.batch(batch_size)
        parts: list[torch.Tensor] = []
        batch: list[np.ndarray] = []

        def flush() -> None:
            latents = self.encode_latents(batch, batch_size=step)
            parts.append(self._motion_coeffs(latents).to(self.dtype).cpu())
            batch.clear()

        for image in images:
            batch.append(image)
            if len(batch) == step:
                flush()
        if batch:
            flush()
        if not parts:
            raise ValueError("no frames to extract coefficients from")
        return self.coefficient_track(torch.cat(parts).numpy())

    def coefficient_track(self, coeffs: np.ndarray) -> CoefficientTrack:
        """Coefficient rows (T, K) split into mouth, pose and expression."""
        m = self.model
        return CoefficientTrack(
            mouth=coeffs[:, m.mouth_slice],
            pose=coeffs[:, m.pose_slice],
            expression=coeffs[:, m.expression_slice] if m.has_expression else None,
        )

    @torch.no_grad()
    def source_coefficients(self) -> CoefficientTrack:
        """The source's own coefficients (1 frame), from the latent :meth:`set_source` kept."""
        if self.source is None:
            raise RuntimeError("call set_source() before asking for its coefficients")
        return self.coefficient_track(self._motion_coeffs(self.source.latent).to(self.dtype).cpu().numpy())

    @torch.no_grad()
    def encode_frames(self, images: np.ndarray) -> SourceEncoding:
        """Encode per-frame sources (B, S, S, 3) uint8 in one encoder pass (batch B, working dtype).

        The result serves both :meth:`frame_coefficients` and :meth:`render_encoded`.
        """
        self._check_images(images)
        with self.numerics():
            encoding = self.model.encode_source(images_to_tensor(images, self.dtype, self.device))
        return SourceEncoding(
            encoding.latent.to(self.dtype),
            [f.to(self.dtype) for f in encoding.feats],
            None if encoding.eem_normalized is None else [n.to(self.dtype) for n in encoding.eem_normalized],
        )

    @torch.no_grad()
    def frame_coefficients(self, encoding: SourceEncoding) -> torch.Tensor:
        """Coefficients (B, K) of the frames of an :meth:`encode_frames` result."""
        return self._motion_coeffs(encoding.latent).to(self.dtype)

    @torch.no_grad()
    def render_encoded(self, encoding: SourceEncoding, coeffs: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, S, S) of per-frame sources (an :meth:`encode_frames` result) driven by coeffs (B, K)."""
        with self.numerics():
            return self.model.synthesize(
                encoding, coeffs.to(device=self.device, dtype=self.dtype), self.bases
            )

    # ----- decoder side -------------------------------------------------------------------
    def _as_track(self, values, dim: int, num_frames: int, name: str) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(values, dtype=np.float64) if not torch.is_tensor(values) else values)
        t = t.to(device=self.device, dtype=self.dtype)
        if t.ndim == 1:
            t = t[None]
        if t.ndim != 2 or t.shape[1] != dim:
            raise ValueError(
                f"{name} coefficients must have shape (T, {dim}) or ({dim},), got {tuple(t.shape)}"
            )
        if t.shape[0] == 1:
            t = t.expand(num_frames, dim)
        if t.shape[0] != num_frames:
            raise ValueError(f"{name} track has {t.shape[0]} frames, expected {num_frames}")
        return t

    def coefficient_matrix(self, num_frames: int, mouth, pose, expression=None) -> torch.Tensor:
        """Stack per-frame tracks into (T, K); each may be (T, d) or a constant (d,)."""
        cfg = self.model.config
        parts = [
            self._as_track(mouth, cfg.lip_dim, num_frames, "mouth"),
            self._as_track(pose, cfg.pose_dim, num_frames, "pose"),
        ]
        if self.has_expression:
            if expression is None:
                raise ValueError("the full EDTalk model needs expression coefficients")
            parts.append(self._as_track(expression, cfg.exp_dim, num_frames, "expression"))
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def render_batches(
        self, coeffs: torch.Tensor, *, batch_size: int | None = None
    ) -> Iterator[torch.Tensor]:
        """coeffs (T, K) -> yields raw generator outputs (B, 3, S, S) batch by batch."""
        if self.source is None:
            raise RuntimeError("call set_source() before rendering")
        step = self.batch(batch_size)
        for start in range(0, coeffs.shape[0], step):
            chunk = coeffs[start : start + step]
            with self.numerics():
                images = self.model.synthesize(
                    self.source, chunk, self.bases, self._constant_expression(chunk)
                )
            yield images

    def _constant_expression(self, chunk: torch.Tensor) -> list[torch.Tensor] | None:
        """EEM output (batch 1) when every frame of ``chunk`` has the same expression; cached."""
        if not self.has_expression:
            return None
        exp = chunk[:, self.model.expression_slice]
        if not bool((exp == exp[:1]).all()):
            return None
        if self._eem_cache is None or not torch.equal(self._eem_cache[0], exp[0]):
            _, exp_latent = self.model.motion_latents(chunk[:1], self.bases)
            self._eem_cache = (exp[0].clone(), self.model.expression_features(self.source, exp_latent))
        return self._eem_cache[1]

    def render(
        self, num_frames: int, mouth, pose, expression=None, *, batch_size: int | None = None
    ) -> Iterator[np.ndarray]:
        """Yield uint8 frames (S, S, 3) one by one, computed ``batch_size`` at a time."""
        coeffs = self.coefficient_matrix(num_frames, mouth, pose, expression)
        for images in self.render_batches(coeffs, batch_size=batch_size):
            yield from tensor_to_images(images)

    @torch.no_grad()
    def render_with_sources(
        self, sources: np.ndarray, coeffs: torch.Tensor, *, batch_size: int | None = None
    ) -> Iterator[torch.Tensor]:
        """Per-frame sources (re-lip-syncing a video): sources (T, S, S, 3) uint8, coeffs (T, K).

        Each source frame is encoded in the same batch as the frame it drives.
        """
        if len(sources) != coeffs.shape[0]:
            raise ValueError(f"{len(sources)} source frames for {coeffs.shape[0]} coefficient rows")
        self._check_images(sources[:1])
        step = self.batch(batch_size)
        for start in range(0, coeffs.shape[0], step):
            encoding = self.encode_frames(sources[start : start + step])
            yield self.render_encoded(encoding, coeffs[start : start + step])
