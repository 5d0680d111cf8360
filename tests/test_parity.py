"""Numerical parity with the official EDTalk inference code (shared/parity fixtures).

The stand-in checkpoints are written in the official layout by the fixtures' own weights.py
and loaded through the same loader users use; every expected output was produced by the
official code in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from edtalk_cli.audio import audio_features, mel_windows, smooth_mouth_coeffs
from edtalk_cli.pipeline.engine import RenderEngine, tensor_float32
from edtalk_cli.weights import load_model

IMAGE_KEYS = [
    "A_use_exp_weight",
    "A",
    "V",
    "V_use_exp_weight",
    "lip_pose_audio",
    "lip_pose_V",
    "lip_pose_forward",
    "A_use_exp_weight_audio_frame7",
]


def _png(parity, name: str) -> np.ndarray:
    return np.asarray(Image.open(parity / f"{name}.png").convert("RGB"))


def _official_outputs(
    parity, checkpoints, precision: str, device: str = "cpu", backend: Callable | None = None
) -> dict[str, np.ndarray]:
    """Reproduce every fixture entry through the loaders, the audio module and the engine.

    ``benchmarks/gpu_check.py`` calls this with ``device="cuda"``. ``backend(kind, model)``, when
    given, returns what evaluates each loaded model instead: a callable on mel windows for
    ``audio2lip``, an engine for the generators (tests/test_onnx.py passes onnxruntime's).
    """

    def torch_backend(kind: str, model):
        if kind == "audio2lip":
            return model
        return RenderEngine(model, device=device, precision=precision, batch_size=4)

    backend = backend or torch_backend
    expected = np.load(parity / "expected.npz")
    dtype = torch.float64 if precision == "fp64" else torch.float32
    src, a, b, c = (_png(parity, n) for n in ("source", "drive_a", "drive_b", "drive_c"))
    lip = expected["lip_coeffs"]  # (1, 20)
    exp_weights = expected["exp_weights"]  # (1, 10)
    out: dict[str, np.ndarray] = {}

    audio2lip, _ = load_model(checkpoints["audio2lip"], "audio2lip", dtype=dtype)
    audio2lip = backend("audio2lip", audio2lip.to(device))
    feats = audio_features(parity / "speech.wav")
    with torch.no_grad(), tensor_float32(precision == "tf32"):
        # float64 windows straight from the float64 mel, cast to the run's dtype
        windows = torch.from_numpy(mel_windows(feats.mel, feats.num_frames)).to(device, dtype)[:, None]
        mouth = audio2lip(windows).cpu()  # (T, 20) from (T, 1, 80, 16)
        smoothed = smooth_mouth_coeffs(mouth)
    out["mel"], out["mel_windows"] = feats.mel, feats.windows
    out["audio2lip"], out["audio2lip_smoothed"] = mouth.double().numpy(), smoothed.double().numpy()

    full, _ = load_model(checkpoints["edtalk"], "edtalk")
    engine = backend("edtalk", full)
    engine.set_source(src)
    tracks = engine.extract_coefficients([a, b, c])  # mouth/pose/expression of each driver

    def render(mouth, pose, expression) -> np.ndarray:
        coeffs = engine.coefficient_matrix(1, mouth, pose, expression)
        return next(engine.render_batches(coeffs)).double().cpu().numpy()

    out["A_use_exp_weight"] = render(lip, tracks.pose[0], exp_weights)
    out["A"] = render(lip, tracks.pose[0], tracks.expression[1])
    out["V"] = render(tracks.mouth[0], tracks.pose[1], tracks.expression[2])
    out["V_use_exp_weight"] = render(tracks.mouth[0], tracks.pose[1], exp_weights)
    out["A_use_exp_weight_audio_frame7"] = render(smoothed[7].numpy(), tracks.pose[0], exp_weights)

    lip_pose, _ = load_model(checkpoints["edtalk_lip_pose"], "edtalk_lip_pose")
    engine = backend("edtalk_lip_pose", lip_pose)
    engine.set_source(src)
    tracks = engine.extract_coefficients([a, b])
    out["lip_pose_audio"] = render(lip, tracks.pose[0], None)
    out["lip_pose_V"] = render(tracks.mouth[0], tracks.pose[1], None)
    out["lip_pose_forward"] = render(tracks.mouth[0], tracks.pose[0], None)
    return out


@pytest.fixture(scope="module")
def expected(parity):
    return np.load(parity / "expected.npz")


@pytest.fixture(scope="module")
def outputs_fp64(parity, standin_checkpoints):
    return _official_outputs(parity, standin_checkpoints, "fp64")


@pytest.fixture(scope="module")
def outputs_fp32(parity, standin_checkpoints):
    return _official_outputs(parity, standin_checkpoints, "fp32")


@pytest.mark.slow
@pytest.mark.parametrize("key", ["mel", "mel_windows", "audio2lip", "audio2lip_smoothed", *IMAGE_KEYS])
def test_float64_matches_official(outputs_fp64, expected, key):
    ours, ref = outputs_fp64[key], expected[key]
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-6


@pytest.mark.parametrize("key", IMAGE_KEYS)
def test_float32_matches_official(outputs_fp32, expected, key):
    diff = np.abs(outputs_fp32[key] - expected[key])
    assert diff.mean() <= 1e-4
    assert (diff > 2 / 255).mean() < 1e-3


def test_float32_audio_matches_official(outputs_fp32, expected):
    assert np.abs(outputs_fp32["mel"] - expected["mel"]).max() <= 1e-4
    assert np.abs(outputs_fp32["audio2lip"] - expected["audio2lip"]).max() <= 1e-4
    assert np.abs(outputs_fp32["audio2lip_smoothed"] - expected["audio2lip_smoothed"]).max() <= 1e-4


def test_parity_outputs_are_not_trivial(expected):
    """Guard against a fixture that any output would match: the images differ from each other."""
    assert np.abs(expected["A"] - expected["A_use_exp_weight"]).mean() > 1e-3
    assert np.abs(expected["V"] - expected["lip_pose_V"]).mean() > 1e-3
