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
)
from edtalk_cli.training.evaluate import read_expression
from edtalk_cli.weights import load_model

DEMO_DIR = Path(__file__).resolve().parents[1] / "edtalk_cli" / "data" / "demo"

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def demo_gen():
    return load_model(DEMO_DIR, "edtalk")[0].eval()


def test_folded_calibration_is_the_affine_map_on_the_anchored_columns_only(demo_gen) -> None:
    gain = np.array([0.5, 1.0, 2.0, 3.0, 1.5, 0.8, 1.2], dtype=np.float32)
    offset = np.array([0.1, -0.2, 0.0, 0.3, -0.05, 0.0, 0.4], dtype=np.float32)
    calibration = ExpressionCalibration(gain, offset, np.ones(7, dtype=np.float32))
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


def test_calibration_undoes_the_shrinkage_of_the_readout_on_held_out_faces(demo_gen) -> None:
    calibration = measure_expression_calibration(demo_gen, 64, frames=512)
    assert np.all(calibration.gain > 1.0), calibration.gain  # least-squares readings are too weak
    folded = copy.deepcopy(demo_gen)
    folded.load_state_dict(fold_expression_calibration(demo_gen.state_dict(), demo_gen, calibration))

    read, exact = read_expression(demo_gen, 64, 256, seed=5)  # held-out identities
    read_cal, exact_cal = read_expression(folded, 64, 256, seed=5)
    assert np.array_equal(exact, exact_cal)
    r = np.array([np.corrcoef(read[:, k], exact[:, k])[0, 1] for k in range(7)])
    r_cal = np.array([np.corrcoef(read_cal[:, k], exact[:, k])[0, 1] for k in range(7)])
    np.testing.assert_allclose(r_cal, r, atol=1e-4)  # an affine map per factor keeps what is read

    spread = read.std(axis=0) / exact.std(axis=0)
    spread_cal = read_cal.std(axis=0) / exact.std(axis=0)
    smile = 2
    assert spread[smile] < 0.75, spread  # uncalibrated: the smile comes out well under full strength
    readable = r >= 0.5
    assert readable.sum() >= 4, r
    assert np.all((spread_cal[readable] > 0.75) & (spread_cal[readable] < 1.35)), spread_cal
    # the slope of the readings on the truth moves towards 1 for every readable factor
    slope = np.array([np.polyfit(exact[:, k], read[:, k], 1)[0] for k in range(7)])
    slope_cal = np.array([np.polyfit(exact[:, k], read_cal[:, k], 1)[0] for k in range(7)])
    assert np.all(np.abs(1 - slope_cal[readable]) < np.abs(1 - slope[readable])), (slope, slope_cal)
