"""The Python API, manifests on stdin and JSONL jobs, driven from outside as a user would.

Real processes, files and ffmpeg, with the bundled demo model (no weights) and under a second
of speech per job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli

from edtalk_cli.video import iter_video_frames, probe_mp4

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FPS = 25


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """face.png (a synthetic face crop, the demo model's world) and voice.wav (0.6 s = 15 frames)."""
    root = tmp_path_factory.mktemp("api_media")
    (root / "face.png").write_bytes((EXAMPLES / "media" / "face.png").read_bytes())
    speech, rate = sf.read(EXAMPLES / "media" / "speech.wav")
    sf.write(root / "voice.wav", speech[: int(0.6 * rate)], rate)
    return root


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _edtalk(*args: str, cwd: Path, input: str | None = None):
    return run_cli(*args, cwd=cwd, input=input, timeout=300, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _frames(path: Path) -> int:
    return probe_mp4(path)["video"]["frames"]


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import edtalk_cli as edtalk

    emotion = sys.argv[1]
    manifest = {
        "defaults": {"source": {"path": "media/face.png", "crop": "none"}, "audio": "media/voice.wav",
                     "output": "out/{name}.mp4"},
        "jobs": [{"name": "calm"}, {"name": "moved", "emotion": emotion}],
    }
    assert edtalk.validate(manifest) == []
    bad = edtalk.validate({"jobs": [{"name": "x", "source": "media/face.png", "audio": "media/voice.wav",
                                     "emotion": "hapy"}]})
    report = edtalk.render(manifest, devices="cpu", threads=1, report="report.json")
    print(json.dumps({
        "ok": report.ok,
        "jobs": {o.name: [o.status, o.frames, o.output] for o in report.outcomes},
        "problem": [bad[0].path, bad[0].message, bad[0].fix, bad[0].format()],
    }))
    """
)


@pytest.mark.slow
def test_a_script_using_only_the_documented_api_renders_then_resumes_a_batch(tmp_path, media) -> None:
    (tmp_path / "media").symlink_to(media)
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT)

    def run(emotion: str) -> dict:
        done = subprocess.run(
            [sys.executable, str(script), emotion], cwd=tmp_path, capture_output=True, text=True, env=_env()
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run("happy")
    assert first["ok"] and {name: job[0] for name, job in first["jobs"].items()} == {
        "calm": "done",
        "moved": "done",
    }
    for name in ("calm", "moved"):
        info = probe_mp4(tmp_path / "out" / f"{name}.mp4")
        assert info["video"]["frames"] == 15 and info["audio"]  # 0.6 s at 25 fps, muxed with the voice
        assert Path(first["jobs"][name][2]) == tmp_path / "out" / f"{name}.mp4"
    # the problem carries the field path and the fix, and renders nothing
    path, message, fix, text = first["problem"]
    assert path == "jobs[0].emotion" and "'hapy'" in message and fix == "Did you mean 'happy'?"
    assert text.startswith("<dict>: jobs[0].emotion: unknown emotion or preset 'hapy'")
    assert not (tmp_path / "out" / "x.mp4").exists()
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["done"] == 2

    again = run("happy")  # nothing changed: both up to date (fingerprints), nothing re-rendered
    assert {name: job[0] for name, job in again["jobs"].items()} == {"calm": "skipped", "moved": "skipped"}
    changed = run("sad")  # one job's emotion changed: only that one renders again
    assert {name: job[0] for name, job in changed["jobs"].items()} == {"calm": "skipped", "moved": "done"}


def test_frames_streams_the_rendered_frames_with_their_times_without_writing(tmp_path, media) -> None:
    import edtalk_cli as edtalk

    (tmp_path / "media").symlink_to(media)
    job = {"name": "live", "source": {"path": "media/face.png", "crop": "none"}, "audio": "media/voice.wav"}
    streamed = list(edtalk.frames(job, base_dir=tmp_path, devices="cpu"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]  # nothing written
    assert [f.index for f in streamed] == list(range(15))
    assert [f.time_s for f in streamed] == pytest.approx([i / FPS for i in range(15)])
    assert all(f.image.dtype == np.uint8 and f.image.shape == streamed[0].image.shape for f in streamed)
    # the same job through render_job: the mp4 holds the same pictures (up to H.264 at crf 18)
    result = edtalk.render_job(job, base_dir=tmp_path, devices="cpu")
    assert result.status == "done" and result.frames == 15
    output = tmp_path / "out" / "dict" / "live.mp4"  # {manifest} of a dict is "dict"
    assert Path(result.output) == output
    decoded = np.stack(list(iter_video_frames(output))).astype(np.float64)
    frames = np.stack([f.image for f in streamed]).astype(np.float64)
    assert decoded.shape == frames.shape
    assert np.abs(decoded - frames).mean() < 3.0
    assert np.abs(np.diff(frames, axis=0)).mean() > 0.1  # the mouth moves: not a still picture


def test_api_errors_name_the_field_and_the_fix(tmp_path, media) -> None:
    import edtalk_cli as edtalk
    from edtalk_cli.manifest import ManifestValidationError

    (tmp_path / "media").symlink_to(media)
    job = {"name": "x", "source": {"path": "media/face.png", "crop": "none"}, "audio": "media/voice.wav"}
    with pytest.raises(ManifestValidationError) as caught:
        edtalk.render_job({**job, "emotion": {"preset": "happy", "intensity": 3}}, base_dir=tmp_path)
    (problem,) = caught.value.problems
    assert problem.path == "jobs[0].emotion.intensity" and "out of range" in problem.message
    with pytest.raises(edtalk.JobFailedError) as failed:
        edtalk.render_job({**job, "audio": "media/nope.wav"}, base_dir=tmp_path, devices="cpu")
    assert failed.value.outcome.status == "failed" and "nope.wav" in failed.value.outcome.error
    with pytest.raises(TypeError, match="devicez"):
        edtalk.render({"jobs": [job]}, base_dir=tmp_path, devicez="cpu")
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # nothing written


@pytest.mark.slow
def test_render_dash_reads_a_json_manifest_from_stdin_with_paths_from_the_working_dir(
    tmp_path, media
) -> None:
    (tmp_path / "media").symlink_to(media)
    manifest = {
        "version": 1,
        "jobs": [
            {
                "name": "piped",
                "source": {"path": "media/face.png", "crop": "none"},
                "audio": "media/voice.wav",
            }
        ],
    }
    run = _edtalk("render", "-", "--devices", "cpu", "-q", cwd=tmp_path, input=json.dumps(manifest))
    assert run.returncode == 0, run.stderr
    output = tmp_path / "out" / "stdin" / "piped.mp4"  # {manifest} of stdin is "stdin"
    assert _frames(output) == 15
    assert json.loads((tmp_path / "edtalk-report.json").read_text())["jobs"][0]["status"] == "done"
    bad = _edtalk(
        "render",
        "-",
        "--devices",
        "cpu",
        cwd=tmp_path,
        input="version: 1\njobs:\n  - name: y\n    audio: 3\n",
    )
    assert bad.returncode == 2  # a manifest error: nothing rendered
    assert "<stdin>:3:5: jobs[0].source: missing required key 'source'" in bad.stderr
    assert "<stdin>:4:12: jobs[0].audio: expected a string, got 3" in bad.stderr


@pytest.mark.slow
def test_jsonl_of_three_jobs_with_one_bad_line_renders_two_and_names_the_line(tmp_path, media) -> None:
    lines = [
        {
            "defaults": {
                "source": {"path": str(media / "face.png"), "crop": "none"},
                "output": "out/{name}.mp4",
            }
        },
        {"name": "first", "audio": str(media / "voice.wav"), "emotion": "happy"},
        {
            "name": "second",
            "audio": str(media / "voice.wav"),
            "emotion": {"preset": "hapy", "intensity": 0.5},
        },
        {"name": "third", "audio": str(media / "voice.wav"), "preset": "warm-presenter"},
    ]
    (tmp_path / "jobs.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    run = _edtalk("render", "--jobs-jsonl", "jobs.jsonl", "--devices", "cpu", "-q", cwd=tmp_path)
    assert run.returncode == 1
    assert "jobs.jsonl:3:1: emotion.preset: unknown emotion or preset 'hapy'" in run.stderr
    assert _frames(tmp_path / "out" / "first.mp4") == 15
    assert _frames(tmp_path / "out" / "third.mp4") == 15
    assert not (tmp_path / "out" / "second.mp4").exists()
    jobs = {j["name"]: j for j in json.loads((tmp_path / "edtalk-report.json").read_text())["jobs"]}
    assert [jobs[n]["status"] for n in ("first", "second", "third")] == ["done", "failed", "done"]
    assert jobs["second"]["error"].startswith("invalid job (line 3)")
    checked = _edtalk("validate", "--jobs-jsonl", "jobs.jsonl", "--no-media", cwd=tmp_path)
    assert checked.returncode == 2 and "jobs.jsonl:3:1: emotion.preset: unknown emotion" in checked.stderr

    # the same lines on stdin, plus a line that is not JSON: named by its line and column
    text = (tmp_path / "jobs.jsonl").read_text() + '{"name": "fourth", "audio": \n'
    piped = _edtalk("render", "--jobs-jsonl", "-", "--devices", "cpu", "-q", cwd=tmp_path, input=text)
    assert piped.returncode == 1
    assert "<stdin>:3:1: emotion.preset: unknown emotion or preset 'hapy'" in piped.stderr
    assert "<stdin>:5:29: invalid JSON" in piped.stderr
    assert (tmp_path / "out" / "first.mp4").exists()  # stdin paths resolve from the working dir too


def test_importing_the_package_and_its_api_loads_no_torch() -> None:
    code = "import sys, edtalk_cli\nedtalk_cli.validate, edtalk_cli.Report\nprint('torch' in sys.modules)\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False"]


def test_validate_dash_reads_the_manifest_from_stdin(tmp_path, media, monkeypatch) -> None:
    from typer.testing import CliRunner

    from edtalk_cli.cli import app

    monkeypatch.chdir(media)
    text = "version: 1\njobs:\n  - {name: a, source: face.png, audio: voice.wav, emotion: hapy}\n"
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["validate", "-", "--no-media"], input=text)
    assert result.exit_code == 2
    assert (
        "<stdin>:3:60: jobs[0].emotion: unknown emotion or preset 'hapy'. Did you mean 'happy'?"
        in result.output
    )
    good = text.replace("hapy", "happy")
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["validate", "-", "--no-media"], input=good)
    assert result.exit_code == 0, result.output
    assert "out/stdin/a.mp4" in result.output
