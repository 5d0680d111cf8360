"""Which files a model bundle reads and its one content identity (weights/bundle.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edtalk_cli.errors import WeightsError
from edtalk_cli.hashing import FileHasher, sha256_file
from edtalk_cli.weights import BUNDLED_PRESETS_DIR, OFFICIAL_EMOTIONS
from edtalk_cli.weights.bundle import DEMO_DIR, ModelBundle, ModelFiles, demo_weights_dir
from edtalk_cli.weights.identity import identity_digest

CHECKPOINTS = ("EDTalk.pt", "EDTalk_lip_pose.pt", "Audio2Lip.pt")


def _checkpoints_only(tiny_weights: Path, root: Path) -> Path:
    """A weights directory with the three official checkpoints and no ``predefined_exp_weights/``."""
    root.mkdir()
    for name in CHECKPOINTS:
        os.link(tiny_weights / name, root / name)
    return root


def test_presets_are_the_shipped_official_ones_until_the_directory_has_its_own(
    tmp_path: Path, tiny_weights: Path
) -> None:
    weights = _checkpoints_only(tiny_weights, tmp_path / "ckpts")
    hasher = FileHasher()

    shipped = ModelFiles.from_dir(weights)
    assert (shipped.kind, shipped.is_demo, shipped.root) == ("edtalk", False, weights)
    assert shipped.files == [weights / "EDTalk.pt", weights / "Audio2Lip.pt"]
    assert shipped.emotions == tuple(BUNDLED_PRESETS_DIR / f"{n}.npy" for n in sorted(OFFICIAL_EMOTIONS))
    before = shipped.content_identity(hasher)
    assert before["emotions"] == {
        f"{n}.npy": sha256_file(BUNDLED_PRESETS_DIR / f"{n}.npy") for n in OFFICIAL_EMOTIONS
    }
    assert ModelFiles.from_dir(weights, "lip_pose").emotions == ()  # the lip+pose model has no bank

    own = weights / "predefined_exp_weights"
    own.mkdir()
    np.save(own / "happy.npy", np.full((1, 10), 0.5, np.float32))
    chosen = ModelFiles.from_dir(weights)
    assert chosen.emotions == (own / "happy.npy",)
    with_own = chosen.content_identity(hasher)
    assert with_own["emotions"] == {"happy.npy": sha256_file(own / "happy.npy")}
    assert with_own["files"] == before["files"] and with_own != before

    bundle = ModelBundle.from_dir(weights, hasher=hasher)
    assert list(bundle.emotions) == ["happy"]
    np.testing.assert_array_equal(bundle.emotions["happy"], np.full(10, 0.5, np.float32))
    assert bundle.content_identity == with_own
    assert bundle.identity == identity_digest(with_own) and len(bundle.identity) == 16


def test_the_identity_follows_a_presets_content_not_its_mtime(tmp_path: Path, tiny_weights: Path) -> None:
    weights = _checkpoints_only(tiny_weights, tmp_path / "ckpts")
    preset = weights / "predefined_exp_weights" / "sad.npy"
    preset.parent.mkdir()
    np.save(preset, np.zeros((1, 10), np.float32))
    hasher = FileHasher()
    first = ModelFiles.from_dir(weights).content_identity(hasher)

    mtime = preset.stat().st_mtime_ns
    os.utime(preset, ns=(mtime, mtime + 5_000_000_000))  # touched, same bytes
    assert ModelFiles.from_dir(weights).content_identity(hasher) == first

    np.save(preset, np.ones((1, 10), np.float32))  # same size and name, other values
    os.utime(preset, ns=(mtime, mtime - 5_000_000_000))
    edited = ModelFiles.from_dir(weights).content_identity(hasher)
    assert edited["emotions"] == {"sad.npy": sha256_file(preset)} != first["emotions"]
    assert edited["files"] == first["files"]


@pytest.mark.skipif(demo_weights_dir() is None, reason="demo model not built")
def test_the_demo_model_stands_in_only_when_no_weights_were_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # an empty per-user cache
    monkeypatch.delenv("EDTALK_WEIGHTS", raising=False)
    demo = ModelFiles.from_dir(None)
    assert (demo.is_demo, demo.root, demo.kind) == (True, DEMO_DIR, "edtalk")
    assert demo.emotions == tuple(sorted((DEMO_DIR / "predefined_exp_weights").glob("*.npy")))
    assert demo.weights_dir == tmp_path / "xdg" / "edtalk" / "weights"
    assert demo.description == "the built-in demo model"

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsError, match=r"EDTalk lip-pose model \(EDTalk_lip_pose.pt\) are missing"):
        ModelFiles.from_dir(empty)  # named with --weights: no stand-in
    monkeypatch.setenv("EDTALK_WEIGHTS", str(empty))
    with pytest.raises(WeightsError, match="missing"):
        ModelFiles.from_dir(None)  # named with $EDTALK_WEIGHTS
    assert ModelFiles.from_dir(None, "demo").is_demo
    with pytest.raises(WeightsError, match="unknown model 'big'"):
        ModelFiles.from_dir(empty, "big")


def test_the_crop_size_is_read_without_the_tensor_data(tmp_path: Path, tiny_weights: Path) -> None:
    from edtalk_cli.weights.checkpoint import convert_to_safetensors, read_checkpoint

    files = ModelFiles.from_dir(tiny_weights)
    assert files.crop_size() == ModelBundle.from_dir(tiny_weights).size == 64
    assert ModelFiles.from_dir(model="demo").crop_size() == ModelBundle.from_dir(model="demo").size
    converted = convert_to_safetensors(tiny_weights / "EDTalk_lip_pose.pt", tmp_path)
    for path in (tiny_weights / "EDTalk.pt", converted):
        full, lazy = read_checkpoint(path), read_checkpoint(path, shapes_only=True)
        assert (lazy.kind, lazy.config) == (full.kind, full.config)
        shapes = {k: v.shape for k, v in full.state_dict.items()}
        assert {k: v.shape for k, v in lazy.state_dict.items()} == shapes
    # a safetensors file's tensors stay on the meta device: no data read (a .pt file is memory-mapped)
    assert all(v.is_meta for v in lazy.state_dict.values())
