"""Expression readout calibration: the folded map is exact, touches only the 7 anchored
expression coefficients, and undoes the shrinkage of the shipped model's readings on unseen faces."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk_cli.training import stages
from edtalk_cli.training.calibration import (
    ExpressionCalibration,
    fold_expression_calibration,
    measure_expression_calibration,
    read_expression,
)
from edtalk_cli.weights import load_model

DEMO_DIR = Path(__file__).resolve().parents[1] / "edtalk_cli" / "data" / "demo"

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def demo_gen():
    return load_model(DEMO_DIR, "edtalk")[0].eval()


def test_folded_calibration_is_the_affine_map_on_the_anchored_columns_only(demo_gen) -> None:
    gain = np.array([0.5, 1.0, 2.0, 3.0, 1.5, 0.8, 1.2], dtype=np.float32)
    offset = np.array([0.1, -0.2, 0.0, 0.3, -0.05, 0.0, 0.4], dtype=np.float32)
    calibration = ExpressionCalibration(gain, offset)
    folded = copy.deepcopy(demo_gen)
    folded.load_state_dict(fold_expression_calibration(demo_gen.state_dict(), demo_gen, calibration))

    latents = torch.randn(16, demo_gen.config.style_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, after = demo_gen.motion_coeffs(latents), folded.motion_coeffs(latents)  # (16, K)
    cols, _ = stages.expression_columns(demo_gen)
    expected = before[:, cols] * torch.from_numpy(gain) + torch.from_numpy(offset)
    torch.testing.assert_close(after[:, cols], expected, atol=1e-5, rtol=1e-5)
    others = [c for c in range(before.shape[1]) if c not in cols]  # mouth, pose, 3 free expression
    assert len(others) == before.shape[1] - 7
    assert torch.equal(after[:, others], before[:, others])
    # the source encoding (latent and feature maps) the decoder reads is untouched
    frame = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(demo_gen.encode_latent(frame), folded.encode_latent(frame))


def _spread_and_r(gen, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per factor on 256 held-out frames: std(read) / std(truth), and the correlation."""
    read, exact = read_expression(gen, 64, 256, seed=seed)
    r = np.array([np.corrcoef(read[:, k], exact[:, k])[0, 1] for k in range(7)])
    return read.std(axis=0) / exact.std(axis=0), r


@pytest.mark.slow
def test_shipped_model_reads_expression_at_full_strength_on_unseen_faces(demo_gen) -> None:
    """The demo model is exported with --calibrate-expression: for every factor it reads, its
    readings on unseen faces have the spread of the truth."""
    spread, r = _spread_and_r(demo_gen)
    readable = r >= 0.5
    assert readable.sum() >= 5, r
    assert np.all((spread[readable] > 0.75) & (spread[readable] < 1.35)), (spread, r)


@pytest.mark.slow
def test_calibration_restores_the_spread_of_shrunken_readings(demo_gen) -> None:
    """Halve the shipped model's readings (what least squares does to a factor read at r 0.5),
    then measure and fold a calibration: it finds gains of about 2 and restores the spread on
    unseen faces, without changing what is read."""
    half = ExpressionCalibration(np.full(7, 0.5, np.float32), np.zeros(7, np.float32))
    shrunk = copy.deepcopy(demo_gen)
    shrunk.load_state_dict(fold_expression_calibration(demo_gen.state_dict(), demo_gen, half))
    spread_shrunk, r = _spread_and_r(shrunk)
    readable = r >= 0.5
    assert np.all(spread_shrunk[readable] < 0.7), spread_shrunk

    calibration = measure_expression_calibration(shrunk, 64, frames=512)
    assert np.all((calibration.gain[readable] > 1.5) & (calibration.gain[readable] < 2.7)), calibration.gain
    restored = copy.deepcopy(shrunk)
    restored.load_state_dict(fold_expression_calibration(shrunk.state_dict(), shrunk, calibration))
    spread_restored, r_restored = _spread_and_r(restored)
    np.testing.assert_allclose(r_restored, r, atol=1e-4)  # an affine map per factor keeps what is read
    assert np.all((spread_restored[readable] > 0.75) & (spread_restored[readable] < 1.35)), spread_restored
