"""One job's render settings: a frozen RenderOptions, resolved once per job by the run, used as it is."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
from PIL import Image

from edtalk_cli import defaults
from edtalk_cli.audio import load_audio
from edtalk_cli.manifest import load_manifest
from edtalk_cli.model.generator import _EDTalkBase
from edtalk_cli.pipeline.options import RenderOptions
from edtalk_cli.runner import BatchRunner, RunOptions, worker

FRAMES = 16  # of each job's speech, at 25 fps


def test_render_options_are_frozen_with_the_defaults_of_a_render() -> None:
    options = RenderOptions()
    assert (options.precision, options.batch_size, options.engine) == (
        defaults.PRECISION,
        defaults.GPU_BATCH_SIZE,
        defaults.ENGINE,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch_size = 2  # type: ignore[misc]
    smaller = dataclasses.replace(options, batch_size=2)
    assert (smaller.batch_size, options.batch_size) == (2, defaults.GPU_BATCH_SIZE)
    assert smaller.same_model(options) and not smaller.same_model(
        dataclasses.replace(options, precision="fp64")
    )
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        RenderOptions(batch_size=0)


def test_run_options_give_each_job_its_batch_size_else_the_runs_else_the_devices(tmp_path, parity) -> None:
    manifest = _manifest(tmp_path, parity, {"own": 3, "run": None})
    own, run = load_manifest(manifest).jobs
    assert RunOptions().render_options(own, ["cpu"]).batch_size == 3
    assert RunOptions().render_options(run, ["cpu"]).batch_size == defaults.CPU_BATCH_SIZE
    assert RunOptions().render_options(run, ["cuda:0"]).batch_size == defaults.GPU_BATCH_SIZE
    options = RunOptions(batch_size=5, precision="fp64", threads=2).render_options(run, ["cpu"], threads=3)
    assert options == RenderOptions(precision="fp64", batch_size=5, threads=3)


def test_jobs_with_their_own_batch_sizes_share_one_renderer_and_leave_it_as_it_was_built(
    tmp_path, parity, tiny_weights, monkeypatch
) -> None:
    monkeypatch.setattr(worker, "_renderers", {})  # this run loads its own renderer
    batches: list[int] = []  # frames per generator call, in call order
    synthesize = _EDTalkBase.synthesize

    def recorded(self, source, coeffs, *args, **kwargs):
        batches.append(int(coeffs.shape[0]))
        return synthesize(self, source, coeffs, *args, **kwargs)

    monkeypatch.setattr(_EDTalkBase, "synthesize", recorded)
    jobs = list(load_manifest(_manifest(tmp_path, parity, {"twos": 2, "threes": 3})).jobs)
    runner = BatchRunner(RunOptions(devices="cpu", backend="inline", weights=tiny_weights, cache=False))

    outcomes = {o.name: o for o in runner.run(jobs)}

    assert {name: (o.status, o.frames, o.batch_size) for name, o in outcomes.items()} == {
        "twos": ("done", FRAMES, 2),
        "threes": ("done", FRAMES, 3),
    }
    # each job was rendered in its own batches: 16 = 8 x 2, and 16 = 5 x 3 + 1
    assert Counter(batches) == Counter({2: 8, 3: 5, 1: 1})
    (renderer,) = worker._renderers.values()  # one model, one renderer for both jobs
    first = batches[0]  # the batch size of the job that loaded the renderer
    assert renderer.options.batch_size == renderer.engine.batch_size == first


def _manifest(directory: Path, parity: Path, batch_sizes: dict[str, int | None]) -> Path:
    """A manifest of jobs (name -> the job's ``batch_size``) on the parity face and speech, cropped
    as given (``crop: none``)."""
    Image.open(parity / "source.png").save(directory / "face.png")
    sf.write(
        directory / "speech.wav", load_audio(parity / "speech.wav")[: FRAMES * 640], defaults.SAMPLE_RATE
    )
    lines = [
        "version: 1",
        "defaults:",
        "  source: {path: face.png, crop: none}",
        "  audio: speech.wav",
        '  output: "out/{name}.mp4"',
        "jobs:",
    ]
    for name, batch_size in batch_sizes.items():
        lines.append(f"  - name: {name}")
        if batch_size is not None:
            lines.append(f"    batch_size: {batch_size}")
    path = directory / "batch.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
