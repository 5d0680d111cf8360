"""The official emotion presets shipped in the package, and the emotion check of validate / --dry-run."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from edtalk_cli.manifest import load_manifest
from edtalk_cli.pipeline.engine import CoefficientTrack
from edtalk_cli.pipeline.options import RenderOptions
from edtalk_cli.pipeline.render import JobRenderer
from edtalk_cli.weights import BUNDLED_PRESETS_DIR, OFFICIAL_EMOTIONS
from edtalk_cli.weights.bundle import ModelBundle, ModelFiles

OFFICIAL_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "official"


def test_the_shipped_presets_are_the_official_files_with_their_licence():
    shipped = sorted(p.name for p in BUNDLED_PRESETS_DIR.glob("*.npy"))
    assert shipped == sorted(f"{name}.npy" for name in OFFICIAL_EMOTIONS)
    for name in shipped:
        official = OFFICIAL_DIR / "predefined_exp_weights" / name
        assert (BUNDLED_PRESETS_DIR / name).read_bytes() == official.read_bytes(), name
    data = BUNDLED_PRESETS_DIR.parent
    assert (data / "LICENSE.txt").read_bytes() == (OFFICIAL_DIR / "LICENSE.txt").read_bytes()
    readme = (data / "README.md").read_text()
    assert "tanshuai0219/EDTalk" in readme and "06a9a96" in readme and "Apache" in readme
    assert "predefined_exp_weights/" in readme


def _link_weights(src: dict[str, Path], dst: Path, kinds: tuple[str, ...]) -> Path:
    dst.mkdir()
    for kind in kinds:
        os.link(src[kind], dst / src[kind].name)
    return dst


def test_official_weights_without_presets_render_happy_with_the_shipped_vector(
    tmp_path, parity, standin_checkpoints
):
    weights = _link_weights(
        standin_checkpoints, tmp_path / "ckpts", ("edtalk", "edtalk_lip_pose", "audio2lip")
    )
    assert not (weights / "predefined_exp_weights").exists()
    happy = np.load(BUNDLED_PRESETS_DIR / "happy.npy").reshape(-1)

    bundle = ModelBundle.from_dir(weights)
    assert sorted(bundle.emotions) == sorted(OFFICIAL_EMOTIONS)
    assert [p.parent for p in bundle.emotion_files] == [BUNDLED_PRESETS_DIR] * 8
    manifest = tmp_path / "talk.yaml"
    manifest.write_text(
        f"version: 1\njobs:\n  - name: smile\n    source: {{path: {parity / 'source.png'}, crop: none}}\n"
        f"    audio: {parity / 'speech.wav'}\n    emotion: happy\n"
    )
    job = load_manifest(manifest).jobs[0]
    renderer = JobRenderer(bundle, options=RenderOptions(batch_size=1))
    source = CoefficientTrack(mouth=np.zeros((1, 20)), pose=np.zeros((1, 6)), expression=np.zeros((1, 10)))
    plan = renderer.plan(job, 5, source)
    np.testing.assert_allclose(plan.expression, np.tile(happy, (5, 1)), rtol=0, atol=1e-6)
    # the fingerprint's weight identity counts the shipped files the render reads
    identity = ModelFiles.from_dir(weights, "auto").content_identity()
    assert identity["kind"] == "edtalk"
    assert list(identity["emotions"]) == sorted(f"{n}.npy" for n in OFFICIAL_EMOTIONS)
    assert identity == bundle.content_identity
    # the lip+pose model gets none; a directory's own presets win
    lip_pose = ModelFiles.from_dir(weights, "lip_pose")
    assert lip_pose.emotion_names == frozenset() and not lip_pose.has_expression
    own = weights / "predefined_exp_weights"
    own.mkdir()
    np.save(own / "happy.npy", np.ones((1, 10), np.float32))
    assert ModelFiles.from_dir(weights, "auto").emotion_names == {"happy"}


@pytest.fixture()
def emotion_manifest(tmp_path, parity) -> Path:
    path = tmp_path / "talk.yaml"
    path.write_text(
        f"""version: 1
defaults:
  source: {{path: {parity / "source.png"}, crop: none}}
  audio: {parity / "speech.wav"}
jobs:
  - name: smile
    emotion: happy
  - name: gloom
    emotion: sad
  - name: mixed
    segments:
      - start: 0.5
        emotion: {{blend: {{happy: 0.5, fear: 0.5}}}}
  - name: calm
"""
    )
    return path


@pytest.mark.slow  # four CLI runs: about 35 s on the shared 2-core machine
def test_validate_and_dry_run_name_each_emotion_the_weights_lack(tmp_path, tiny_weights, emotion_manifest):
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("EDTalk.pt", "Audio2Lip.pt"):
        os.link(tiny_weights / name, partial / name)
    (partial / "predefined_exp_weights").mkdir()
    for name in ("happy", "neutral"):
        shutil.copy(
            tiny_weights / "predefined_exp_weights" / f"{name}.npy", partial / "predefined_exp_weights"
        )

    for args in (("validate", "--no-media"), ("render", "--dry-run")):
        result = run_cli(*args, str(emotion_manifest), "--weights", str(partial), cwd=tmp_path)
        assert result.returncode != 0, (args, result.stdout, result.stderr)
        text = result.stdout + result.stderr
        assert re.search(
            r"talk\.yaml:9:\d+: jobs\[1\]\.emotion: job 'gloom': emotion 'sad' is not available", text
        )
        assert re.search(r"talk\.yaml:13:\d+: .*job 'mixed': emotion 'fear' is not available", text), text
        assert "job 'smile'" not in text and "job 'calm'" not in text

    # the same manifest with every preset present passes validate
    result = run_cli(
        "validate", "--no-media", str(emotion_manifest), "--weights", str(tiny_weights), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr


def test_validate_and_dry_run_refuse_any_emotion_with_the_lip_pose_model(
    tmp_path, tiny_weights, emotion_manifest
):
    lip_pose = tmp_path / "lip_pose"
    lip_pose.mkdir()
    for name in ("EDTalk_lip_pose.pt", "Audio2Lip.pt"):
        os.link(tiny_weights / name, lip_pose / name)
    for args in (("validate", "--no-media"), ("render", "--dry-run")):
        result = run_cli(*args, str(emotion_manifest), "--weights", str(lip_pose), cwd=tmp_path)
        assert result.returncode != 0, (args, result.stdout, result.stderr)
        text = result.stdout + result.stderr
        for job, line in (("smile", 7), ("gloom", 9), ("mixed", 13)):
            assert re.search(rf"talk\.yaml:{line}:\d+: .*job '{job}': .* is the lip\+pose model", text), (
                job,
                text,
            )
        assert "job 'calm'" not in text
