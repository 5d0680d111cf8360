"""Hostile and careless manifests: outputs that would destroy files, denial of service from a tiny
manifest, every problem of every job in one validate run, and the schema against the loader."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import run_cli
from PIL import Image
from skimage import data as skdata
from typer.testing import CliRunner

from edtalk_cli.cli import app
from edtalk_cli.errors import ManifestError
from edtalk_cli.manifest import check_manifests, load_manifest, manifest_json_schema
from edtalk_cli.manifest.probe import probe_job
from edtalk_cli.runner.preflight import check_job

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_user_presets(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDTALK_PRESETS", str(tmp_path_factory.mktemp("no_user_presets")))
    monkeypatch.setenv("COLUMNS", "250")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def media(root: Path, seconds: float = 1.0) -> None:
    """A photo with a face, a grey photo and a 220 Hz tone of ``seconds``."""
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skdata.astronaut()).save(root / "face.png")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(root / "blank.png")
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(root / "voice.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)


def problems_of(path: Path, **kwargs) -> str:
    with pytest.raises(ManifestError) as info:
        load_manifest(path, **kwargs)
    return info.value.message


def validate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", *args])
    return result.exit_code, result.output


# ----- 1, 2: outputs never destroy inputs or files we did not write ------------------------------


def test_an_output_that_is_an_input_of_any_job_is_refused(tmp_path: Path) -> None:
    media(tmp_path / "m")
    path = write(
        tmp_path / "batch.yaml",
        "version: 1\njobs:\n"
        "  - {name: a, source: m/face.png, audio: m/voice.wav}\n"
        "  - {name: b, source: m/face.png, audio: m/voice.wav, output: m/./../m/voice.wav.mp4}\n"
        "  - {name: c, source: m/face.png, audio: m/actor.mp4, output: m/actor.mp4}\n",
    )
    (tmp_path / "m" / "actor.mp4").write_bytes(b"precious")
    text = problems_of(path)
    assert (
        f"{path}:5:63: jobs[2].output: output {tmp_path / 'm/actor.mp4'} would overwrite its own input audio"
        in text
    )
    assert (tmp_path / "m" / "actor.mp4").read_bytes() == b"precious"
    assert "jobs[1].output" not in text  # voice.wav.mp4 is no input


def test_outputs_outside_the_manifest_folder_need_allow_outside(tmp_path: Path) -> None:
    media(tmp_path / "proj")
    path = write(
        tmp_path / "proj" / "m.yaml",
        "version: 1\ndefaults: {source: face.png, audio: voice.wav}\njobs:\n"
        "  - {name: up, output: ../../x.mp4}\n"
        "  - {name: home, output: ~/x.mp4}\n"
        f"  - {{name: abs, output: {tmp_path / 'elsewhere' / 'x.mp4'}}}\n"
        "  - {name: inside, output: out/deep/../x.mp4}\n",
    )
    text = problems_of(path)
    for index, output in enumerate(
        [tmp_path.parent / "x.mp4", Path.home() / "x.mp4", tmp_path / "elsewhere" / "x.mp4"]
    ):
        assert f"jobs[{index}].output: output {output} is outside the manifest's folder" in text
        assert "pass --allow-outside" in text
    assert "jobs[3]" not in text
    assert [j.name for j in load_manifest(path, allow_outside=True).jobs] == ["up", "home", "abs", "inside"]
    code, output = validate(str(path))
    assert code == 2 and "is outside the manifest's folder" in output
    code, output = validate(str(path), "--allow-outside", "--no-media")
    assert code == 0, output


def test_outputs_through_a_symlinked_folder_collide(tmp_path: Path) -> None:
    media(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    path = write(
        tmp_path / "m.yaml",
        "version: 1\ndefaults: {source: face.png, audio: voice.wav}\njobs:\n"
        "  - {name: a, output: real/same.mp4}\n"
        "  - {name: b, output: link/same.mp4}\n",
    )
    text = problems_of(path)
    assert (
        f"{path}:5:23: jobs[1].output: output {tmp_path / 'link/same.mp4'} is also written by the job at"
        in text
    )


def test_an_existing_file_without_our_sidecar_is_not_overwritten(tmp_path: Path) -> None:
    media(tmp_path)
    path = write(
        tmp_path / "m.yaml",
        "version: 1\ndefaults: {source: face.png, audio: voice.wav}\njobs:\n"
        "  - {name: a, output: out/a.mp4}\n  - {name: b, output: out/b.mp4}\n",
    )
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.mp4").write_bytes(b"someone's video")
    (tmp_path / "out" / "b.mp4").write_bytes(b"ours")
    (tmp_path / "out" / "b.mp4.edtalk.json").write_text("{}")
    jobs = load_manifest(path).jobs
    refused = check_job(jobs[0]).problems
    assert [p.format() for p in refused] == [
        f"{path}:4:23: jobs[0].output: job 'a': output {tmp_path / 'out/a.mp4'} already exists and was "
        "not written by edtalk (no a.mp4.edtalk.json). Move it away, change the output, or pass --overwrite "
        "to replace it."
    ]
    assert check_job(jobs[0], overwrite=True).problems == []
    assert check_job(jobs[1]).problems == []  # ours: re-rendered or skipped by its fingerprint
    code, output = validate(str(path), "--no-media")
    assert code == 2 and "jobs[0].output: job 'a': output" in output and "1 problem found" in output
    assert validate(str(path), "--no-media", "--overwrite")[0] == 0


# ----- 6: a missing input fails its job only ------------------------------------------------------


def test_a_missing_audio_fails_only_its_job(tmp_path: Path, parity: Path, tiny_weights: Path) -> None:
    from edtalk_cli import api

    Image.open(parity / "source.png").save(tmp_path / "face.png")
    path = write(
        tmp_path / "m.yaml",
        "version: 1\ndefaults: {source: {path: face.png, crop: none}}\njobs:\n"
        f"  - {{name: good, audio: {parity / 'speech.wav'}}}\n"
        "  - {name: lost, audio: gone.wav}\n",
    )
    code, output = validate(str(path), "--no-media")
    assert code == 2 and f"{path}:5:25: jobs[1].audio: file not found: {tmp_path / 'gone.wav'}" in output
    report = api.render(path, devices="cpu", weights=tiny_weights, cache=False)
    status = {o.name: o for o in report.outcomes}
    assert status["good"].status == "done" and status["good"].frames == 32
    assert status["lost"].status == "failed" and "jobs[1].audio: file not found" in status["lost"].error
    assert sorted(p.name for p in (tmp_path / "out" / "m").iterdir()) == ["good.mp4", "good.mp4.edtalk.json"]


# ----- 7, 8: denial of service from a tiny manifest ----------------------------------------------


def test_output_templates_take_bare_placeholders_and_a_bounded_length(tmp_path: Path) -> None:
    media(tmp_path)
    path = write(
        tmp_path / "m.yaml",
        "version: 1\ndefaults: {source: face.png, audio: voice.wav}\njobs:\n"
        "  - {name: a, output: 'out/{name:>999999999}.mp4'}\n"
        "  - {name: b, output: 'out/{name!r}.mp4'}\n"
        "  - {name: c, output: 'out/{name.__class__}.mp4'}\n"
        "  - {name: d, output: 'out/{name[0]}.mp4'}\n"
        f"  - {{name: e, output: 'out/{'x' * 300}.mp4'}}\n"
        f"  - {{name: f, output: '{'/d' * 2100}/{{name}}.mp4'}}\n",
    )
    started = time.perf_counter()
    text = problems_of(path, allow_outside=True)
    assert time.perf_counter() - started < 5
    assert (
        "jobs[0].output: output template 'out/{name:>999999999}.mp4' formats {name}: placeholders take no"
        in text
    )
    assert "jobs[1].output: output template 'out/{name!r}.mp4' formats {name}" in text
    assert "jobs[2].output: unknown field {name.__class__} in output template" in text
    assert "jobs[3].output: unknown field {name[0]} in output template" in text
    assert "jobs[4].output: output path too long: the name 'xxxx" in text and "(at most 255 per name)" in text
    assert "jobs[5].output: output path too long: " in text and "bytes (at most 4096)" in text


def test_billion_laughs_fails_fast_with_a_named_error(tmp_path: Path) -> None:
    lines = ["version: 1", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [{','.join(['*' + previous] * 9)}]")
    lines.append("jobs: [*i]")
    path = write(tmp_path / "lol.yaml", "\n".join(lines) + "\n")
    assert path.stat().st_size < 1024
    started = time.perf_counter()
    code, output = validate(str(path))
    assert time.perf_counter() - started < 3
    assert code == 2
    assert f"{path}:1:1: manifest uses too many YAML aliases (billion-laughs?)" in output
    ok = write(tmp_path / "ok.yaml", "version: 1\ndefaults: &d {fps: 25}\njobs: []\nx: *d\n")
    assert "too many YAML aliases" not in problems_of(ok)


# ----- 9, 16: media limits, found from headers -----------------------------------------------------


def test_frame_size_limits_and_a_tiny_source(tmp_path: Path) -> None:
    media(tmp_path)
    Image.fromarray(np.zeros((16, 5000, 3), np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    path = write(
        tmp_path / "m.yaml",
        "version: 1\ndefaults: {audio: voice.wav}\njobs:\n"
        "  - {name: wide, source: {path: wide.png, crop: none}}\n"
        "  - {name: dot, source: {path: dot.png, crop: none}}\n"
        "  - {name: ref, source: face.png, emotion: {image: wide.png}}\n",
    )
    jobs = load_manifest(path).jobs
    wide, dot, ref = (check_job(job).problems for job in jobs)
    assert [p.format() for p in wide] == [
        f"{path}:4:33: jobs[0].source.path: job 'wide': image '{tmp_path / 'wide.png'}' is 5000x16, above "
        "4096 px per side. Scale it down, or raise the limit with --max-frame-size (now 4096)."
    ]
    assert "below 16 px per side" in dot[0].format() and dot[0].path == "jobs[1].source.path"
    assert ref[0].path == "jobs[2].emotion.image"
    assert check_job(jobs[0], max_frame_side=5000).problems == []
    code, output = validate(str(path), "--max-frame-size", "5000", "--no-media")
    assert code == 2 and "1 problem found" in output and "dot.png" in output


def test_coefficients_are_finite_and_bounded(tmp_path: Path) -> None:
    media(tmp_path)
    path = write(
        tmp_path / "m.yaml",
        "version: 1\ndefaults: {source: face.png, audio: voice.wav}\njobs:\n"
        "  - {name: huge, emotion: {coeffs: [1e300, 0, 0, 0, 0, 0, 0, 0, 0, 0]}}\n"
        "  - {name: nan, emotion: {coeffs: [0, .nan, 0, 0, 0, 0, 0, 0, 0, 0]}}\n"
        "  - {name: fine, emotion: {coeffs: [-5.1, 0, 0, 0, 0, 0, 0, 0, 0, 19.5]}}\n",
    )
    text = problems_of(path)
    assert "jobs[0].emotion.coeffs[0]: 1e+300 is out of range (must be at most 20.0)" in text
    assert "jobs[1].emotion.coeffs[1]" in text
    assert "jobs[2]" not in text


def _truncated_wav(path: Path, seconds: float, keep: float) -> None:
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + int((len(data) - 44) * keep)])


def test_every_problem_of_every_job_in_one_validate_run(tmp_path: Path) -> None:
    media(tmp_path)
    _truncated_wav(tmp_path / "cut.wav", 1.2, 0.5)
    path = write(
        tmp_path / "m.yaml",
        "version: 1\ndefaults: {source: face.png, audio: voice.wav}\njobs:\n"
        "  - {name: typo, emotion: {intensity: 3}}\n"
        "  - {name: lost, audio: gone.wav}\n"
        "  - {name: long, segments: [{start: 0.2, end: 4, emotion: sad}]}\n"
        "  - {name: blank, source: blank.png}\n"
        "  - {name: cut, audio: cut.wav}\n",
    )
    code, output = validate(str(path))
    assert code == 2
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 5, output
    assert f"error: {path}:4:27: jobs[0].emotion" in errors[0]
    assert f"error: {path}:5:25: jobs[1].audio: file not found: {tmp_path / 'gone.wav'}" in errors[1]
    assert (
        f"error: {path}:6:47: jobs[2].segments[0].end: job 'long': segment 0.2s-4s runs past the end of "
        "the audio: the audio ends at 1.000s" in errors[2]
    )
    assert (
        f"error: {path}:7:27: jobs[3].source: job 'blank': no face found in '{tmp_path / 'blank.png'}'"
        in errors[3]
    )
    assert (
        f"error: {path}:8:24: jobs[4].audio: job 'cut': audio '{tmp_path / 'cut.wav'}' is truncated: its header "
        "says 1.20s, the file holds 0.60s" in errors[4]
    )
    assert "5 problems found; nothing was rendered." in output


def test_render_refuses_a_segment_past_the_audio(tmp_path: Path) -> None:
    media(tmp_path)
    path = write(
        tmp_path / "m.yaml",
        "version: 1\njobs:\n"
        "  - {name: a, source: face.png, audio: voice.wav, segments: [{start: 2, emotion: sad},"
        " {start: 0.1, end: 0.5, emotion: happy}]}\n",
    )
    job = load_manifest(path).jobs[0]
    assert [s.start for s in job.segments] == [0.1, 2.0]  # time order; problems name the manifest's
    probe = probe_job(job)
    assert probe.audio_s == pytest.approx(1.0)
    assert [p.format() for p in probe.problems] == [
        f"{path}:3:70: jobs[0].segments[0].start: job 'a': segment 2s-end starts after the audio: the "
        "audio ends at 1.000s. Move or remove the segment."
    ]


# ----- 17: the schema accepts what the loader accepts ---------------------------------------------


GOOD = [
    "version: 1\ndefaults: {source: face.png, audio: voice.wav}\njobs:\n  - {name: a}\n",
    "version: 1\njobs:\n  - {name: a, source: {path: face.png, crop: none}, audio: voice.wav, emotion: happy,"
    " segments: [{start: '0:00.5', emotion: {blend: {happy: 1, sad: 1}}}], transition: 300ms}\n",
    "version: 1\ndefaults: &d {source: face.png}\njobs:\n  - {<<: *d, name: b, audio: voice.wav, fps: 30}\n",
]
BAD = [
    "version: 1\njobs:\n  - {name: a, source: face.png, audio: voice.wav, fsp: 30}\n",
    "version: 1\njobs:\n  - {name: a, source: face.png, audio: voice.wav, emotion: {intensity: 1}}\n",
    "version: 1\njobs:\n  - {source: face.png, audio: voice.wav}\n",
    "version: 1\njobs:\n  - {name: 'a b', source: face.png, audio: voice.wav}\n",
    "version: 1\njobs:\n  - {name: a, source: face.png, audio: voice.wav, segments: [{start: 1}]}\n",
    "version: 1\ndefaults: {name: x}\njobs:\n  - {name: a, source: face.png, audio: voice.wav}\n",
    "version: 2\njobs:\n  - {name: a, source: face.png, audio: voice.wav}\n",
    "version: 1\njobs:\n  - {name: a, source: face.png, audio: voice.wav, emotion: {coeffs: [99, 0, 0, 0, 0,"
    " 0, 0, 0, 0, 0]}}\n",
]


def test_the_schema_accepts_exactly_what_the_loader_accepts(tmp_path: Path) -> None:
    media(tmp_path)
    validator = jsonschema.Draft202012Validator(manifest_json_schema())
    examples = sorted((REPO / "examples").glob("*.yaml"))
    assert len(examples) >= 3
    cases = [(p, True) for p in examples]
    for index, text in enumerate(GOOD):
        cases.append((write(tmp_path / f"good{index}.yaml", text), True))
    for index, text in enumerate(BAD):
        cases.append((write(tmp_path / f"bad{index}.yaml", text), False))
    for path, good in cases:
        loader_ok = not check_manifests([path]).all_problems
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert loader_ok == good, (path.name, check_manifests([path]).all_problems)
        assert (not errors) == good, (path.name, [e.message for e in errors])


def test_exit_codes_tell_a_bad_manifest_from_failed_jobs(tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", "version: 1\njobs:\n  - {name: a}\n")
    result = run_cli("render", str(path), "--no-report", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "missing required key 'source'" in result.stderr


# ----- 20: a mouth clip takes a mode; with it the audio may be silent --------------------------------


def test_a_short_mouth_clip_is_extended_by_its_mode_and_silence_is_fine(
    tmp_path: Path, parity: Path, tiny_weights: Path
) -> None:
    import imageio_ffmpeg

    from edtalk_cli import api

    face = np.asarray(Image.open(parity / "source.png").convert("RGB").resize((64, 64)))
    writer = imageio_ffmpeg.write_frames(str(tmp_path / "lips.mp4"), (64, 64), fps=25, quality=10)
    writer.send(None)
    for shift in range(8):  # 8 distinct frames
        writer.send(np.ascontiguousarray(np.roll(face, 3 * shift, axis=0)))
    writer.close()
    Image.fromarray(face).save(tmp_path / "face.png")
    sf.write(tmp_path / "silence.wav", np.zeros(8000, np.float32), 16000)  # 0.5 s: 12 frames
    rendered = {}
    for mode in ("pingpong", "hold"):
        job = {
            "name": mode,
            "source": {"path": "face.png", "crop": "none"},
            "audio": "silence.wav",
            "mouth": {"video": "lips.mp4", "crop": "none", "mode": mode},
        }
        opts = {"devices": "cpu", "weights": tiny_weights, "cache": False}
        rendered[mode] = [f.image for f in api.frames(job, base_dir=tmp_path, **opts)]
    pingpong, hold = rendered["pingpong"], rendered["hold"]
    assert len(pingpong) == len(hold) == 12
    assert not np.array_equal(pingpong[6], pingpong[7])
    assert np.array_equal(pingpong[8], pingpong[6]) and np.array_equal(pingpong[11], pingpong[3])
    assert np.array_equal(hold[11], hold[7]) and not np.array_equal(hold[11], pingpong[11])


# ----- 18: library warnings reach users as one clear line, or not at all ---------------------------


def test_library_warnings_become_one_clear_line_or_nothing() -> None:
    import warnings

    from PIL import Image as PILImage

    from edtalk_cli.userwarnings import install

    shown: list[str] = []
    saved = warnings.showwarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            install(shown.append)
            with np.errstate(divide="warn"):
                np.log10(np.zeros(2))
            warnings.warn(
                "Image size (100000000 pixels) exceeds limit of 89478485 pixels, could be decompression bomb "
                "DOS attack.",
                PILImage.DecompressionBombWarning,
                stacklevel=1,
            )
            warnings.warn("You are using `torch.load` with `weights_only=False`", UserWarning, stacklevel=1)
            with np.errstate(divide="warn"):
                np.log10(np.zeros(2))  # the same warning again: shown once
    finally:
        warnings.showwarning = saved
    assert shown == [
        "numerical problem in the computation (divide by zero encountered in log10); check the input for "
        "silence or extreme values",
        "a very large image (100 Mpx) is being decoded; it needs a lot of memory and time",
    ]


def test_the_cli_prints_a_warning_without_source_lines(tmp_path: Path) -> None:
    code = (  # a command that trips a numpy RuntimeWarning, run through the real entry point
        "import sys\nimport numpy as np\nfrom edtalk_cli import cli\n"
        "@cli.app.command('trip')\ndef trip() -> None:\n    np.log10(np.zeros(1))\n"
        "sys.argv = ['edtalk', 'trip']\ncli.main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (
        "warning: numerical problem in the computation (divide by zero encountered in log10)" in result.stderr
    )
    assert ".py:" not in result.stderr and "np.log10" not in result.stderr


def test_no_face_found_at_render_names_the_manifest_line(tmp_path: Path, tiny_weights: Path) -> None:
    from edtalk_cli import api

    media(tmp_path)
    path = write(
        tmp_path / "m.yaml", "version: 1\njobs:\n  - {name: a, source: blank.png, audio: voice.wav}\n"
    )
    outcome = api.render(path, devices="cpu", weights=tiny_weights, cache=False).outcomes[0]
    assert outcome.status == "failed"
    assert outcome.error.startswith(
        f"{path}:3:23: jobs[0].source: no face found in '{tmp_path / 'blank.png'}'"
    )


# ----- 20: the smaller items ---------------------------------------------------------------------


def edtalk(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real entry point, writing to pipes (as in CI logs): ``run_cli`` without ``COLUMNS``."""
    return run_cli(*args, cwd=cwd, timeout=300, **{"COLUMNS": None, **(env or {})})


