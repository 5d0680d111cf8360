"""A preset's intensity: what `edtalk presets list` shows is what a render applies."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edtalk_cli.commands import manifest as manifest_cmds
from edtalk_cli.manifest import load_manifest


@pytest.mark.parametrize(
    ("preset_yaml", "expected"),
    [
        ("emotion: {preset: happy, intensity: 0.5}\nintensity: 0.8\n", 0.5),  # the emotion's own wins
        ("emotion: {preset: happy}\nintensity: 0.8\n", 0.8),
        ("emotion: happy\nintensity: 0.8\n", 0.8),
        ("emotion: {preset: happy, intensity: 0.5}\n", 0.5),
    ],
)
def test_listed_intensity_is_the_rendered_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preset_yaml: str, expected: float
) -> None:
    user = tmp_path / "presets"
    user.mkdir()
    (user / "glad.yaml").write_text("description: glad\n" + preset_yaml + "pose: static\n", encoding="utf-8")
    monkeypatch.setenv("EDTALK_PRESETS", str(user))
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("f.png", "a.wav"):
        (tmp_path / name).write_bytes(b"x")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "version: 1\njobs:\n  - {name: a, source: f.png, audio: a.wav, preset: glad}\n", encoding="utf-8"
    )
    assert load_manifest(manifest).jobs[0].emotion.intensity == expected

    result = CliRunner().invoke(manifest_cmds.presets_app, ["list"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.strip("│ ").startswith("glad"))
    name, emotion, intensity = (cell.strip() for cell in row.strip("│").split("│")[:3])
    assert (name, emotion, intensity) == ("glad", "happy", f"{expected:g}")
