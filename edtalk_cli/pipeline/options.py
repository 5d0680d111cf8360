"""How a job's frames are computed: one frozen :class:`RenderOptions`, resolved once per job.

Free of torch, so the runner and the API can build options without loading it. The run's
options (``runner/options.py:RunOptions.render_options``) produce one per job; the worker and
:class:`~edtalk_cli.pipeline.render.JobRenderer` use it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edtalk_cli.defaults import ENGINE, GPU_BATCH_SIZE, PRECISION

__all__ = ["RenderOptions"]


@dataclass(frozen=True)
class RenderOptions:
    """The render settings of one job; use :func:`dataclasses.replace` for a variation.

    The frame rate and the encoder settings are the job's own (``Job.fps``, ``Job.encode``):
    they have no run-wide value to meet, so they travel with the job.
    """

    precision: str = PRECISION  # pipeline/engine.py:PRECISIONS
    batch_size: int = GPU_BATCH_SIZE  # frames per engine batch
    # CPU threads of the run's worker process, set by the worker (runner/worker.py) when it claims
    # its slot; None: the host's free cores split between the slots
    threads: int | None = None
    engine: str = ENGINE  # what evaluates the model: torch, or onnxruntime on an ONNX export
    onnx_dir: Path | None = None  # the export (`edtalk export onnx`) for engine onnxruntime

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.onnx_dir is not None and not isinstance(self.onnx_dir, Path):  # a str from a caller
            object.__setattr__(self, "onnx_dir", Path(self.onnx_dir))

    def same_model(self, other: RenderOptions) -> bool:
        """True when ``other`` evaluates the model the same way (precision, engine, export): a
        renderer built for one serves the other, whatever the batch size."""
        return (self.precision, self.engine, self.onnx_dir) == (other.precision, other.engine, other.onnx_dir)
