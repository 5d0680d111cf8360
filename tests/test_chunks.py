"""Chunked jobs in the batch runner: blocks of an interrupted run are resumed, a failed chunk fails
its job by name, and nothing of a chunked job is left beside its output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from edtalk_cli.audio import load_audio
from edtalk_cli.manifest.loader import load_manifest
from edtalk_cli.runner.batch import BatchRunner, RunOptions
from edtalk_cli.runner.chunks import chunk_dir, chunk_path, write_chunk
from edtalk_cli.runner.jobstate import JobState, plan_job_chunks
from edtalk_cli.runner.locks import OutputLock
from edtalk_cli.video import iter_video_frames

FRAMES = 16  # 0.64 s at 25 fps: two chunks of 8 frames at chunk_frames 8, batch size 4


@pytest.fixture()
def manifest(tmp_path: Path, parity: Path) -> Path:
    """One 16-frame job ``long`` rendering the parity face (256x256, no crop) to out/long.mp4."""
    Image.open(parity / "source.png").save(tmp_path / "face.png")
    sf.write(tmp_path / "speech.wav", load_audio(parity / "speech.wav")[: FRAMES * 640], 16000)
    path = tmp_path / "batch.yaml"
    path.write_text(
        "version: 1\n"
        "defaults:\n"
        f"  source: {{path: {tmp_path / 'face.png'}, crop: none}}\n"
        '  output: "out/{name}.mp4"\n'
        "jobs:\n"
        "  - name: long\n"
        f"    audio: {tmp_path / 'speech.wav'}\n"
    )
    return path


def _runner(weights: Path, chunk_frames: int) -> BatchRunner:
    return BatchRunner(
        RunOptions(devices="cpu", weights=weights, cache=False, chunk_frames=chunk_frames, batch_size=4)
    )


def _left_beside(output: Path) -> list[str]:
    return sorted(p.name for p in output.parent.iterdir() if p.name.startswith("."))


def test_blocks_of_an_interrupted_run_are_joined_not_rendered_again(tmp_path, manifest, tiny_weights):
    job = load_manifest(manifest).jobs[0]
    whole = _runner(tiny_weights, 0).run([job.model_copy(update={"output": tmp_path / "whole.mp4"})])[0]
    assert whole.status == "done"
    reference = np.stack(list(iter_video_frames(tmp_path / "whole.mp4")))  # (16, 256, 256, 3)
    runner = _runner(tiny_weights, 8)
    planned = runner.job_for(job)
    state = JobState(
        planned,
        str(planned.output),
        OutputLock(planned.output),
        runner.options.render_options(planned, runner.slots),
    )
    state.fingerprint = runner.fingerprint(planned)
    plan = plan_job_chunks(state, 8)
    assert plan == ([(0, 8), (8, 16)], [False, False])
    # what an earlier run of the same job left: chunk 0 finished (black, to tell it from a render)
    black = np.zeros((8, *reference.shape[1:]), dtype=np.uint8)
    write_chunk(iter(black), chunk_path(chunk_dir(planned.output), 0), 8)
    assert plan_job_chunks(state, 8) == ([(0, 8), (8, 16)], [True, False])

    outcome = runner.run([job])[0]
    assert outcome.status == "done", outcome.error
    assert outcome.chunks == 2 and "rendered in 2 chunks (1 resumed)" in outcome.notes
    joined = np.stack(list(iter_video_frames(planned.output))).astype(np.int16)
    assert joined.shape == reference.shape
    assert np.abs(joined[:8]).mean() < 2  # the kept block, not rendered again
    assert np.abs(joined[8:] - reference[8:]).mean() < 3 and joined[8:].mean() > 20  # chunk 1 rendered
    assert _left_beside(planned.output) == []  # blocks, lock and temporary files are gone


def test_a_failed_chunk_fails_its_job_naming_the_chunk_and_leaves_nothing(
    tmp_path, manifest, tiny_weights, monkeypatch
):
    monkeypatch.setenv("EDTALK_FAULTS", "long:MediaError:1:2")  # every chunk fails after 2 frames
    job = load_manifest(manifest).jobs[0]
    outcome = _runner(tiny_weights, 8).run([job])[0]
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.startswith("chunk 0 (frames 0-7): ")
    assert outcome.chunks == 2 and outcome.attempts == 1
    assert not job.output.exists()
    assert _left_beside(job.output) == []
