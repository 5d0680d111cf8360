"""Shared pytest helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def parity_dir() -> Path:
    """The parity-fixture directory: $EDTALK_PARITY_DIR, else <repo root>/../shared/parity.

    Fails (never skips) when it is missing: the parity tests are the proof of numerical equivalence.
    """
    env = os.environ.get("EDTALK_PARITY_DIR")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "parity"
    if not (path / "expected.npz").is_file():
        pytest.fail(
            f"parity fixtures not found in '{path}' (expected.npz missing); set EDTALK_PARITY_DIR to the "
            "directory holding expected.npz, speech.wav, ... (see shared/parity/README.md)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def parity() -> Path:
    """Fixture form of :func:`parity_dir`."""
    return parity_dir()


@pytest.fixture(scope="session")
def standin_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Official-layout stand-in checkpoints, written once per session by parity/weights.py.

    Returns kind -> path: ``{"edtalk": .../EDTalk.pt, "edtalk_lip_pose": .../EDTalk_lip_pose.pt,
    "audio2lip": .../Audio2Lip.pt}``. Shared by the whole session: copy a file before changing it.
    """
    import importlib.util

    source = parity_dir() / "weights.py"
    spec = importlib.util.spec_from_file_location("edtalk_parity_weights", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {kind: Path(p) for kind, p in module.write_checkpoints(tmp_path_factory.mktemp("standin")).items()}