def test_extract_refuses_two_inputs_that_would_write_one_track(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(skdata.astronaut()).save(tmp_path / folder / "face.png")
    result = edtalk("extract", "a/face.png", "b/face.png", "-o", "tracks", cwd=tmp_path)
    assert result.returncode == 2
    assert "'a/face.png' and 'b/face.png' would both write tracks/face.npz" in result.stderr
    assert not (tmp_path / "tracks").exists()


def test_weights_info_without_weights_says_the_demo_model_is_used(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "EDTALK_WEIGHTS": ""}
    result = edtalk("weights", "info", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "uses the built-in demo model" in result.stdout and "edtalk weights download" in result.stdout


def test_tables_keep_their_width_in_a_pipe(tmp_path: Path) -> None:
    media(tmp_path)
    name = "a-rather-long-job-name-that-would-not-fit-in-eighty-columns"
    write(
        tmp_path / "m.yaml", f"version: 1\njobs:\n  - {{name: {name}, source: face.png, audio: voice.wav}}\n"
    )
    result = edtalk("validate", "m.yaml", "--no-media", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if name in line)
    assert f"out/m/{name}.mp4" in row and len(row) > 80


@pytest.mark.slow
def test_quiet_silences_the_demo_note_and_the_console_names_the_weights(tmp_path: Path) -> None:
    face = np.asarray(Image.fromarray(skdata.astronaut()).resize((64, 64)))
    Image.fromarray(face).save(tmp_path / "face.png")
    t = np.arange(4000) / 16000
    sf.write(tmp_path / "voice.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    write(
        tmp_path / "m.yaml",
        "version: 1\njobs:\n  - {name: a, source: {path: face.png, crop: none}, audio: voice.wav, model: demo}\n",
    )
    env = {"EDTALK_PRESETS": str(tmp_path / "none")}
    loud = edtalk("render", "m.yaml", "--device", "cpu", "--no-report", "--no-cache", cwd=tmp_path, env=env)
    assert loud.returncode == 0, loud.stderr
    assert (
        "weights: the built-in demo model" in loud.stderr and "note: using the built-in demo" in loud.stderr
    )
    quiet = edtalk(
        "render", "m.yaml", "--device", "cpu", "--no-report", "--force", "-q", cwd=tmp_path, env=env
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
