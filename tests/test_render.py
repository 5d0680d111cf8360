"""End-to-end `edtalk render`: manifests in, muxed mp4s out (small real model, real ffmpeg)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli
from PIL import Image

from edtalk_cli.audio import load_audio
from edtalk_cli.manifest import load_manifest
from edtalk_cli.pipeline.options import RenderOptions
from edtalk_cli.pipeline.render import JobRenderer
from edtalk_cli.video import iter_video_frames, probe_mp4, write_mp4
from edtalk_cli.weights.bundle import ModelBundle


@pytest.fixture(scope="session")
def face_photo(tmp_path_factory) -> Path:
    """A real photograph with a face (scikit-image's astronaut, 512x512)."""
    from skimage import data

    path = tmp_path_factory.mktemp("media") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def _write_manifest(directory: Path, body: str) -> Path:
    path = directory / "talk.yaml"
    path.write_text(body)
    return path


def _decoded_audio(path: Path) -> np.ndarray:
    return load_audio(path, allow_silence=True)


def test_render_image_job_streams_synced_mp4(tmp_path, parity, tiny_weights):
    speech = parity / "speech.wav"  # 1.28 s at 16 kHz
    Image.open(parity / "source.png").save(tmp_path / "face.png")
    manifest = _write_manifest(
        tmp_path,
        f"""
version: 1
jobs:
  - name: hello
    source: {{path: face.png, crop: none}}
    audio: {speech}
    emotion: happy
    output: "out/{{name}}.mp4"
""",
    )
    result = run_cli(
        "render", str(manifest), "--weights", str(tiny_weights), "--device", "cpu", "-q", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out" / "hello.mp4"
    info = probe_mp4(out)
    kinds = [s["kind"] for s in info["streams"]]
    assert kinds.count("video") == 1 and kinds.count("audio") == 1
    video, audio = info["video"], info["audio"]
    assert video["codec"] == "h264" and video["pix_fmt"] == "yuv420p" and audio["codec"] == "aac"
    assert video["fps"] == pytest.approx(25.0)
    assert video["frames"] == 32  # int(1.28 s * 25)
    assert abs(video["duration_s"] - 1.28) <= 1 / 25
    assert abs(audio["duration_s"] - 1.28) <= 1 / 25
    assert info["faststart"]
    # the audio stream is the input audio, at lag 0
    ours = _decoded_audio(out)
    ref = load_audio(speech)
    n = min(len(ours), len(ref))
    corr = np.corrcoef(ours[:n], ref[:n])[0, 1]
    assert corr > 0.95
    assert not list((tmp_path / "out").glob(".*part*"))


def _audio_lag(ours: np.ndarray, ref: np.ndarray, max_lag: int) -> tuple[int, float]:
    """(lag in samples, correlation) of the best match of ``ours[t + lag]`` with ``ref[t]`` over
    ``|lag| <= max_lag``; a positive lag means our audio is late."""
    n = min(len(ours), len(ref)) - 2 * max_lag
    ref_part = ref[max_lag : max_lag + n]
    scores = [
        float(np.corrcoef(ours[max_lag + lag : max_lag + lag + n], ref_part)[0, 1])
        for lag in range(-max_lag, max_lag + 1)
    ]
    best = int(np.argmax(scores))
    return best - max_lag, scores[best]


@pytest.mark.parametrize("fps", [24.0, 29.97, 60.0])
def test_non_25fps_and_44k_stereo_audio_stay_in_sync(tmp_path, parity, tiny_weights, fps):
    mono = load_audio(parity / "speech.wav")
    import librosa

    stereo = librosa.resample(mono, orig_sr=16000, target_sr=44100)
    stereo = np.stack([stereo, 0.5 * stereo], axis=1)
    sf.write(tmp_path / "speech44.wav", stereo, 44100)
    duration = len(stereo) / 44100
    Image.open(parity / "source.png").save(tmp_path / "face.png")
    manifest = _write_manifest(
        tmp_path,
        f"""
version: 1
jobs:
  - name: ntsc
    source: {{path: face.png, crop: none}}
    audio: speech44.wav
    fps: {fps}
    output: "out/{{name}}.mp4"
""",
    )
    job = load_manifest(manifest).jobs[0]
    renderer = JobRenderer(ModelBundle.from_dir(tiny_weights), options=RenderOptions(batch_size=4))
    result = renderer.render(job)
    info = probe_mp4(result.output)
    expected_frames = int(np.floor(duration * fps + 1e-6))
    assert info["video"]["frames"] == expected_frames == result.frames
    assert info["video"]["fps"] == pytest.approx(fps, abs=1e-3)
    assert abs(info["video"]["duration_s"] - duration) <= 1 / fps
    assert abs(info["audio"]["duration_s"] - duration) <= 1 / fps
    assert info["audio"]["start_s"] == pytest.approx(0.0, abs=1e-3)
    # the muxed audio is the input's, at lag 0 (searched over 3 frames either way)
    ours, ref = _decoded_audio(result.output), load_audio(tmp_path / "speech44.wav")  # both 16 kHz mono
    lag, corr = _audio_lag(ours, ref, max_lag=round(3 * 16000 / fps))
    assert abs(lag) <= 2 and corr > 0.95, (lag, corr)  # within 2 samples (0.125 ms)


def test_paste_back_keeps_pixels_outside_the_face(tmp_path, parity, tiny_weights, face_photo):
    manifest = _write_manifest(
        tmp_path,
        f"""
version: 1
jobs:
  - name: astro
    source: {face_photo}
    audio: {parity / "speech.wav"}
    output: "out/{{name}}.mp4"
""",
    )
    job = load_manifest(manifest).jobs[0]
    renderer = JobRenderer(ModelBundle.from_dir(tiny_weights), options=RenderOptions(batch_size=8))
    produced = renderer.frames(job)
    frames, num_frames, transforms = produced.images, produced.count, produced.transforms
    frames = list(frames)
    original = np.asarray(Image.open(face_photo).convert("RGB"))
    assert num_frames == len(frames) == 32
    x0, y0, x1, y1 = transforms[0].frame_bbox()  # the frame pixels the aligned crop covers
    outside = np.ones(original.shape[:2], dtype=bool)
    outside[y0:y1, x0:x1] = False
    assert outside.mean() > 0.5  # the face box is a minority of the photo
    for frame in frames[::8]:
        assert frame.shape == original.shape
        assert np.array_equal(frame[outside], original[outside])
        assert np.abs(frame[~outside].astype(int) - original[~outside]).mean() > 1  # the face was replaced


def test_dubbing_a_video_source_loops_and_pastes_every_frame(tmp_path, parity, tiny_weights, face_photo):
    photo = np.asarray(Image.open(face_photo).convert("RGB"))
    # a 10-frame clip whose content drifts sideways by 2 px per frame
    clip = (np.roll(photo, 2 * k, axis=1) for k in range(10))
    write_mp4(clip, tmp_path / "actor.mp4", 25)
    manifest = _write_manifest(
        tmp_path,
        f"""
version: 1
jobs:
  - name: dub
    source: {{path: actor.mp4, loop: pingpong}}
    audio: {parity / "speech.wav"}
    output: "out/{{name}}.mp4"
""",
    )
    job = load_manifest(manifest).jobs[0]
    result = JobRenderer(ModelBundle.from_dir(tiny_weights), options=RenderOptions(batch_size=8)).render(job)
    assert result.frames == 32
    assert any("extended by pingpong" in note for note in result.notes)
    frames = list(iter_video_frames(result.output))
    assert len(frames) == 32 and frames[0].shape == photo.shape
    # a corner far from the face follows the source clip's pingpong order: 0..9, 8..1, 0..9, 8..
    order = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1]
    source = [np.roll(photo, 2 * k, axis=1)[-40:, -40:].astype(int) for k in range(10)]
    for i, k in enumerate(order):
        corner = frames[i][-40:, -40:].astype(int)
        errors = [np.abs(corner - s).mean() for s in source]
        assert int(np.argmin(errors)) == k


def test_bad_job_fails_alone_with_named_file_and_no_output(tmp_path, parity, tiny_weights):
    Image.open(parity / "source.png").save(tmp_path / "face.png")
    # fixed bytes: about 1 in 300 random 2000-byte files decodes as a one-frame MPEG audio stream
    (tmp_path / "broken.wav").write_bytes(np.random.default_rng(0).bytes(2000))
    sf.write(tmp_path / "silence.wav", np.zeros(16000, dtype=np.float32), 16000)
    manifest = _write_manifest(
        tmp_path,
        f"""
version: 1
defaults:
  source: {{path: face.png, crop: none}}
jobs:
  - name: corrupt
    audio: broken.wav
    output: "out/{{name}}.mp4"
  - name: silent
    audio: silence.wav
    output: "out/{{name}}.mp4"
  - name: good
    audio: {parity / "speech.wav"}
    output: "out/{{name}}.mp4"
""",
    )
    report = tmp_path / "report.json"
    result = run_cli(
        "render",
        str(manifest),
        "--weights",
        str(tiny_weights),
        "--device",
        "cpu",
        "--report",
        str(report),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    statuses = {j["name"]: j for j in json.loads(report.read_text())["jobs"]}
    assert statuses["good"]["status"] == "done"
    assert statuses["corrupt"]["status"] == "failed" and "broken.wav" in statuses["corrupt"]["error"]
    assert statuses["silent"]["status"] == "failed" and "silent" in statuses["silent"]["error"]
    assert "broken.wav" in result.stderr
    produced = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert produced == ["good.mp4", "good.mp4.edtalk.json"]  # nothing half-written for the failed jobs


def test_missing_weights_say_how_to_install(tmp_path, parity):
    Image.open(parity / "source.png").save(tmp_path / "face.png")
    manifest = _write_manifest(
        tmp_path,
        f"""
version: 1
jobs:
  - name: a
    source: {{path: face.png, crop: none}}
    audio: {parity / "speech.wav"}
""",
    )
    result = run_cli(
        "render", str(manifest), "--weights", str(tmp_path / "empty"), "--device", "cpu", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "EDTalk" in result.stderr and "edtalk weights download" in result.stderr


def test_malformed_manifest_names_the_field_and_renders_nothing(tmp_path, parity, tiny_weights):
    manifest = _write_manifest(
        tmp_path,
        f"""
version: 1
jobs:
  - name: a
    source: nowhere.png
    audio: {parity / "speech.wav"}
    emotoin: happy
""",
    )
    result = run_cli("render", str(manifest), "--weights", str(tiny_weights), "--device", "cpu", cwd=tmp_path)
    assert result.returncode != 0
    assert "emotoin" in result.stderr and "emotion" in result.stderr  # did-you-mean
    assert "nowhere.png" in result.stderr
    assert not (tmp_path / "out").exists()


def test_crop_none_renders_at_the_source_resolution(tmp_path, parity, tiny_weights):
    """`crop: none` (the input is the face): the video has the source's own size, not the model's."""
    photo = np.asarray(Image.open(parity / "source.png").convert("RGB").resize((100, 76)))
    Image.fromarray(photo).save(tmp_path / "wide.png")
    clip = [np.roll(photo[:48, :48], k, axis=1) for k in range(6)]  # a 48x48 "face crop" video
    write_mp4(iter(clip), tmp_path / "crop48.mp4", 25)
    manifest = _write_manifest(
        tmp_path,
        f"""
version: 1
defaults:
  audio: {parity / "speech.wav"}
  output: "out/{{name}}.mp4"
jobs:
  - name: photo
    source: {{path: wide.png, crop: none}}
  - name: dub
    source: {{path: crop48.mp4, crop: none}}
""",
    )
    jobs = load_manifest(manifest).jobs
    renderer = JobRenderer(ModelBundle.from_dir(tiny_weights), options=RenderOptions(batch_size=8))
    produced = renderer.frames(jobs[0], (0, 3))
    frames, count, transforms = produced.images, produced.count, produced.transforms
    assert count == 3
    first = next(frames)
    assert transforms is None and first.shape == (76, 100, 3) and first.dtype == np.uint8
    # the model's 64x64 face, stretched back over the whole 100x76 image (not letterboxed)
    assert first[:, :10].std() > 1 and first[:, -10:].std() > 1 and first[:8].std() > 1
    for job, size in zip(jobs, [(100, 76), (48, 48)]):
        info = probe_mp4(renderer.render(job).output)["video"]
        assert (info["width"], info["height"]) == size and info["frames"] == 32
