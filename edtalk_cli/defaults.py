"""The defaults of a render, each stated once; every layer reads them from here.

Pure constants (no imports), so any module may use them without cost.
"""

from __future__ import annotations

__all__ = [
    "CPU_BATCH_SIZE",
    "ENGINE",
    "EXTRACT_BATCH_SIZE",
    "FPS",
    "GPU_BATCH_SIZE",
    "PRECISION",
    "SAMPLE_RATE",
    "VIDEO_CODEC",
    "X264_CRF",
    "X264_PRESET",
]

FPS = 25.0  # output frames per second of a job (the model's training rate)
SAMPLE_RATE = 16000  # Hz: speech is decoded to mono at this rate (the mel recipe's rate)
X264_CRF = 18  # libx264 constant rate factor of the output mp4
X264_PRESET = "medium"  # libx264 speed preset of the output mp4
VIDEO_CODEC = "auto"  # encode.codec: NVENC when rendering on CUDA and ffmpeg can use it, else libx264
PRECISION = "fp32"  # IEEE float32, TF32 off (pipeline/engine.py:PRECISIONS lists the others)
ENGINE = "torch"  # what evaluates the model (pipeline/onnx_backend.py:ENGINES lists the others)
CPU_BATCH_SIZE = (
    1  # frames per engine batch when every device is a CPU (fastest there: benchmarks/RESULTS.md)
)
GPU_BATCH_SIZE = 8  # frames per engine batch on GPUs, and of an engine built without a batch size
EXTRACT_BATCH_SIZE = 16  # frames encoded per batch by `edtalk extract`
