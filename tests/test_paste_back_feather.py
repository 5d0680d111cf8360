"""Paste-back blends the generated face in over a feathered edge of the documented width."""

from __future__ import annotations

import numpy as np
import pytest

from edtalk_cli.video import CropTransform, paste_back

SIDE = 120  # the crop square in frame pixels
X0 = Y0 = 40


def _pasted(feather: float) -> np.ndarray:
    """A white face pasted into a black 200x200 frame, as int16."""
    frame = np.zeros((200, 200, 3), dtype=np.uint8)
    face = np.full((64, 64, 3), 255, dtype=np.uint8)
    transform = CropTransform(x0=X0, y0=Y0, side=SIDE, size=64, image_shape=(200, 200))
    return paste_back(frame, face, transform, feather=feather).astype(np.int16)


def _ramp(profile: np.ndarray) -> tuple[int, int]:
    """(pixels strictly between black and white, largest step between neighbours) of a profile
    running from outside the square to its centre."""
    between = int(np.count_nonzero((profile > 0) & (profile < 255)))
    return between, int(np.abs(np.diff(profile)).max())


@pytest.mark.parametrize("feather", [0.1, 0.2])
def test_the_face_fades_in_over_feather_times_side_pixels(feather: float) -> None:
    out = _pasted(feather)
    assert (out[:, :X0] == 0).all() and (out[Y0 + SIDE // 2, X0 + SIDE // 2] == 255).all()
    width = feather * SIDE  # the documented ramp width, in frame pixels along an axis
    middle = Y0 + SIDE // 2
    profiles = {
        "left": out[middle, : X0 + SIDE // 2, 0],
        "right": out[middle, X0 + SIDE // 2 :, 0][::-1],
        "top": out[: Y0 + SIDE // 2, middle, 0],
        "bottom": out[Y0 + SIDE // 2 :, middle, 0][::-1],
    }
    for edge, profile in profiles.items():
        between, step = _ramp(profile)
        assert abs(between - width) <= 2, (edge, between, width)  # intermediate values over the band
        # no step across the edge: a smoothstep of this width rises at most 1.5 * 255 / width a pixel
        assert step <= 1.5 * 255 / width + 4, (edge, step)
        assert (np.diff(profile) >= 0).all(), edge  # and rises monotonically towards the centre
