"""A worker prepares its next job (audio features, photo crops) while it renders the current one.

Real renders with the small random-init model (``tiny_weights``), a real photo cropped with dlib
landmarks, real ffmpeg. ``$EDTALK_PREPARE_AHEAD=1`` forces the overlap on the CPU.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_speech_clips
from PIL import Image

from edtalk_cli.manifest import load_manifest
from edtalk_cli.runner import BatchRunner, RunOptions
from edtalk_cli.runner.worker import PREPARE_AHEAD_ENV
from edtalk_cli.video import iter_video_frames

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real"


@pytest.fixture(scope="module")
def media(tmp_path_factory, parity) -> Path:
    """crop.png (a 256x256 face crop), a real photo at 840x1024 and speech of 12 and 16 frames."""
    root = tmp_path_factory.mktemp("prepare_media")
    Image.open(parity / "source.png").save(root / "crop.png")
    Image.open(REAL / "uncrop_face.jpg").save(root / "photo.png")
    write_speech_clips(root, parity, (12, 16))
    (root / "broken.wav").write_bytes(np.random.default_rng(0).bytes(3000))  # fixed, undecodable bytes
    return root


def _manifest(directory: Path, media: Path, out: str, jobs: list[tuple[str, str, str]]) -> Path:
    """jobs: (name, audio file, source block)."""
    lines = ["version: 1", "defaults:", f'  output: "{out}/{{name}}.mp4"', "jobs:"]
    for name, audio, source in jobs:
        lines += [f"  - name: {name}", f"    audio: {media / audio}", f"    source: {source}"]
    path = directory / f"{out}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(manifest: Path, weights: Path, *, ahead: bool, monkeypatch) -> tuple[list, list[tuple]]:
    """Outcomes and the (event, payload, wall-clock time) stream of an inline run on the CPU."""
    monkeypatch.setenv(PREPARE_AHEAD_ENV, "1" if ahead else "0")
    events: list[tuple] = []
    runner = BatchRunner(RunOptions(devices="cpu", weights=weights, batch_size=4, cache=False))
    outcomes = runner.run(
        list(load_manifest(manifest).jobs), on_event=lambda e, p: events.append((e, p, time.time()))
    )
    return outcomes, events


def test_jobs_prepared_ahead_render_the_same_frames_and_overlap_the_job_before(
    tmp_path, media, tiny_weights, monkeypatch
):
    jobs = [
        ("first", "s12.wav", f"{{path: {media / 'crop.png'}, crop: none}}"),
        ("photo", "s16.wav", f"{{path: {media / 'photo.png'}}}"),  # dlib landmarks, aligned, pasted back
        ("last", "s12.wav", f"{{path: {media / 'photo.png'}, crop: box}}"),
    ]
    plain, plain_events = _run(
        _manifest(tmp_path, media, "plain", jobs), tiny_weights, ahead=False, monkeypatch=monkeypatch
    )
    ahead, ahead_events = _run(
        _manifest(tmp_path, media, "ahead", jobs), tiny_weights, ahead=True, monkeypatch=monkeypatch
    )
    assert [o.status for o in plain] == [o.status for o in ahead] == ["done"] * 3
    for a, b in zip(plain, ahead, strict=True):
        frames_a = np.stack(list(iter_video_frames(a.output)))
        frames_b = np.stack(list(iter_video_frames(b.output)))
        assert frames_a.shape == frames_b.shape and len(frames_a) == a.frames
        assert np.array_equal(frames_a, frames_b), a.name
    assert frames_a.shape[1:3] == (1024, 840)  # pasted back into the real photo

    assert not any(e == "job_prepared_ahead" for e, _, _ in plain_events)
    prepared = {p["name"]: p for e, p, _ in ahead_events if e == "job_prepared_ahead"}
    assert sorted(prepared) == ["last", "photo"]  # every job but the first
    done_at = {p["name"]: t for e, p, t in ahead_events if e == "job_done"}
    # each job's preparation began while the job before it was still rendering (one job ahead)
    assert prepared["photo"]["started"] < done_at["first"]
    assert done_at["first"] < prepared["last"]["started"] < done_at["photo"]
    assert prepared["photo"]["ready"] >= prepared["photo"]["started"]


def test_a_job_with_corrupt_audio_prepared_ahead_fails_alone_with_its_usual_error(
    tmp_path, media, tiny_weights, monkeypatch
):
    crop = f"{{path: {media / 'crop.png'}, crop: none}}"
    jobs = [("before", "s12.wav", crop), ("corrupt", "broken.wav", crop), ("after", "s12.wav", crop)]
    plain, _ = _run(
        _manifest(tmp_path, media, "plain", jobs), tiny_weights, ahead=False, monkeypatch=monkeypatch
    )
    ahead, events = _run(
        _manifest(tmp_path, media, "ahead", jobs), tiny_weights, ahead=True, monkeypatch=monkeypatch
    )
    assert [o.status for o in ahead] == ["done", "failed", "done"]
    assert [o.frames for o in ahead] == [12, 0, 12]
    failed = ahead[1]
    assert "jobs[1].audio: could not decode audio" in failed.error and "broken.wav" in failed.error
    assert failed.error == plain[1].error.replace("plain.yaml", "ahead.yaml")  # as without overlap
    assert not Path(failed.output).exists()
    # its audio was read in the background while 'before' rendered; the error surfaced in its own task
    assert {p["name"] for e, p, _ in events if e == "job_prepared_ahead"} == {"corrupt", "after"}
