"""`edtalk crop`: model-size face crops of real photos and videos, as `edtalk render` cuts them."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edtalk_cli.pipeline.faces import face_crops
from edtalk_cli.video import FaceDetector, iter_video_frames, probe_mp4, read_image, read_video, write_mp4
from edtalk_cli.video.align import official_template

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real"
PHOTO = REAL / "uncrop_face.jpg"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def crop_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run ``edtalk crop ARGS`` in this process (the console-script entry point): -> Run (stderr
    with its line breaks removed)."""
    from edtalk_cli.cli import main

    def run(*args: str | Path) -> Run:
        monkeypatch.setattr(sys, "argv", ["edtalk", "crop", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Run(code, out, err.replace("\n", ""))  # rich wraps long paths at the terminal width

    return run


def test_crop_a_real_photo_aligns_it_to_the_template(tmp_path: Path, crop_cli) -> None:
    done = crop_cli(PHOTO, "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    crop = read_image(tmp_path / "out" / "uncrop_face.png")
    assert crop.shape == (256, 256, 3)
    # exactly the crop `edtalk render` feeds the model
    assert np.array_equal(crop, face_crops(PHOTO, size=256, crop="auto").crops[0])
    det = FaceDetector("dlib")
    points = det.landmarks(crop, det.detect_face(crop))[:47]
    distance = np.linalg.norm(points - official_template(256)[:47], axis=1).mean()
    assert distance < 12.0  # measured 10.8 px; the square box crop is 14.3 px off

    small = crop_cli(PHOTO, "-o", tmp_path / "small", "--size", "128", "--mode", "box")
    assert small.returncode == 0, small.stderr
    boxed = read_image(tmp_path / "small" / "uncrop_face.png")
    assert np.array_equal(boxed, face_crops(PHOTO, size=128, crop="box").crops[0])


def test_crop_refuses_overwrites_and_stem_clashes_before_writing(tmp_path: Path, crop_cli) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "uncrop_face.png").write_bytes(b"mine")
    done = crop_cli(PHOTO, "-o", out)
    assert done.returncode == 2  # a usage error: nothing was done
    assert "output" in done.stderr and "uncrop_face.png' already exists" in done.stderr
    assert "--overwrite" in done.stderr
    assert (out / "uncrop_face.png").read_bytes() == b"mine"
    again = crop_cli(PHOTO, "-o", out, "--overwrite")
    assert again.returncode == 0, again.stderr
    assert read_image(out / "uncrop_face.png").shape == (256, 256, 3)

    Image.open(PHOTO).save(tmp_path / "uncrop_face.png")  # same stem, other folder and format
    fresh = tmp_path / "fresh"
    clash = crop_cli(PHOTO, tmp_path / "uncrop_face.png", "-o", fresh)
    assert clash.returncode == 2 and "same name 'uncrop_face'" in clash.stderr
    assert not fresh.exists() or not any(fresh.iterdir())


def test_crop_names_the_file_without_a_face_and_still_writes_the_others(tmp_path: Path, crop_cli) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    done = crop_cli(tmp_path / "noise.png", PHOTO, "-o", tmp_path / "out")
    assert done.returncode == 1
    assert "no face found in" in done.stderr and "noise.png'" in done.stderr
    assert "1 of 2 inputs failed" in done.stderr
    assert not (tmp_path / "out" / "noise.png").exists()
    assert read_image(tmp_path / "out" / "uncrop_face.png").shape == (256, 256, 3)


def test_crop_a_video_keeps_its_audio_and_duration(tmp_path: Path, crop_cli) -> None:
    n = 50
    clip = read_video(REAL / "pose_source2.mp4", fps=25, max_frames=n)
    frames = []
    for t in range(n):  # the real clip moving across a wider canvas
        canvas = np.full((300, 400, 3), 60, np.uint8)
        canvas[20 : 20 + 256, 10 + 2 * t : 266 + 2 * t] = clip[t]
        frames.append(canvas)
    write_mp4(iter(frames), tmp_path / "talk.mp4", 25, REAL / "pose_source2.mp4", n_frames=n)
    done = crop_cli(tmp_path / "talk.mp4", "-o", tmp_path / "out", "--size", "128")
    assert done.returncode == 0, done.stderr
    info = probe_mp4(tmp_path / "out" / "talk.mp4")
    assert info["video"]["frames"] == n and info["video"]["fps"] == pytest.approx(25.0)
    assert info["audio"] is not None
    assert abs(info["audio"]["duration_s"] - n / 25) <= 1 / 25
    assert abs(info["video"]["duration_s"] - n / 25) <= 1 / 25
    crops = list(iter_video_frames(tmp_path / "out" / "talk.mp4"))
    assert len(crops) == n and crops[0].shape == (128, 128, 3)
    # the face stays put in the crop while it moves across the canvas
    det = FaceDetector("dlib")
    first, last = (det.landmarks(c, det.detect_face(c)).mean(axis=0) for c in (crops[0], crops[-1]))
    assert np.linalg.norm(first - last) < 3.0
