"""Start-up: the light commands never import torch, and audio is read without librosa."""

from __future__ import annotations

import importlib
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
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

# what `edtalk --help` and `--version` never need: media, audio and model libraries, and the
# manifest model (pydantic models and YAML, built when a command reads a manifest)
HELP_UNNEEDED = (
    "cv2",
    "edtalk_cli.manifest.spec",
    "edtalk_cli.video.crop",
    "librosa",
    "numba",
    "numpy",
    "onnxruntime",
    "PIL",
    "scipy",
    "soundfile",
    "torch",
    "yaml",
)


def _run(*args: str) -> tuple[int, list[str]]:
    """Exit code of ``edtalk ARGS`` in a fresh interpreter, and the modules it loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["code"], result["modules"]


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted(set(modules) & set(names))


@pytest.mark.parametrize(
    "args",
    [("--help",), ("--version",), ("schema",), ("validate", "examples/demo.yaml"), ("weights", "--help")],
    ids=["help", "version", "schema", "validate", "weights-help"],
)
def test_light_commands_do_not_import_torch_or_librosa(args):
    code, modules = _run(*args)
    assert (code, _loaded(modules, ("torch", "librosa", "numba"))) == (0, [])


@pytest.mark.parametrize(
    "args",
    [("--help",), ("--version",), ("render", "--help"), ("validate", "--help"), ("weights", "--help")],
    ids=["help", "version", "render-help", "validate-help", "weights-help"],
)
def test_help_and_version_load_no_media_audio_model_or_manifest_modules(args):
    code, modules = _run(*args)
    assert (code, _loaded(modules, HELP_UNNEEDED)) == (0, [])


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (16000, 2), (44100, 2), (22050, 3), (8000, 1)])
def test_soundfile_reading_gives_librosa_samples(tmp_path, rate, channels):
    rng = np.random.default_rng(rate + channels)
    samples = (0.2 * rng.normal(size=(rate // 2 + 7, channels))).astype(np.float32)
    path = tmp_path / "voice.wav"
    sf.write(path, samples, rate, subtype="PCM_16")
    expected, _ = librosa.load(path, sr=16000, mono=True)
    np.testing.assert_array_equal(load_audio(path), expected)


@pytest.mark.parametrize("package", ["edtalk_cli.video", "edtalk_cli.manifest"])
def test_lazy_package_names_resolve_to_their_submodules(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(module._HOMES)
    for name in module.__all__:
        home = importlib.import_module(f"{package}.{module._HOMES[name]}")
        assert getattr(module, name) is getattr(home, name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018
