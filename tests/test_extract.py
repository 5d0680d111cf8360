"""``edtalk extract``'s pipeline: images and videos -> coefficient tracks on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edtalk_cli.errors import EdtalkError, UsageError
from edtalk_cli.pipeline.engine import CoefficientTrack
from edtalk_cli.pipeline.extract import extract_tracks

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real"
OPTIONS = {"weights": None, "model": "auto", "device": "cpu", "batch_size": 16}


def test_tracks_of_a_real_video_and_photo_are_written_once_each(tmp_path: Path) -> None:
    """A 10 s clip at 5 fps gives 50 rows per track, a photo one; the same photo named twice is
    extracted once; the .npz and the .npy files hold the same float32 rows."""
    video, photo = REAL / "mouth_source.mp4", REAL / "uncrop_face.jpg"
    again = REAL / ".." / "real" / "uncrop_face.jpg"
    out = tmp_path / "tracks"
    clip_model, (clip,) = extract_tracks([video], out, fps=5.0, crop="none", **OPTIONS)
    photo_model, (face,) = extract_tracks([photo, again], out, fps=5.0, crop="auto", **OPTIONS)
    assert clip_model == photo_model == "the built-in demo model"
    assert (clip.frames, clip.missing_frames, face.frames, face.missing_frames) == (50, 0, 1, 0)
    assert [p.name for p in clip.written] == [
        "mouth_source.npz",
        "mouth_source_mouth.npy",
        "mouth_source_pose.npy",
        "mouth_source_expression.npy",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in clip.written + face.written)
    bundle = np.load(out / "mouth_source.npz")
    for name, dim in (("mouth", 20), ("pose", 6), ("expression", 10)):
        rows = np.load(out / f"mouth_source_{name}.npy")
        assert rows.shape == (50, dim) and rows.dtype == np.float32
        assert np.array_equal(rows, bundle[name])
    mouth = np.load(out / "mouth_source_mouth.npy")
    assert np.abs(np.diff(mouth, axis=0)).mean() > 0.01  # the speaker's mouth moves over the clip
    assert np.load(out / "uncrop_face_expression.npy").shape == (1, 10)


def test_bad_inputs_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "tracks"
    with pytest.raises(EdtalkError, match=r"input file '.*missing\.png' does not exist"):
        extract_tracks(
            [REAL / "uncrop_face.jpg", tmp_path / "missing.png"], out, fps=5.0, crop="auto", **OPTIONS
        )
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "uncrop_face.jpg").write_bytes((REAL / "uncrop_face.jpg").read_bytes())
    with pytest.raises(UsageError, match=r"would both write .*tracks/uncrop_face\.npz"):
        extract_tracks(
            [REAL / "uncrop_face.jpg", tmp_path / "b" / "uncrop_face.jpg"],
            out,
            fps=5.0,
            crop="auto",
            **OPTIONS,
        )
    with pytest.raises(EdtalkError, match="--crop must be 'auto', 'box' or 'none', got 'face'"):
        extract_tracks([REAL / "uncrop_face.jpg"], out, fps=5.0, crop="face", **OPTIONS)
    assert not out.exists()


def test_a_failed_track_save_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    good = CoefficientTrack(rng.normal(size=(4, 20)), rng.normal(size=(4, 6)), rng.normal(size=(4, 10)))
    target = good.save(tmp_path / "clip.npz")
    before = target.read_bytes()
    unpicklable = np.empty(4, dtype=object)
    unpicklable[:] = [lambda: None] * 4  # pickling a lambda fails after the archive was begun
    broken = CoefficientTrack(good.mouth + 1, good.pose, unpicklable)
    with pytest.raises(Exception, match="pickle"):
        broken.save(target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npz"]
    with np.load(target) as saved:
        assert np.array_equal(saved["mouth"], good.mouth) and np.array_equal(
            saved["expression"], good.expression
        )
    parts = good.save_components(tmp_path, "clip")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip.npz",
        "clip_expression.npy",
        "clip_mouth.npy",
        "clip_pose.npy",
    ]
    loaded = np.load(parts["pose"])
    assert loaded.dtype == np.float32 and np.array_equal(loaded, good.pose.astype(np.float32))
