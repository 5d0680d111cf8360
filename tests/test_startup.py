"""Start-up: the light commands never import torch, and audio is read without librosa."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from edtalk_cli.audio import load_audio

REPO_ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import json, sys
sys.argv = ["edtalk", *sys.argv[1:]]
from edtalk_cli.cli import main
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted(m for m in ("torch", "librosa", "numba") if m in sys.modules)
print("\\n" + json.dumps({"code": code, "heavy": heavy}))
"""


def _run(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [("--help",), ("--version",), ("schema",), ("validate", "examples/demo.yaml"), ("weights", "--help")],
    ids=["help", "version", "schema", "validate", "weights-help"],
)
def test_light_commands_do_not_import_torch_or_librosa(args):
    result = _run(*args)
    assert result == {"code": 0, "heavy": []}


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (16000, 2), (44100, 2), (22050, 3), (8000, 1)])
def test_soundfile_reading_gives_librosa_samples(tmp_path, rate, channels):
    rng = np.random.default_rng(rate + channels)
    samples = (0.2 * rng.normal(size=(rate // 2 + 7, channels))).astype(np.float32)
    path = tmp_path / "voice.wav"
    sf.write(path, samples, rate, subtype="PCM_16")
    expected, _ = librosa.load(path, sr=16000, mono=True)
    np.testing.assert_array_equal(load_audio(path), expected)
