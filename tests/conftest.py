"""Shared pytest helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Literal, overload

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@overload
def run_cli(
    *args: str | Path,
    cwd: Path,
    input: str | None = ...,
    timeout: float = ...,
    background: Literal[False] = ...,
    new_session: bool = ...,
    stdout: int = ...,
    stderr: int = ...,
    **env: str | None,
) -> subprocess.CompletedProcess: ...


@overload
def run_cli(
    *args: str | Path,
    cwd: Path,
    input: None = ...,
    timeout: float = ...,
    background: Literal[True],
    new_session: bool = ...,
    stdout: int = ...,
    stderr: int = ...,
    **env: str | None,
) -> subprocess.Popen: ...


def run_cli(
    *args: str | Path,
    cwd: Path,
    input: str | None = None,
    timeout: float = 900,
    background: bool = False,
    new_session: bool = False,
    stdout: int = subprocess.PIPE,
    stderr: int = subprocess.PIPE,
    **env: str | None,
) -> subprocess.CompletedProcess | subprocess.Popen:
    """``edtalk ARGS`` in a new process in ``cwd`` (``python -m edtalk_cli``), text output captured.

    Isolated from the user: no user emotion presets (``EDTALK_PRESETS`` names an absent folder in
    ``cwd``) and the session's private cache (``EDTALK_CACHE``, set by ``_private_edtalk_cache``);
    a 400-column terminal so messages are not wrapped. ``env``: more variables (they win; ``None``
    removes one, e.g. ``COLUMNS=None`` for output written to pipes as in CI logs).

    By default waits (at most ``timeout`` s) and returns the finished process. ``background=True``
    returns the running ``Popen`` at once, for tests that read its events as they come or signal it
    (``new_session=True``: its own process group, as a shell gives a command). ``stdout``/``stderr``:
    ``subprocess.PIPE`` (captured) or ``subprocess.DEVNULL``.
    """
    if background and input is not None:
        raise ValueError("run_cli: input is only for a run that waits (background=False)")
    command = [sys.executable, "-m", "edtalk_cli", *map(str, args)]
    variables = {**os.environ, "EDTALK_PRESETS": str(cwd / "no-user-presets"), "COLUMNS": "400", **env}
    variables = {name: value for name, value in variables.items() if value is not None}
    if background:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=variables,
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=new_session,
        )
    return subprocess.run(
        command,
        cwd=cwd,
        input=input,
        stdout=stdout,
        stderr=stderr,
        text=True,
        env=variables,
        timeout=timeout,
        start_new_session=new_session,
    )


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


def write_speech_clips(root: Path, parity: Path, frame_counts: tuple[int, ...]) -> None:
    """``root/s{N}.wav``: the parity speech (16 kHz) cut to N frames at 25 fps (640 samples a frame),
    repeated from its start where N frames are longer than it."""
    import soundfile as sf

    from edtalk_cli.audio import load_audio

    speech = load_audio(parity / "speech.wav")
    for frames in frame_counts:
        sf.write(root / f"s{frames}.wav", np.resize(speech, frames * 640), 16000)


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


TINY_CONFIG = dict(
    size=64, style_dim=64, channel_base=1024, channel_max=64, eem_hidden=16, audio_widths=(8, 8, 16, 16, 32)
)
EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights directory in the official layout holding a small random-init model (64 px)."""
    from edtalk_cli.model import Audio2Lip, EDTalkGenerator, LipPoseGenerator, ModelConfig

    config = ModelConfig(**TINY_CONFIG)
    root = tmp_path_factory.mktemp("tiny_weights")
    torch.manual_seed(0)
    torch.save({"gen": EDTalkGenerator(config).state_dict()}, root / "EDTalk.pt")
    torch.save({"gen": LipPoseGenerator(config).state_dict()}, root / "EDTalk_lip_pose.pt")
    torch.save({"audio2lip": Audio2Lip(config).state_dict()}, root / "Audio2Lip.pt")
    presets = root / "predefined_exp_weights"
    presets.mkdir()
    rng = np.random.default_rng(0)
    for name in EMOTIONS:
        np.save(presets / f"{name}.npy", rng.normal(size=(1, 10)).astype(np.float32))
    return root


@pytest.fixture(scope="session", autouse=True)
def _private_edtalk_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the render cache and file-hash cache of the tests out of the user's cache dir."""
    if os.environ.get("EDTALK_CACHE"):
        yield
        return
    os.environ["EDTALK_CACHE"] = str(tmp_path_factory.mktemp("edtalk_cache"))
    try:
        yield
    finally:
        os.environ.pop("EDTALK_CACHE", None)


@pytest.fixture(scope="session")
def gfpgan_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stand-in GFPGANv1.4 weights in the official layout: spandrel's own GFPGAN architecture
    (random init, seed 0), its state dict saved under ``params_ema`` with torch.save, in float16
    (175 MB instead of 350 MB; spandrel still detects and loads it as GFPGAN). Written once per
    session as ``<dir>/GFPGANv1.4.pth``.
    """
    from edtalk_cli.weights.enhancer import import_spandrel

    import_spandrel()
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    state = {k: v.half() if v.is_floating_point() else v for k, v in GFPGAN().state_dict().items()}
    path = tmp_path_factory.mktemp("gfpgan") / "GFPGANv1.4.pth"
    torch.save({"params_ema": state}, path)
    return path
