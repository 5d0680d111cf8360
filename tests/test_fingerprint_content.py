"""Resume fingerprints follow input contents: an input edited in place (same path, same size where
the format allows) makes its job render again; an untouched job is skipped."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_cli
from PIL import Image

from edtalk_cli.audio import load_audio
from edtalk_cli.hashing import sha256_file
from edtalk_cli.manifest import load_manifest
from edtalk_cli.runner import BatchRunner, RunOptions
from edtalk_cli.runner.fingerprint import read_sidecar
from edtalk_cli.synthetic.dataset import ClipSpec, write_clip
from edtalk_cli.video import iter_video_frames
from edtalk_cli.weights.bundle import ModelFiles

SR = 16000
FRAMES = 12


@pytest.fixture
def project(tmp_path: Path, parity: Path, tiny_weights: Path) -> Path:
    """A job reading a source image, a voice track, an emotion reference clip and its own weights."""
    shutil.copytree(tiny_weights, tmp_path / "weights")
    # an uncompressed PNG: its size depends only on its dimensions, so an edit keeps the size
    Image.open(parity / "source.png").convert("RGB").resize((64, 64)).save(
        tmp_path / "face.png", compress_level=0
    )
    sf.write(tmp_path / "voice.wav", load_audio(parity / "speech.wav")[: FRAMES * 640], SR)
    write_clip(
        ClipSpec(seed=3, identity_seed=9_000_999, n_frames=8, size=64, emotion="happy"), tmp_path / "ref"
    )
    (tmp_path / "m.yaml").write_text(
        "version: 1\n"
        "jobs:\n"
        "  - name: j\n"
        "    source: {path: face.png, crop: none}\n"
        "    audio: voice.wav\n"
        "    emotion: {video: ref/video.mp4, crop: none}\n"
        '    output: "out/j.mp4"\n'
    )
    return tmp_path


def _status(project: Path, *, new_process: bool = False) -> str:
    """Run the manifest with a fresh runner and return the job's status. ``new_process``: through
    `edtalk render` in a new process (a worker process keeps the models it has loaded)."""
    if new_process:
        report = project / "report.json"
        args = ["render", "m.yaml", "--devices", "cpu", "--weights", "weights", "--no-cache", "-q"]
        run = run_cli(*args, "--report", str(report), cwd=project, timeout=300)
        assert run.returncode == 0, run.stderr
        return json.loads(report.read_text())["jobs"][0]["status"]
    runner = BatchRunner(RunOptions(devices="cpu", weights=project / "weights", cache=False))
    outcome = runner.run(list(load_manifest(project / "m.yaml").jobs))[0]
    assert outcome.status in ("done", "skipped"), outcome
    return outcome.status


def _edit_voice(path: Path) -> None:
    speech, rate = sf.read(path)
    sf.write(path, speech[::-1].copy(), rate)  # the same samples reversed: same header, same size


def _edit_face(path: Path) -> None:
    pixels = np.asarray(Image.open(path)).copy()
    pixels[24:40, 24:40] = 255 - pixels[24:40, 24:40]
    Image.fromarray(pixels).save(path, compress_level=0)


def _edit_reference(path: Path) -> None:
    other = path.parents[1] / "other_ref"
    write_clip(ClipSpec(seed=4, identity_seed=9_000_998, n_frames=8, size=64, emotion="sad"), other)
    with open(path, "r+b") as fh:  # rewritten in place: the same path (and file) with other frames
        fh.write((other / "video.mp4").read_bytes())
        fh.truncate()


def _edit_weights(path: Path) -> None:
    checkpoint = torch.load(path, weights_only=True)
    for key, value in checkpoint["gen"].items():  # other values, same shapes and dtypes
        if value.is_floating_point():
            checkpoint["gen"][key] = value * 1.1
    torch.save(checkpoint, path)


EDITS: dict[str, tuple[str, Callable[[Path], None]]] = {  # what -> (file in the project, edit)
    "audio": ("voice.wav", _edit_voice),
    "source": ("face.png", _edit_face),
    "reference clip": ("ref/video.mp4", _edit_reference),
    "weights": ("weights/EDTalk.pt", _edit_weights),
}


@pytest.mark.parametrize(
    "edited", [pytest.param(e, marks=pytest.mark.slow) if e == "weights" else e for e in EDITS]
)
def test_an_input_edited_in_place_is_rendered_again(project: Path, edited: str) -> None:
    assert _status(project) == "done"
    assert _status(project) == "skipped"
    output = project / "out" / "j.mp4"
    before = output.read_bytes()
    name, edit = EDITS[edited]
    path = project / name
    size, inode = path.stat().st_size, path.stat().st_ino
    edit(path)
    assert path.stat().st_ino == inode  # edited in place, not replaced
    if edited != "reference clip":  # an mp4 with other frames cannot keep its size
        assert path.stat().st_size == size
    new_process = edited == "weights"
    assert _status(project, new_process=new_process) == "done", f"{edited} changed but the job was skipped"
    assert output.read_bytes() != before
    assert _status(project, new_process=new_process) == "skipped"


def test_weights_edited_in_place_reach_the_next_render_in_the_same_process(project: Path) -> None:
    """The inline backend renders in this process, which keeps its loaded models between runs."""
    output = project / "out" / "j.mp4"
    weights = project / "weights" / "EDTalk.pt"
    assert _status(project) == "done"
    before = np.stack(list(iter_video_frames(output))).astype(np.int16)
    first = read_sidecar(output)["components"]["weights"]
    _edit_weights(weights)
    assert _status(project) == "done"
    after = np.stack(list(iter_video_frames(output))).astype(np.int16)
    assert after.shape == before.shape
    assert np.abs(after - before).mean() > 1.0  # rendered by the edited generator, not the cached one
    recorded = read_sidecar(output)["components"]["weights"]
    assert recorded["files"]["EDTalk.pt"] == sha256_file(weights) != first["files"]["EDTalk.pt"]
    assert recorded == ModelFiles.from_dir(project / "weights", "auto").content_identity()
    assert _status(project) == "skipped"
