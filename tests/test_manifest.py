"""Manifests (YAML v1): loading, merging, includes, presets, every-error-at-once validation, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from PIL import Image
from skimage import data as skdata
from typer.testing import CliRunner

from edtalk_cli.commands import manifest as manifest_cmds
from edtalk_cli.errors import ManifestError
from edtalk_cli.manifest import (
    ManifestValidationError,
    bundled_presets_dir,
    discover_presets,
    load_manifest,
    load_manifests,
    manifest_json_schema,
    parse_duration,
    parse_time,
)
from edtalk_cli.manifest.timecode import TimecodeError


def cli() -> typer.Typer:
    """The manifest commands registered exactly as in edtalk_cli/cli.py."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """edtalk"""

    app.command(name="schema")(manifest_cmds.schema)
    app.command(name="validate")(manifest_cmds.validate)
    app.add_typer(manifest_cmds.presets_app, name="presets")
    return app


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    return str(info.value.message).splitlines()


@pytest.fixture(autouse=True)
def _isolated_user_presets(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDTALK_PRESETS", str(tmp_path_factory.mktemp("no_user_presets")))


# --------------------------------------------------------------------------- valid manifests


def test_single_job_resolves_paths_defaults_and_output(tmp_path: Path) -> None:
    touch(tmp_path, "media/face.png", "media/voice.wav")
    manifest_path = write(
        tmp_path / "proj" / "talk.yaml",
        "version: 1\n"
        "defaults:\n"
        "  fps: 30\n"
        "  emotion: {preset: happy, intensity: 0.7}\n"
        "jobs:\n"
        "  - name: intro\n"
        "    source: ../media/face.png\n"
        "    audio: ../media/voice.wav\n"
        "  - name: outro\n"
        "    source: {path: ../media/face.png, crop: none, paste_back: false}\n"
        "    audio: ../media/voice.wav\n"
        "    emotion: {intensity: 0.2}\n"
        "    fps: 29.97\n"
        "    output: 'renders/{manifest}-{name}-{preset}-{fps}.mp4'\n",
    )
    manifest = load_manifest(manifest_path)
    intro, outro = manifest.jobs
    assert intro.source.path == tmp_path / "media" / "face.png"
    assert intro.source.kind == "image" and intro.source.crop == "auto" and intro.source.paste_back is True
    assert intro.audio == tmp_path / "media" / "voice.wav"
    assert intro.fps == 30.0 and intro.model == "auto" and intro.transition == pytest.approx(0.4)
    assert intro.emotion.kind == "name" and intro.emotion.name == "happy" and intro.emotion.intensity == 0.7
    assert intro.pose.kind == "static" and intro.mouth.kind == "audio" and intro.segments == ()
    assert intro.output == tmp_path / "proj" / "out" / "talk" / "intro.mp4"
    # job keys win; the mapping form merges with the default (keeps the preset, takes the intensity)
    assert outro.source.crop == "none" and outro.source.paste_back is False
    assert outro.emotion.name == "happy" and outro.emotion.intensity == 0.2
    assert outro.fps == 29.97
    assert outro.output == tmp_path / "proj" / "renders" / "talk-outro-happy-29.97.mp4"


def test_multi_segment_voice_over(tmp_path: Path) -> None:
    touch(tmp_path, "face.jpg", "vo.m4a", "nod.mp4", "track.npy", "ref.png")
    path = write(
        tmp_path / "vo.yaml",
        "version: 1\n"
        "jobs:\n"
        "  - name: vo\n"
        "    source: face.jpg\n"
        "    audio: vo.m4a\n"
        "    fps: 24\n"
        "    transition: 300ms\n"
        "    pose: {video: nod.mp4}\n"
        "    emotion: calm-narrator\n"
        "    segments:\n"
        "      - {start: '0:02.5', end: '00:00:04.250', emotion: {blend: {happy: 3, surprised: 1}}}\n"
        "      - {start: '00:00:05:12', end: 7, emotion: {image: ref.png, intensity: 1.5}}\n"
        "      - {start: 9, pose: {track: track.npy, mode: hold}}\n"
        "      - {start: 7.5, end: 8, emotion: {coeffs: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9.5]}}\n",
    )
    (job,) = load_manifest(path).jobs
    assert job.transition == pytest.approx(0.3)
    assert job.pose.kind == "video" and job.pose.path == tmp_path / "nod.mp4" and job.pose.mode == "pingpong"
    # a preset named as the emotion: its blend and intensity, labelled with the preset name
    assert job.emotion.kind == "blend" and job.emotion.label == "calm-narrator"
    assert job.emotion.intensity == pytest.approx(0.9)
    # segments are sorted by start, times in seconds (frame timecode at the job fps)
    starts = [(s.start, s.end) for s in job.segments]
    assert starts == [(2.5, 4.25), (5.5, 7.0), (7.5, 8.0), (9.0, None)]
    blend = job.segments[0].emotion
    assert [(w, c.name) for w, c in blend.components] == [(0.75, "happy"), (0.25, "surprised")]
    image = job.segments[1].emotion
    assert image.kind == "image" and image.path == tmp_path / "ref.png" and image.intensity == 1.5
    assert job.segments[2].emotion.coeffs == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9.5)
    assert job.segments[3].pose.kind == "track" and job.segments[3].pose.mode == "hold"
    assert job.segments[3].emotion is None


def test_includes_merge_defaults_jobs_and_presets_with_own_relative_paths(tmp_path: Path) -> None:
    touch(tmp_path, "shared/brand_face.png", "shared/voice.wav", "main/voice2.wav")
    write(
        tmp_path / "shared" / "brand.yaml",
        "defaults:\n  source: brand_face.png\n  fps: 50\n  transition: 1s\n"
        "jobs:\n  - {name: teaser, audio: voice.wav}\n",
    )
    write(
        tmp_path / "shared" / "bright.yaml",
        "description: mine\nemotion: surprised\nintensity: 0.3\npose: loop\n",
    )
    path = write(
        tmp_path / "main" / "m.yaml",
        "version: 1\n"
        "include: [../shared/brand.yaml, ../shared/bright.yaml]\n"
        "defaults:\n  fps: 25\n"
        "jobs:\n  - {name: main, audio: voice2.wav, preset: bright}\n",
    )
    manifest = load_manifest(path)
    teaser, main = manifest.jobs
    assert manifest.includes == (tmp_path / "shared" / "brand.yaml", tmp_path / "shared" / "bright.yaml")
    # the included job: its own file's defaults win, paths relative to that file, {manifest} = its stem
    assert teaser.fps == 50.0 and teaser.source.path == tmp_path / "shared" / "brand_face.png"
    assert teaser.audio == tmp_path / "shared" / "voice.wav"
    assert teaser.output == tmp_path / "shared" / "out" / "brand" / "teaser.mp4"
    # the root job: root defaults over included defaults, the included preset file is usable by name
    assert main.fps == 25.0 and main.source.path == tmp_path / "shared" / "brand_face.png"
    assert main.transition == 1.0
    assert main.preset == "bright" and main.emotion.name == "surprised" and main.emotion.intensity == 0.3
    assert main.output == tmp_path / "main" / "out" / "m" / "main.mp4"


def test_job_preset_layering(tmp_path: Path) -> None:
    touch(tmp_path, "f.png", "a.wav", "nod.mp4")
    path = write(
        tmp_path / "p.yaml",
        "version: 1\n"
        "defaults: {transition: 0.1, pose: {video: nod.mp4}}\n"
        "jobs:\n"
        "  - {name: a, source: f.png, audio: a.wav, preset: warm-presenter}\n"
        "  - {name: b, source: f.png, audio: a.wav, preset: sad, transition: 2}\n"
        "  - {name: c, source: f.png, audio: a.wav, preset: neutral}\n"
        "  - {name: d, source: f.png, audio: a.wav, preset: neutral, pose: {video: nod.mp4}}\n",
    )
    a, b, c, d = load_manifest(path).jobs
    assert a.emotion.kind == "blend" and a.emotion.intensity == 0.7 and a.transition == 0.5
    assert a.pose.kind == "video" and a.pose.mode == "pingpong"  # the preset's pose mode on the default clip
    assert a.output.name == "a.mp4" and a.preset == "warm-presenter"
    assert (
        b.emotion.name == "sad"
        and b.emotion.intensity == 0.8
        and b.transition == 2.0
        and b.pose.mode == "hold"
    )
    assert c.pose.kind == "static"  # preset 'static' beats the defaults' clip
    assert d.pose.kind == "video"  # ...but not the job's own clip


def test_timecodes() -> None:
    assert parse_time(12) == 12.0 and parse_time("12.5s") == 12.5 and parse_time("250ms") == 0.25
    assert parse_time("1:02.5") == 62.5 and parse_time("00:01:02.500") == 62.5
    assert parse_time("1:00:00") == 3600.0
    assert parse_time("00:00:01:12", fps=24) == 1.5
    assert math.isclose(parse_time("00:00:01:15", fps=29.97), 1 + 15 / 29.97)
    assert parse_duration("0.4s") == 0.4 and parse_duration("400ms") == 0.4 and parse_duration(0) == 0.0
    for bad, words in [
        ("1:75", "75 seconds"),
        ("00:00:01:25", "frame 25"),
        ("soon", "cannot read 'soon' as a time"),
        (-1, ">= 0"),
    ]:
        with pytest.raises(TimecodeError, match=words):
            parse_time(bad, fps=25)
    with pytest.raises(TimecodeError, match="needs the job fps"):
        parse_time("00:00:01:12")


def test_unquoted_timecodes_are_not_sexagesimal_numbers(tmp_path: Path) -> None:
    # YAML 1.1 would read 1:30 as 90 and 00:00:01:12 as the integer 72
    touch(tmp_path, "f.png", "a.wav")
    path = write(
        tmp_path / "t.yaml",
        "version: 1\njobs:\n  - name: a\n    source: f.png\n    audio: a.wav\n    fps: 24\n"
        "    segments:\n      - {start: 00:00:01:12, end: 1:30, emotion: sad}\n",
    )
    (job,) = load_manifest(path).jobs
    assert (job.segments[0].start, job.segments[0].end) == (1.5, 90.0)


# --------------------------------------------------------------------------- errors


def test_every_error_reported_at_once_with_lines_and_fields(tmp_path: Path) -> None:
    touch(tmp_path, "face.png", "voice.wav")
    path = write(
        tmp_path / "bad.yaml",
        "version: 1\n"  # 1
        "jobs:\n"  # 2
        "  - name: one\n"  # 3
        "    source: face.png\n"  # 4
        "    audio: voice.wav\n"  # 5
        "    fps: 0\n"  # 6
        "  - name: two\n"  # 7
        "    source: face.png\n"  # 8
        "    audio: voice.wav\n"  # 9
        "    emotion:\n"  # 10
        "      preset: happy\n"  # 11
        "      intensity: 3\n"  # 12
        "  - name: three\n"  # 13
        "    source: face.png\n"  # 14
        "    audio: voice.wav\n"  # 15
        "    emotion: hapy\n",  # 16
    )
    with pytest.raises(ManifestValidationError) as info:
        load_manifest(path)
    lines = info.value.message.splitlines()
    assert len(lines) == 3 and len(info.value.problems) == 3
    shown = str(path)
    assert lines[0].startswith(f"{shown}:6:10: jobs[0].fps: 0 is out of range (must be more than 0")
    assert lines[1].startswith(
        f"{shown}:12:18: jobs[1].emotion.intensity: 3 is out of range (must be at most 2"
    )
    assert (
        lines[2] == f"{shown}:16:14: jobs[2].emotion: unknown emotion or preset 'hapy'. Did you mean 'happy'?"
    )
    assert "3 problems" in (info.value.hint or "")


def test_unknown_keys_get_did_you_mean(tmp_path: Path) -> None:
    touch(tmp_path, "face.png", "voice.wav", "nod.mp4")
    path = write(
        tmp_path / "typo.yaml",
        "version: 1\n"
        "defualts: {}\n"
        "jobs:\n"
        "  - name: a\n"
        "    source: face.png\n"
        "    audoi: voice.wav\n"
        "    pose: {video: nod.mp4, mdoe: hold}\n",
    )
    lines = problems_of(path)
    assert f"{path}:2:1: defualts: unknown key 'defualts'. Did you mean 'defaults'?" in lines
    assert f"{path}:6:5: jobs[0].audoi: unknown key 'audoi'. Did you mean 'audio'?" in lines
    assert f"{path}:7:28: jobs[0].pose.mdoe: unknown key 'mdoe'. Did you mean 'mode'?" in lines
    assert any(line.startswith(f"{path}:4:5: jobs[0].audio: missing required key 'audio'") for line in lines)


def test_bad_default_is_reported_once_at_its_own_line(tmp_path: Path) -> None:
    touch(tmp_path, "face.png", "voice.wav")
    path = write(
        tmp_path / "d.yaml",
        "version: 1\ndefaults:\n  model: edtalk-full\njobs:\n"
        "  - {name: a, source: face.png, audio: voice.wav}\n"
        "  - {name: b, source: face.png, audio: voice.wav}\n",
    )
    lines = problems_of(path)
    assert lines == [
        f"{path}:3:10: defaults.model: invalid value 'edtalk-full'; input should be 'auto', 'edtalk', "
        "'lip_pose' or 'demo'. Did you mean 'edtalk'?"
    ]


def test_encode_settings_merge_and_are_checked(tmp_path: Path) -> None:
    touch(tmp_path, "face.png", "voice.wav")
    path = write(
        tmp_path / "e.yaml",
        "version: 1\ndefaults:\n  encode: {preset: veryfast}\njobs:\n"
        "  - {name: a, source: face.png, audio: voice.wav, encode: {crf: 23}}\n"
        "  - {name: b, source: face.png, audio: voice.wav}\n",
    )
    first, second = load_manifest(path).jobs
    assert (first.encode.crf, first.encode.preset) == (23, "veryfast")  # deep-merged over the defaults
    assert (second.encode.crf, second.encode.preset) == (18, "veryfast")
    bad = write(
        tmp_path / "bad.yaml",
        "version: 1\njobs:\n  - name: a\n    source: face.png\n    audio: voice.wav\n"
        "    encode: {crf: 60, preset: veryfsat}\n",
    )
    lines = problems_of(bad)
    assert f"{bad}:6:19: jobs[0].encode.crf: 60 is out of range (must be at most 51)." in lines[0]
    assert lines[1].startswith(
        f"{bad}:6:31: jobs[0].encode.preset: invalid value 'veryfsat'; input should be"
    )
    assert lines[1].endswith("Did you mean 'veryfast'?")


def test_segment_problems_overlap_order_and_form(tmp_path: Path) -> None:
    touch(tmp_path, "face.png", "voice.wav")
    path = write(
        tmp_path / "s.yaml",
        "version: 1\n"
        "jobs:\n"
        "  - name: a\n"
        "    source: face.png\n"
        "    audio: voice.wav\n"
        "    segments:\n"
        "      - {start: 1, end: 4, emotion: sad}\n"  # 7
        "      - {start: 3, end: 5, emotion: happy}\n"  # 8: overlaps line 7
        "      - {start: 6, end: 5.5, emotion: angry}\n"  # 9: end <= start
        "      - {start: 7, end: 8}\n"  # 10: overrides nothing
        "      - {start: 8, emotion: {coeffs: [1, 2, 3]}}\n"  # 11: 3 coeffs
        "      - {start: 9, end: 9.5, emotion: {blend: {happy: 0, sad: 0}}}\n"  # 12: zero weights
        "      - {start: 10, end: 11, emotion: {preset: happy, image: x.png}}\n",  # 13: two forms
    )
    text = "\n".join(problems_of(path))
    assert f"{path}:8:9: jobs[0].segments[1]: segment 3s-5s overlaps the segment 1s-4s at line 7" in text
    assert f"{path}:9:25: jobs[0].segments[2].end: segment ends at 5.5s, not after its start 6s" in text
    assert f"{path}:10:9: jobs[0].segments[3]: the segment overrides nothing" in text
    assert "jobs[0].segments[4].emotion.coeffs: coeffs has 3 numbers, needs exactly 10" in text
    assert "jobs[0].segments[5].emotion.blend: blend weights sum to 0" in text
    assert (
        f"{path}:13:39: jobs[0].segments[6].emotion: emotion must be a name, or a mapping with exactly one"
        in text
    )


def test_missing_file_is_named_with_its_resolved_path(tmp_path: Path) -> None:
    touch(tmp_path, "face.png")
    path = write(
        tmp_path / "sub" / "m.yaml",
        "version: 1\njobs:\n  - name: a\n    source: ../face.png\n    audio: sounds/missing voice.wav\n",
    )
    (line,) = problems_of(path)
    missing = tmp_path / "sub" / "sounds" / "missing voice.wav"
    assert line == (
        f"{path}:5:12: jobs[0].audio: file not found: {missing}. "
        f"Fix the path; relative paths are resolved from {tmp_path / 'sub'}."
    )


def test_unsafe_yaml_tags_are_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(
        tmp_path / "evil.yaml",
        f"version: 1\njobs: !!python/object/apply:os.system ['touch {marker}']\n",
    )
    (line,) = problems_of(path)
    assert line.startswith(
        f"{path}:2:7: unsafe or unknown YAML tag '!!python/object/apply:os.system' refused"
    )
    assert not marker.exists()


def test_include_cycle_and_duplicate_names_and_outputs(tmp_path: Path) -> None:
    touch(tmp_path, "f.png", "a.wav")
    write(
        tmp_path / "a.yaml",
        "version: 1\ninclude: [b.yaml]\njobs:\n  - {name: x, source: f.png, audio: a.wav}\n",
    )
    write(
        tmp_path / "b.yaml",
        "include: [a.yaml]\njobs:\n  - {name: x, source: f.png, audio: a.wav, output: o.mp4}\n"
        "  - {name: y, source: f.png, audio: a.wav, output: o.mp4}\n",
    )
    text = "\n".join(problems_of(tmp_path / "a.yaml"))
    assert f"{tmp_path / 'b.yaml'}:1:11: include[0]: include cycle: a.yaml -> b.yaml -> a.yaml" in text
    assert f"{tmp_path / 'a.yaml'}:4:12: jobs[0].name: duplicate job name 'x'" in text
    assert f"output {tmp_path / 'o.mp4'} is also written by the job at {tmp_path / 'b.yaml'}:3" in text


def test_semantic_checks_on_models_names_templates(tmp_path: Path) -> None:
    touch(tmp_path, "f.png", "a.wav")
    path = write(
        tmp_path / "m.yaml",
        "version: 1\njobs:\n"
        "  - {name: 'bad name', source: f.png, audio: a.wav}\n"
        "  - {name: lp, source: f.png, audio: a.wav, model: lip_pose, emotion: happy}\n"
        "  - {name: t, source: f.png, audio: a.wav, output: 'x/{nmae}.mp4'}\n"
        "  - {name: u, source: f.png, audio: a.wav, output: 'x/{name}.mov', preset: warm-presentr}\n"
        "  - {name: w, source: f.png, audio: a.wav, weights: no_such_dir}\n",
    )
    text = "\n".join(problems_of(path))
    assert "jobs[0].name: job name 'bad name' is not filesystem-safe" in text
    assert "jobs[1].emotion: model 'lip_pose' has no expression bank" in text
    assert (
        "jobs[2].output: unknown field {nmae} in output template 'x/{nmae}.mp4'. Did you mean {name}?" in text
    )
    assert "jobs[3].preset: unknown preset 'warm-presentr'. Did you mean 'warm-presenter'?" in text
    assert f"jobs[4].weights: directory not found: {tmp_path / 'no_such_dir'}" in text


def test_load_manifests_directory_skips_fragments(tmp_path: Path) -> None:
    touch(tmp_path, "f.png", "a.wav")
    write(tmp_path / "one.yaml", "version: 1\njobs:\n  - {name: a, source: f.png, audio: a.wav}\n")
    write(tmp_path / "two.yml", "version: 1\njobs:\n  - {name: b, source: f.png, audio: a.wav}\n")
    write(tmp_path / "fragment.yaml", "defaults: {fps: 30}\n")  # no jobs: an include fragment
    manifests = load_manifests([tmp_path])
    assert [m.path.name for m in manifests] == ["one.yaml", "two.yml"]
    assert [j.name for m in manifests for j in m.jobs] == ["a", "b"]


# --------------------------------------------------------------------------- schema and CLI


def test_json_schema_describes_the_format() -> None:
    schema = manifest_json_schema()
    assert schema["properties"]["version"]["const"] == 1
    assert schema["required"] == ["version"]
    job = schema["$defs"]["JobEntry"]
    assert set(job["required"]) == {"name"}  # source and audio may come from defaults
    assert job["additionalProperties"] is False
    assert job["properties"]["fps"]["exclusiveMinimum"] == 0 and job["properties"]["fps"]["maximum"] == 120


def test_cli_schema_prints_json() -> None:
    result = CliRunner().invoke(cli(), ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "jobs" in schema["properties"] and "defaults" in schema["properties"]


def face_media(root: Path, seconds: float = 1.0) -> None:
    Image.fromarray(skdata.astronaut()).save(root / "face.png")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(root / "blank.png")
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(root / "voice.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)


def test_cli_validate_reports_and_exits_nonzero(tmp_path: Path) -> None:
    face_media(tmp_path)  # readable media: the one problem is the emotion
    path = write(
        tmp_path / "bad.yaml",
        "version: 1\njobs:\n  - name: a\n    source: face.png\n    audio: voice.wav\n"
        "    emotion: {intensity: 1}\n",
    )
    result = CliRunner().invoke(cli(), ["validate", str(path)])
    assert result.exit_code == 2  # a bad manifest (1 is for failed jobs)
    assert f"{path}:6:14: jobs[0].emotion: emotion must be a name" in result.output
    assert "1 problem found; nothing was rendered." in result.output


def test_cli_validate_checks_media_faces_and_segment_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    face_media(tmp_path, seconds=1.0)
    good = write(
        tmp_path / "good.yaml",
        "version: 1\njobs:\n  - {name: a, source: face.png, audio: voice.wav, fps: 30, emotion: happy,"
        " segments: [{start: 0.5, emotion: sad}]}\n",
    )
    result = CliRunner().invoke(cli(), ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "1.00s" in result.output and "30 @ 30" in result.output and "OK: 1 job" in result.output
    bad = write(
        tmp_path / "bad.yaml",
        "version: 1\njobs:\n"
        "  - {name: b, source: face.png, audio: voice.wav, segments: [{start: 0.5, end: 3, emotion: sad}]}\n"
        "  - {name: c, source: blank.png, audio: voice.wav}\n",
    )
    result = CliRunner().invoke(cli(), ["validate", str(bad)])
    assert result.exit_code == 2
    assert (
        f"{bad}:3:80: jobs[0].segments[0].end: "
        "job 'b': segment 0.5s-3s runs past the end of the audio: the audio ends at 1.000s" in result.output
    )
    assert (
        f"{bad}:4:23: jobs[1].source: job 'c': no face found in '{tmp_path / 'blank.png'}'" in result.output
    )
    assert "2 problems found; nothing was rendered." in result.output


def test_presets_list_show_and_user_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich reads the width from COLUMNS
    bundled = bundled_presets_dir()
    assert bundled is not None and len(list(bundled.glob("*.yaml"))) >= 8
    assert all(p.ok for p in discover_presets().values())
    runner = CliRunner()
    result = runner.invoke(cli(), ["presets", "list"])
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if "warm-presenter" in line)
    assert "0.6 happy + 0.4 neutral" in row and "0.7" in row and "pingpong" in row and "bundled" in row

    result = runner.invoke(cli(), ["presets", "show", "sad"])
    assert result.exit_code == 0
    assert "emotion: sad" in result.output and "intensity: 0.8" in result.output

    result = runner.invoke(cli(), ["presets", "show", "hapy"])
    assert result.exit_code == 1 and "unknown preset 'hapy'" in result.output
    assert "did you mean 'happy'?" in result.output

    user = tmp_path / "user_presets"
    write(user / "sad.yaml", "description: my sad\nemotion: sad\nintensity: 0.3\npose: static\n")
    monkeypatch.setenv("EDTALK_PRESETS", str(user))
    result = runner.invoke(cli(), ["presets", "list"])
    row = next(line for line in result.output.splitlines() if line.strip("│ ").startswith("sad"))
    assert "my sad" in row and "0.3" in row and "user" in row
    result = runner.invoke(cli(), ["presets", "show", "sad"])
    assert "(user)" in result.output and "intensity: 0.3" in result.output
    # and a manifest using `preset: sad` now gets the user's version
    touch(tmp_path, "f.png", "a.wav")
    path = write(
        tmp_path / "m.yaml", "version: 1\njobs:\n  - {name: a, source: f.png, audio: a.wav, preset: sad}\n"
    )
    assert load_manifest(path).jobs[0].emotion.intensity == 0.3
