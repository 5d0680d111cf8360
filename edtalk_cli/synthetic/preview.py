"""Contact sheets of the synthetic world (for docs and quick visual checks)."""

from __future__ import annotations

import numpy as np

from edtalk_cli.synthetic.factors import EMOTIONS, Expression, Identity, Mouth, Pose, emotion_expression
from edtalk_cli.synthetic.render import Renderer

SHEET_MOUTHS = (
    Mouth(0.0, 0.0),
    Mouth(0.3, 0.0),
    Mouth(0.6, 0.0),
    Mouth(1.0, 0.0),
    Mouth(0.15, 1.0),
    Mouth(0.2, -1.0),
    Mouth(0.6, -0.8),
    Mouth(0.5, 0.9),
)
SHEET_POSES = (
    Pose(yaw=-35),
    Pose(yaw=-15),
    Pose(yaw=15),
    Pose(yaw=35),
    Pose(pitch=-15),
    Pose(pitch=15),
    Pose(roll=-12),
    Pose(roll=10, tx=0.06, ty=0.04, scale=1.08),
)


def contact_sheet(size: int = 96, seed: int = 0, n_identities: int = 3) -> np.ndarray:
    """(rows*size, 8*size, 3) uint8 grid.

    Rows: the 8 emotions (columns, intensity 1) for ``n_identities`` identities, then 8 mouth
    shapes, then 8 head poses.
    """
    r = Renderer(size)
    rows = []
    for k in range(n_identities):
        ident = Identity.from_seed(seed + k)
        rows.append([r.render(ident, expression=emotion_expression(e)).image for e in EMOTIONS])
    ident = Identity.from_seed(seed + n_identities)
    rows.append([r.render(ident, mouth=m).image for m in SHEET_MOUTHS])
    ident = Identity.from_seed(seed + n_identities + 1)
    rows.append(
        [r.render(ident, pose=p, mouth=Mouth(0.25, 0.0), expression=Expression()).image for p in SHEET_POSES]
    )
    return np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
