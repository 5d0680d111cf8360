"""Export the pieces the render engine runs as ONNX graphs with a dynamic batch axis.

The cut points follow :class:`~edtalk_cli.pipeline.engine.RenderEngine`, so that running the
graphs in order computes what the engine computes:

* ``encoder.onnx``: image (B, 3, S, S) in [-1, 1] -> ``latent`` (B, style) and the decoder's
  source features ``feat0..featN`` (coarse to fine). Used for the source and for drivers.
* ``coefficients.onnx``: the motion heads, ``latent`` (B, style) -> ``coeffs`` (B, K) ordered
  [mouth | pose | expression].
* ``motion.onnx``: the orthonormal bases folded in as constants, ``coeffs`` (B, K) ->
  ``direction`` (B, style) = Q @ coeffs and, for the full model, ``exp_latent`` = Q_exp @ a_exp.
* ``decoder.onnx``: ``source_latent`` and ``feat*`` (batch 1, or B for per-frame sources),
  ``direction`` (B, style) [, ``exp_latent`` (B, style)] -> ``image`` (B, 3, S, S), unclamped.
  The full model's EEM blocks run inside it.
* ``audio2lip.onnx``: ``mel_windows`` (N, 1, 80, 16) -> ``mouth`` (N, lip_dim).

``edtalk_onnx.json`` records the model kind and configuration, the opset and the sha256 of the
weight files the graphs were made from, so a renderer can refuse graphs of other weights.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edtalk_cli import __version__
from edtalk_cli.errors import EdtalkError
from edtalk_cli.model import Audio2Lip
from edtalk_cli.model.generator import _EDTalkBase

ONNX_FORMAT = 1
OPSET = 17  # GridSample needs opset >= 16
METADATA_NAME = "edtalk_onnx.json"
GRAPH_FILES = {
    "encoder": "encoder.onnx",
    "coefficients": "coefficients.onnx",
    "motion": "motion.onnx",
    "decoder": "decoder.onnx",
    "audio2lip": "audio2lip.onnx",
}
MEL_WINDOW_SHAPE = (1, 80, 16)  # one Audio2Lip input window: (channel, mel bins, mel frames)
_TRACE_BATCH = 2  # > 1 so the batched ModulatedConv2d path is traced; the axis stays dynamic


def feature_names(num_levels: int) -> list[str]:
    """Names of the decoder's source-feature inputs (and the encoder's outputs), coarse to fine."""
    return [f"feat{level}" for level in range(num_levels)]


@dataclass(frozen=True)
class ExportedModel:
    """What :func:`export_onnx` wrote."""

    directory: Path
    kind: str
    description: str  # which weights: "EDTalk.pt + Audio2Lip.pt from DIR" or the demo model
    files: dict[str, Path]
    metadata: dict[str, Any]


class _EncoderGraph(nn.Module):
    def __init__(self, generator: _EDTalkBase) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        latent, feats = self.generator.encode(image)
        return (latent, *feats)


class _CoefficientsGraph(nn.Module):
    def __init__(self, generator: _EDTalkBase) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.generator.motion_coeffs(latent)


class _MotionGraph(nn.Module):
    """coeffs (B, K) -> direction (B, style) [, exp_latent (B, style)] with Q a constant."""

    def __init__(self, generator: _EDTalkBase, bases: torch.Tensor) -> None:
        super().__init__()
        self.generator = generator
        self.register_buffer("bases", bases.detach().clone())

    def forward(self, coeffs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        direction, exp_latent = self.generator.motion_latents(coeffs, self.bases)
        return (direction,) if exp_latent is None else (direction, exp_latent)


class _DecoderGraph(nn.Module):
    """The engine's ``synthesize`` after the motion: EEM on the source features, then the decoder."""

    def __init__(self, generator: _EDTalkBase) -> None:
        super().__init__()
        self.generator = generator

    def forward(
        self, source_latent: torch.Tensor, direction: torch.Tensor, *rest: torch.Tensor
    ) -> torch.Tensor:
        generator = self.generator
        if generator.has_expression:
            exp_latent, feats = rest[0], list(rest[1:])
            feats = [block(feat, exp_latent) for block, feat in zip(generator.dec.fineadainresblock, feats)]
        else:
            feats = list(rest)
        return generator.dec.render(source_latent + direction, feats)


