"""Render through onnxruntime: the graphs written by :mod:`edtalk_cli.pipeline.onnx_export`.

:class:`OnnxRenderEngine` is a :class:`~edtalk_cli.pipeline.engine.RenderEngine` whose model
calls run the exported graphs instead of the torch modules; batching, the driver-latent cache,
coefficient tracks and the frame mapping are the engine's own. The graphs are float32, so the
backend runs the ``fp32`` precision only. CPU execution provider on ``cpu``, CUDA execution
provider on ``cuda[:N]`` when the installed onnxruntime has it.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edtalk_cli.defaults import GPU_BATCH_SIZE
from edtalk_cli.errors import EdtalkError
from edtalk_cli.model.config import ModelConfig
from edtalk_cli.model.generator import SourceEncoding, _EDTalkBase
from edtalk_cli.pipeline.engine import RenderEngine, images_to_tensor
from edtalk_cli.pipeline.onnx_export import GRAPH_FILES, METADATA_NAME, ONNX_FORMAT, feature_names
from edtalk_cli.weights.checkpoint import sha256_file

ENGINES = ("torch", "onnxruntime")  # what renders the frames: the torch modules or the ONNX graphs
ONNX_PRECISION = "fp32"
_EXPORT_HINT = "write it with `edtalk export onnx --weights WEIGHTS_DIR -o DIR`"
_NO_ONNXRUNTIME = "--engine onnxruntime needs the onnxruntime package"
_INSTALL_HINT = 'install the onnx extra: pip install "edtalk-cli[onnx]"'


def check_engine(engine: str, onnx_dir: str | Path | None, precision: str) -> None:
    """Reject an unknown engine, onnxruntime without a graph directory, or a precision it cannot run."""
    if engine not in ENGINES:
        raise EdtalkError(f"--engine {engine!r} is unknown", hint=f"use one of: {', '.join(ENGINES)}")
    if engine != "onnxruntime":
        return
    if onnx_dir is None:
        raise EdtalkError("--engine onnxruntime needs --onnx-dir, the exported graphs", hint=_EXPORT_HINT)
    if precision != ONNX_PRECISION:
        raise EdtalkError(
            f"--engine onnxruntime runs float32 graphs, but --precision is {precision!r}",
            hint="use --precision fp32 (or --engine torch)",
        )
    if importlib.util.find_spec("onnxruntime") is None:
        raise EdtalkError(_NO_ONNXRUNTIME, hint=_INSTALL_HINT)
    read_metadata(onnx_dir)


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """The export's ``edtalk_onnx.json``, checked: format known and every graph file present."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EdtalkError(f"ONNX directory '{directory}' does not exist", hint=_EXPORT_HINT)
    path = directory / METADATA_NAME
    if not path.is_file():
        raise EdtalkError(
            f"'{directory}' holds no {METADATA_NAME}, so it is not an ONNX export", hint=_EXPORT_HINT
        )
    try:
        metadata = json.loads(path.read_text())
        kind, files, config = metadata["kind"], metadata["files"], ModelConfig.from_dict(metadata["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EdtalkError(f"'{path}' cannot be read ({exc})", hint=f"export again: {_EXPORT_HINT}") from None
    if metadata.get("format") != ONNX_FORMAT:
        raise EdtalkError(
            f"'{path}' has export format {metadata.get('format')!r}, this edtalk reads {ONNX_FORMAT}",
            hint=f"export again: {_EXPORT_HINT}",
        )
    missing = [
        GRAPH_FILES[name]
        for name in GRAPH_FILES
        if not (directory / files.get(name, GRAPH_FILES[name])).is_file()
    ]
    if missing:
        raise EdtalkError(
            f"ONNX directory '{directory}' lacks {', '.join(missing)}", hint=f"export again: {_EXPORT_HINT}"
        )
    metadata["config"], metadata["kind"] = config, kind
    return metadata


def execution_providers(device: str | torch.device) -> list[Any]:
    """onnxruntime providers for ``device``: CPU, or CUDA (device id from ``cuda:N``)."""
    import onnxruntime as ort

    device = torch.device(device)
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EdtalkError(
                f"--engine onnxruntime on {device} needs onnxruntime's CUDA execution provider",
                hint="install onnxruntime-gpu, or render on cpu",
            )
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    raise EdtalkError(f"--engine onnxruntime cannot run on {device}", hint="use cpu or cuda:N")


class OnnxGraphs:
    """The exported graphs of one model, one onnxruntime session each."""

    def __init__(
        self, directory: str | Path, *, device: str | torch.device = "cpu", threads: int | None = None
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdtalkError(_NO_ONNXRUNTIME, hint=_INSTALL_HINT) from None
        self.directory = Path(directory)
        self.metadata = read_metadata(self.directory)
        self.config: ModelConfig = self.metadata["config"]
        self.kind: str = self.metadata["kind"]
        providers = execution_providers(device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        files = self.metadata["files"]
        self.sessions = {
            name: ort.InferenceSession(str(self.directory / files[name]), options, providers=providers)
            for name in GRAPH_FILES
        }

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one graph on float32 arrays; its outputs in export order."""
        feeds = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in inputs.items()}
        return self.sessions[graph].run(None, feeds)

    def check_matches(self, kind: str, config: ModelConfig, weight_files: list[Path]) -> None:
        """Refuse graphs exported from another model than the one the job loads."""
        if kind != self.kind or config != self.config:
            raise EdtalkError(
                f"ONNX export '{self.directory}' holds {self.kind} at {self.config.size} px, "
                f"but the job renders with {kind} at {config.size} px",
                hint=f"export the same weights: {_EXPORT_HINT}",
            )
        recorded = self.metadata.get("weights", {})
        for path in weight_files:
            if recorded.get(path.name) != sha256_file(path):
                raise EdtalkError(
                    f"ONNX export '{self.directory}' was not made from '{path}'",
                    hint=f"export these weights again: {_EXPORT_HINT}",
                )


class OnnxAudio2Lip:
    """Audio2Lip through ``audio2lip.onnx``: mel windows (N, 1, 80, 16) -> mouth (N, lip_dim), as torch tensors."""

    def __init__(self, graphs: OnnxGraphs) -> None:
        self.graphs = graphs

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        (mouth,) = self.graphs.run("audio2lip", {"mel_windows": windows.detach().float().cpu().numpy()})
        return torch.from_numpy(mouth)


class OnnxRenderEngine(RenderEngine):
    """The render engine with every model evaluation in onnxruntime (float32).

    ``generator`` supplies only the coefficient layout (and the shapes checked against the
    export); its weights are not evaluated. Tensors it hands out live on the CPU.
    """

    def __init__(
        self, generator: _EDTalkBase, graphs: OnnxGraphs, *, batch_size: int = GPU_BATCH_SIZE
    ) -> None:
        super().__init__(generator, device="cpu", precision=ONNX_PRECISION, batch_size=batch_size)
        self.graphs = graphs
        self._levels = feature_names(generator.config.num_levels)

    def _encode(self, images: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """uint8 crops (N, S, S, 3) -> (latents (N, style), features coarse-to-fine)."""
        latent, *feats = self.graphs.run(
            "encoder", {"image": images_to_tensor(images, self.dtype, "cpu").numpy()}
        )
        return latent, feats

    @torch.no_grad()
    def set_source(self, image: np.ndarray) -> SourceEncoding:
        image = image[None] if image.ndim == 3 else image
        self._check_images(image)
        latent, feats = self._encode(image)
        self._eem_cache = None
        self.source = SourceEncoding(torch.from_numpy(latent), [torch.from_numpy(f) for f in feats], None)
        return self.source

    def _encode_latent_batch(self, batch: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self._encode(batch)[0])

    def _motion_coeffs(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.graphs.run("coefficients", {"latent": latents.float().numpy()})[0])

    def _decode(self, latent: np.ndarray, feats: list[np.ndarray], coeffs: torch.Tensor) -> torch.Tensor:
        """Source latent/features (batch 1 or B) and coeffs (B, K) -> images (B, 3, S, S)."""
        motion = self.graphs.run("motion", {"coeffs": coeffs.float().numpy()})
        inputs = {"source_latent": latent, "direction": motion[0], **dict(zip(self._levels, feats))}
        if self.has_expression:
            inputs["exp_latent"] = motion[1]
        return torch.from_numpy(self.graphs.run("decoder", inputs)[0])

    @torch.no_grad()
    def render_batches(
        self, coeffs: torch.Tensor, *, batch_size: int | None = None
    ) -> Iterator[torch.Tensor]:
        if self.source is None:
            raise RuntimeError("call set_source() before rendering")
        latent = self.source.latent.float().cpu().numpy()
        feats = [f.float().cpu().numpy() for f in self.source.feats]
        step = self.batch(batch_size)
        for start in range(0, coeffs.shape[0], step):
            yield self._decode(latent, feats, coeffs[start : start + step])

    @torch.no_grad()
    def encode_frames(self, images: np.ndarray) -> SourceEncoding:
        self._check_images(images)
        latent, feats = self._encode(images)
        return SourceEncoding(torch.from_numpy(latent), [torch.from_numpy(f) for f in feats], None)

    @torch.no_grad()
    def render_encoded(self, encoding: SourceEncoding, coeffs: torch.Tensor) -> torch.Tensor:
        feats = [f.float().numpy() for f in encoding.feats]
        return self._decode(encoding.latent.float().numpy(), feats, coeffs)

    @torch.no_grad()
    def render_with_sources(
        self, sources: np.ndarray, coeffs: torch.Tensor, *, batch_size: int | None = None
    ) -> Iterator[torch.Tensor]:
        if len(sources) != coeffs.shape[0]:
            raise ValueError(f"{len(sources)} source frames for {coeffs.shape[0]} coefficient rows")
        self._check_images(sources[:1])
        step = self.batch(batch_size)
        for start in range(0, coeffs.shape[0], step):
            latent, feats = self._encode(sources[start : start + step])
            yield self._decode(latent, feats, coeffs[start : start + step])


def open_onnx(
    generator: _EDTalkBase,
    kind: str,
    weight_files: list[Path],
    directory: str | Path,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = GPU_BATCH_SIZE,
) -> tuple[OnnxRenderEngine, OnnxAudio2Lip]:
    """The onnxruntime engine and Audio2Lip for a loaded model, from its export in ``directory``."""
    graphs = OnnxGraphs(directory, device=device)
    graphs.check_matches(kind, generator.config, weight_files)
    return OnnxRenderEngine(generator, graphs, batch_size=batch_size), OnnxAudio2Lip(graphs)