def _export(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: dict, outputs: dict
) -> None:
    """Trace ``module`` on ``args`` into ``path``; ``inputs``/``outputs``: name -> dynamic axes.

    The tracer's warnings are silenced: they concern Python-side constants that are fixed for a
    model (channel counts, the sampling grid, the batched-convolution branch), the instance
    norms, which never use running statistics, and the TorchScript exporter's deprecation (the
    torch.export-based one needs onnxscript).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, chosen on purpose
        warnings.filterwarnings("ignore", message=r".*(Constant folding|instance_norm)", category=UserWarning)
        _export_traced(module, args, path, inputs, outputs)


def _export_traced(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: dict, outputs: dict
) -> None:
    torch.onnx.export(
        module,
        args,
        str(path),
        input_names=list(inputs),
        output_names=list(outputs),
        dynamic_axes={name: axes for name, axes in {**inputs, **outputs}.items() if axes},
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,  # the TorchScript exporter: no onnxscript needed, handles the model's ops
    )


def export_generator(generator: _EDTalkBase, directory: Path) -> dict[str, Path]:
    """Write encoder, coefficients, motion and decoder graphs of ``generator`` (float32) into ``directory``."""
    generator = generator.to(device="cpu", dtype=torch.float32).eval()
    cfg = generator.config
    levels = feature_names(cfg.num_levels)
    batch = {0: "batch"}
    source_batch = {0: "source_batch"}
    with torch.no_grad():
        bases = generator.motion_bases()  # (style, K), float32: what the fp32 engine uses
        image = torch.zeros(_TRACE_BATCH, 3, cfg.size, cfg.size)
        latent, feats = generator.encode(image)
        coeffs = torch.zeros(_TRACE_BATCH, generator.num_coeffs)
        files = {
            name: directory / GRAPH_FILES[name] for name in ("encoder", "coefficients", "motion", "decoder")
        }
        _export(
            _EncoderGraph(generator),
            (image,),
            files["encoder"],
            {"image": batch},
            {"latent": batch, **{name: batch for name in levels}},
        )
        _export(
            _CoefficientsGraph(generator),
            (latent,),
            files["coefficients"],
            {"latent": batch},
            {"coeffs": batch},
        )
        motion_outputs = {"direction": batch, **({"exp_latent": batch} if generator.has_expression else {})}
        _export(_MotionGraph(generator, bases), (coeffs,), files["motion"], {"coeffs": batch}, motion_outputs)
        direction = torch.zeros(_TRACE_BATCH, cfg.style_dim)
        source_feats = [f[:1] for f in feats]  # one source broadcast over the batch, as the engine renders
        decoder_args: tuple[torch.Tensor, ...] = (latent[:1], direction)
        decoder_inputs: dict[str, dict] = {"source_latent": source_batch, "direction": batch}
        if generator.has_expression:
            decoder_args += (torch.zeros(_TRACE_BATCH, cfg.style_dim),)
            decoder_inputs["exp_latent"] = batch
        decoder_args += tuple(source_feats)
        decoder_inputs.update({name: source_batch for name in levels})
        _export(_DecoderGraph(generator), decoder_args, files["decoder"], decoder_inputs, {"image": batch})
    return files


def export_audio2lip(audio2lip: Audio2Lip, path: Path) -> Path:
    """Write Audio2Lip (float32, eval-mode batch norm) as ``mel_windows`` (N, 1, 80, 16) -> ``mouth``."""
    audio2lip = audio2lip.to(device="cpu", dtype=torch.float32).eval()
    with torch.no_grad():
        windows = torch.zeros(_TRACE_BATCH, *MEL_WINDOW_SHAPE)
        _export(audio2lip, (windows,), path, {"mel_windows": {0: "batch"}}, {"mouth": {0: "batch"}})
    return path


def export_onnx(
    weights: str | Path | None, output: str | Path, *, model: str = "auto", overwrite: bool = False
) -> ExportedModel:
    """Export the bundle ``ModelBundle.from_dir(weights, model)`` would render with into ``output``.

    Written into a temporary directory beside ``output`` and moved into place at the end, so a
    failed export leaves nothing half-written. Into an existing non-empty ``output`` only with
    ``overwrite``, which replaces the export's own files and keeps any others.
    """
    from edtalk_cli.weights.bundle import ModelBundle

    output = Path(output)
    if output.exists() and not output.is_dir():
        raise EdtalkError(f"export directory '{output}' is a file", hint="give a directory with -o")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise EdtalkError(
            f"export directory '{output}' is not empty", hint="choose an empty directory or pass --force"
        )
    bundle = ModelBundle.from_dir(weights, model)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        files = export_generator(bundle.generator, staging)
        files["audio2lip"] = export_audio2lip(bundle.audio2lip, staging / GRAPH_FILES["audio2lip"])
        cfg = bundle.generator.config
        metadata = {
            "format": ONNX_FORMAT,
            "kind": bundle.kind,
            "has_expression": bundle.has_expression,
            "config": cfg.to_dict(),
            "opset": OPSET,
            "files": {name: path.name for name, path in files.items()},
            "weights": dict(bundle.content_identity["files"]),  # file name -> sha256
            "exported_by": f"edtalk {__version__}",
        }
        (staging / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n")
        if output.is_dir():  # empty, or --force: replace the export's own files, keep anything else
            for path in staging.iterdir():
                path.replace(output / path.name)
            staging.rmdir()
        else:
            staging.replace(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportedModel(
        directory=output,
        kind=bundle.kind,
        description=bundle.description,
        files={name: output / path.name for name, path in files.items()},
        metadata=metadata,
    )
