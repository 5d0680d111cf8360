"""Video layer: decoding, resampling, face detection/tracking, crop, paste-back and the mp4 writer.

Real ffmpeg (imageio-ffmpeg), real files in tmp_path, a real photo (skimage's astronaut).
"""

from __future__ import annotations

import math
import socket
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from skimage import data

from edtalk_cli.errors import MediaError, WeightsError
from edtalk_cli.video import (
    Box,
    CropTransform,
    FaceDetector,
    VideoWriter,
    crop_box_for_face,
    crop_face,
    feather_mask,
    find_face,
    from_model_tensor,
    is_image_path,
    is_video_path,
    iter_video_frames,
    mp4_top_level_atoms,
    official_minmax_to_uint8,
    paste_back,
    probe_mp4,
    probe_video,
    read_image,
    read_video,
    to_model_tensor,
    track_faces,
    write_mp4,
)
from edtalk_cli.video._ffmpeg import ffmpeg_exe, passthrough_timestamps

# The astronaut's face (skin, brow to chin) in skimage.data.astronaut(), 512x512, checked by eye.
ASTRONAUT_FACE = Box(180, 75, 265, 170)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def cascade() -> FaceDetector:
    return FaceDetector("cascade")


def _smooth_frames(n: int, h: int = 96, w: int = 128) -> list[np.ndarray]:
    """A smooth, moving colour pattern (compresses well, so round trips are tight)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for i in range(n):
        r = 128 + 100 * np.sin(2 * np.pi * (xx + 2 * i) / w)
        g = 128 + 100 * np.cos(2 * np.pi * yy / h)
        b = np.full_like(xx, 40.0 + i)
        out.append(np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8))
    return out


def _write_wav(path: Path, seconds: float, sr: int = 44100, channels: int = 2, seed: int = 0) -> np.ndarray:
    """Band-limited noise (so a time shift would destroy the correlation); returns the mono mix."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    x = rng.standard_normal(n)
    x = np.convolve(x, np.ones(8) / 8, mode="same") * 0.3  # keep it well below AAC's cutoff
    sig = np.repeat(x[:, None], channels, axis=1)
    sf.write(path, sig.astype(np.float32), sr, subtype="PCM_16")
    return x


def _decode_audio(path: Path, sr: int) -> np.ndarray:
    proc = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(sr),
         "-f", "f32le", "-"],
        capture_output=True, check=True,
    )  # fmt: skip
    return np.frombuffer(proc.stdout, dtype=np.float32)


# --------------------------------------------------------------------------------------- writer


@pytest.mark.parametrize("fps", [25, 29.97, Fraction(30000, 1001)])
def test_write_mp4_streams_sync_faststart_and_pixels(tmp_path: Path, fps: float | Fraction) -> None:
    wav = tmp_path / "speech.wav"
    wav_dur = 1.37
    mono = _write_wav(wav, wav_dur)
    n = math.floor(wav_dur * float(fps))  # round-down(audio_dur * fps), as the pipeline does
    frames = _smooth_frames(n)
    out = tmp_path / "out.mp4"
    res = write_mp4(iter(frames), out, fps, wav)

    assert res.frames == n and res.path == out
    assert res.duration_s == pytest.approx(n / float(fps))
    info = probe_mp4(out)
    kinds = [s["kind"] for s in info["streams"]]
    assert kinds == ["video", "audio"]
    v, a = info["video"], info["audio"]
    assert (v["codec"], v["pix_fmt"], v["width"], v["height"]) == ("h264", "yuv420p", 128, 96)
    assert a["codec"] == "aac" and a["sample_rate"] == 48000
    assert v["frames"] == n  # decoded and counted: -shortest or muxing did not cut a frame
    assert v["fps"] == pytest.approx(float(fps), abs=0.01)
    one_frame = 1 / float(fps)
    assert v["start_s"] == 0 and a["start_s"] == 0
    assert abs(v["duration_s"] - wav_dur) < one_frame
    assert abs(a["duration_s"] - wav_dur) < one_frame
    assert abs(info["duration"] - wav_dur) < one_frame  # container duration
    vinfo = probe_video(out)
    assert vinfo.n_frames == n and vinfo.has_audio and vinfo.duration_s == pytest.approx(n / float(fps))
    # faststart: the moov atom precedes mdat in the file bytes
    atoms = mp4_top_level_atoms(out)
    assert atoms.index("moov") < atoms.index("mdat") and info["faststart"]
    # pixels round-trip within codec tolerance
    back = read_video(out)
    assert back.shape == (n, 96, 128, 3)
    assert np.abs(back.astype(np.int16) - np.stack(frames)).mean() < 1.5
    # the audio is the input audio, in sync (correlation at lag 0)
    dec = _decode_audio(out, 44100)
    m = min(len(dec), len(mono)) - 2000
    corr = np.corrcoef(dec[1000:m], mono[1000:m])[0, 1]
    assert corr > 0.95
    assert not list(tmp_path.glob(".*part*"))  # no temp file left


def test_write_mp4_tags_rgb_frames_bt709_in_every_field(tmp_path: Path) -> None:
    from edtalk_cli.video._ffmpeg import parse_input_header, run_ffmpeg

    out = tmp_path / "tagged.mp4"
    write_mp4([np.full((32, 48, 3), 90, np.uint8)] * 2, out, 25)
    header = parse_input_header(run_ffmpeg(["-i", str(out)]).stderr.decode("utf-8", "replace"))
    video = header.first("video")
    assert (video.pix_fmt, video.color_range) == ("yuv420p", "tv")
    assert video.color_tags == ("bt709", "bt709", "bt709")  # matrix, primaries, transfer


def test_write_mp4_n_frames_trims_and_pads_audio(tmp_path: Path) -> None:
    long_wav, short_wav = tmp_path / "long.wav", tmp_path / "short.wav"
    _write_wav(long_wav, 2.0, sr=16000, channels=1)
    _write_wav(short_wav, 0.5, sr=16000, channels=1)
    frames = _smooth_frames(25, 32, 32)
    for wav in (long_wav, short_wav):
        out = tmp_path / f"{wav.stem}.mp4"
        write_mp4(frames, out, 25, wav, n_frames=25)
        info = probe_mp4(out)
        assert info["video"]["frames"] == 25
        assert abs(info["audio"]["duration_s"] - 1.0) < 1 / 25  # trimmed (2 s) or padded (0.5 s)
    with pytest.raises(ValueError, match="n_frames=30"):
        write_mp4(frames, tmp_path / "few.mp4", 25, long_wav, n_frames=30)
    assert not (tmp_path / "few.mp4").exists()
    assert not list(tmp_path.glob(".*part*"))


def test_write_mp4_odd_size_is_padded_to_even(tmp_path: Path) -> None:
    frames = [np.full((49, 65, 3), 200, np.uint8)] * 3
    res = write_mp4(frames, tmp_path / "odd.mp4", 25)
    assert (res.width, res.height) == (66, 50)
    back = read_video(tmp_path / "odd.mp4")
    assert back.shape == (3, 50, 66, 3)
    assert np.abs(back.astype(int) - 200).max() <= 2  # the padding replicates the edge


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_write_mp4_failure_leaves_no_file(tmp_path: Path, exc_type: type[BaseException]) -> None:
    def frames():
        for i, f in enumerate(_smooth_frames(10)):
            if i == 6:
                raise exc_type("boom")
            yield f

    out = tmp_path / "sub" / "out.mp4"
    with pytest.raises(exc_type, match="boom"):
        write_mp4(frames(), out, 25)
    assert list(out.parent.iterdir()) == []  # neither the final nor the .part file

    # the same through the context manager, and a generator closed mid-way (GeneratorExit)
    def producer():
        with VideoWriter(out, 25) as w:
            for f in _smooth_frames(10):
                w.write(f)
                yield

    gen = producer()
    next(gen), next(gen)
    gen.close()
    assert list(out.parent.iterdir()) == []


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"missing\.wav"):
        write_mp4(_smooth_frames(2), tmp_path / "o.mp4", 25, tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="uint8"):
        write_mp4([np.zeros((8, 8, 3), np.float32)], tmp_path / "o.mp4", 25)
    with pytest.raises(ValueError, match="size 16x8"):
        write_mp4([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 16, 3), np.uint8)], tmp_path / "o.mp4", 25)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------- reading


def _index_clip(path: Path, n: int, fps: float) -> None:
    """Flat frames whose red level encodes their index (i * 5), green the complement."""
    frames = [np.dstack([np.full((48, 64), 5 * i), np.full((48, 64), 250 - 5 * i), np.full((48, 64), 30)])
              .astype(np.uint8) for i in range(n)]  # fmt: skip
    write_mp4(frames, path, fps, crf=10)


def _indices(frames: np.ndarray) -> list[int]:
    return [round(float(f[..., 0].mean()) / 5) for f in frames]


def test_iter_video_frames_resamples_by_time(tmp_path: Path) -> None:
    clip = tmp_path / "clip30.mp4"
    _index_clip(clip, 45, 30)  # 1.5 s
    info = probe_video(clip)
    assert (info.n_frames, info.width, info.height, info.has_audio) == (45, 64, 48, False)
    assert info.fps == pytest.approx(30) and info.duration_s == pytest.approx(1.5) and not info.vfr

    native = read_video(clip)
    assert _indices(native) == list(range(45))
    at25 = list(iter_video_frames(clip, fps=25))
    assert len(at25) == info.frames_at(25) == 38  # round(1.5 * 25 = 37.5), halves up
    # frame k shows the source frame on screen at k/25: floor(k * 30 / 25)
    assert _indices(np.stack(at25)) == [math.floor(k * 30 / 25) for k in range(38)]
    at60 = read_video(clip, fps=60)
    assert len(at60) == 90 and _indices(at60) == [k // 2 for k in range(90)]
    assert _indices(read_video(clip, fps=30)) == list(range(45))
    small = read_video(clip, fps=25, max_frames=5, size=(32, 24))
    assert small.shape == (5, 24, 32, 3) and _indices(small) == [0, 1, 2, 3, 4]
    assert at25[0].flags.writeable


def test_variable_frame_rate_clip_holds_frames_over_gaps(tmp_path: Path) -> None:
    frames = np.stack([np.full((32, 32, 3), 5 * i, np.uint8) for i in range(30)])
    vfr = tmp_path / "vfr.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "32x32",
         "-framerate", "30", "-i", "-", "-vf", r"setpts=N/30/TB+gte(N\,15)*0.5/TB", "-fps_mode", "vfr",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(vfr)],
        input=frames.tobytes(), check=True,
    )  # fmt: skip
    info = probe_video(vfr)
    assert info.vfr and info.n_frames == 30
    assert len(read_video(vfr)) == 30
    out = read_video(vfr, fps=30)
    idx = _indices(out)
    assert len(out) == info.frames_at(30)
    assert idx[:15] == list(range(15))
    assert idx[15:30] == [14] * 15  # the half-second gap holds frame 14
    assert idx[30:45] == list(range(15, 30))


def test_edit_list_cut_and_rotation_metadata(tmp_path: Path) -> None:
    clip = tmp_path / "clip30.mp4"
    _index_clip(clip, 30, 30)
    # A stream-copied cut starts mid-GOP: the mp4 keeps the earlier packets, flagged "discard"
    # by its edit list. Probe must count only what the decoder outputs.
    cut, rot = tmp_path / "cut.mp4", tmp_path / "rot.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-ss", "0.5", "-i", str(clip), "-c", "copy", str(cut)], check=True
    )
    info = probe_video(cut)
    assert (info.n_frames, info.duration_s) == (15, pytest.approx(0.5))
    assert _indices(read_video(cut)) == list(range(15, 30))
    assert _indices(read_video(cut, fps=30)) == list(range(15, 30))
    # a display-matrix rotation: ffmpeg rotates while decoding, and probe reports that size
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(clip), "-c", "copy", str(rot)],
        check=True,
    )
    info = probe_video(rot)
    assert (info.width, info.height) == (48, 64)
    assert read_video(rot, max_frames=2).shape == (2, 64, 48, 3)


def test_passthrough_timing_option_matches_the_ffmpeg_binary(tmp_path: Path) -> None:
    """``-fps_mode`` where ffmpeg knows it (5.1+); ``-vsync`` for a binary that rejects it.

    ffmpeg 4.x (e.g. the one in imageio-ffmpeg 0.5's manylinux2010 wheel) stops with
    "Unrecognized option 'fps_mode'"; the stand-in below is the bundled ffmpeg behind a
    wrapper that answers exactly that, as such a build does.
    """
    assert passthrough_timestamps() == ("-fps_mode", "passthrough")
    old = tmp_path / "ffmpeg-4.2"
    old.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do [ "$a" = -fps_mode ] && { echo "Unrecognized option \'fps_mode\'." >&2; exit 1; }; done\n'
        f'exec "{ffmpeg_exe()}" "$@"\n'
    )
    old.chmod(0o755)
    assert passthrough_timestamps(str(old)) == ("-vsync", "passthrough")
    # a build that fails the probe for another reason (here: no lavfi) keeps the current spelling
    no_lavfi = tmp_path / "ffmpeg-no-lavfi"
    no_lavfi.write_text("#!/bin/sh\necho \"Unknown input format: 'lavfi'\" >&2\nexit 1\n")
    no_lavfi.chmod(0o755)
    assert passthrough_timestamps(str(no_lavfi)) == ("-fps_mode", "passthrough")


def test_probe_video_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"not found: '.*nothing\.mp4'"):
        probe_video(tmp_path / "nothing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 50)
    with pytest.raises(MediaError, match=r"junk\.mp4") as err:
        probe_video(junk)
    assert "MP4" in str(err.value)  # says what works
    wav = tmp_path / "voice.wav"
    _write_wav(wav, 0.2, sr=16000, channels=1)
    with pytest.raises(MediaError, match=r"'.*voice\.wav' has no video stream"):
        probe_video(wav)
    with pytest.raises(MediaError, match=r"junk\.mp4"):
        iter_video_frames(junk)  # raised at call time, not at the first next()


def test_read_image_modes_exif_and_errors(tmp_path: Path) -> None:
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :10] = (255, 0, 0)
    # EXIF orientation 6: stored landscape, displayed rotated 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    img = read_image(tmp_path / "rot.jpg")
    assert img.shape == (30, 20, 3) and img.dtype == np.uint8
    assert img[:10, :, 0].mean() > 200 and img[-10:, :, 0].mean() < 50  # red band now on top

    grey = np.arange(200, dtype=np.uint8).reshape(10, 20)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    g = read_image(tmp_path / "grey.png")
    assert g.shape == (10, 20, 3) and (g == grey[..., None]).all()

    rgba = np.dstack([rgb, np.full((20, 30), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert (read_image(tmp_path / "a.png") == rgb).all()  # alpha dropped, colour kept

    g16 = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 257).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert (read_image(tmp_path / "g16.png")[..., 0] == np.arange(200).reshape(10, 20)).all()

    with pytest.raises(MediaError, match=r"image file not found: '.*face\.png'"):
        read_image(tmp_path / "face.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(MediaError, match=r"cannot read image '.*bad\.png'") as err:
        read_image(tmp_path / "bad.png")
    assert "PNG, JPEG" in str(err.value)


def test_path_kinds(tmp_path: Path) -> None:
    assert is_image_path("a/b/face.JPG") and not is_video_path("face.jpg")
    assert is_video_path("clip.MOV") and not is_image_path("clip.mp4")
    frames = [Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "still.gif")
    assert is_video_path(tmp_path / "anim.gif") and not is_image_path(tmp_path / "anim.gif")
    assert is_image_path(tmp_path / "still.gif") and not is_video_path(tmp_path / "still.gif")


# --------------------------------------------------------------------------------------- crop


def test_crop_face_pads_with_edge_or_reflect_and_keeps_aspect(astronaut: np.ndarray) -> None:
    box = Box(-30, 400, 70, 500)  # 100 px square, 30 px past the left edge
    for mode in ("edge", "reflect"):
        crop = crop_face(astronaut, box, 100, pad_mode=mode)  # size == side: no resampling
        padded = np.pad(astronaut, ((0, 0), (30, 0), (0, 0)), mode=mode)
        assert (crop == padded[400:500, 0:100]).all()
    black = crop_face(astronaut, box, 100, pad_mode="constant")
    assert (black[:, :30] == 0).all() and (black[:, 30:] == astronaut[400:500, :70]).all()
    assert crop_face(astronaut, box, 256).shape == (256, 256, 3)


def test_paste_back_is_exact_outside_and_blends_inside() -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    face = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    t = CropTransform.from_box(Box(110, -20, 190, 60), frame.shape, 64)  # crosses right and top edges
    out = paste_back(frame, face, t, feather=0.15)
    x0, y0, x1, y1 = t.overlap()
    assert (x0, y0, x1, y1) == (110, 0, 160, 60)
    inside = np.zeros(frame.shape[:2], bool)
    inside[y0:y1, x0:x1] = True
    assert (out[~inside] == frame[~inside]).all()  # bit-identical outside the crop square
    mask = feather_mask(t.side, 0.15)[20:80, 0:50]  # the part of the mask inside the frame
    zero = mask == 0
    assert zero.any() and (out[y0:y1, x0:x1][zero] == frame[y0:y1, x0:x1][zero]).all()
    # at the square's centre (mask == 1) the pixel is the resized face
    up = np.asarray(Image.fromarray(face).resize((80, 80), Image.Resampling.BICUBIC))
    assert feather_mask(80, 0.15)[40, 40] == 1.0
    assert (out[20, 150] == up[40, 40]).all()
    # in the feather ring the result lies between frame and face
    ring = (mask > 0.2) & (mask < 0.8)
    lo = np.minimum(frame[y0:y1, x0:x1], up[20:80, :50])[ring]
    hi = np.maximum(frame[y0:y1, x0:x1], up[20:80, :50])[ring]
    got = out[y0:y1, x0:x1][ring]
    assert ring.sum() > 50 and (got >= lo).all() and (got <= hi).all()


def test_identity_crop_and_paste_changes_little(astronaut: np.ndarray) -> None:
    box = crop_box_for_face(Box(175, 70, 275, 175), astronaut.shape)
    t = CropTransform.from_box(box, astronaut.shape, 256)
    out = paste_back(astronaut, crop_face(astronaut, t, 256), t)
    inside = np.zeros(astronaut.shape[:2], bool)
    x0, y0, x1, y1 = t.overlap()
    inside[y0:y1, x0:x1] = True
    diff = np.abs(out.astype(np.int16) - astronaut)
    assert diff[~inside].max() == 0
    assert diff[inside].mean() < 2.0


def test_crop_box_is_square_centered_and_may_leave_the_image() -> None:
    face = Box(10, 40, 60, 110)  # 50 x 70 near the left edge of a 200 x 300 image
    crop = crop_box_for_face(face, (200, 300, 3), increase=0.1)
    assert crop.width == pytest.approx(crop.height) == pytest.approx(1.2 * 70)  # official 0.1 rule
    assert (crop.cx, crop.cy) == pytest.approx((face.cx, face.cy))
    assert crop.x0 < 0  # not clipped: the aspect ratio survives
    inside = crop_box_for_face(face, (200, 300, 3), increase=0.1, clip_to_image=True)
    assert inside.x0 == pytest.approx(0) and inside.width == pytest.approx(crop.width)


def test_model_tensor_conversions() -> None:
    levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    x = to_model_tensor(levels)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    ref = torch.from_numpy((np.arange(256, dtype=np.float64) / 255).astype(np.float32).reshape(16, 16))
    assert torch.equal(x[0, 1], (ref - 0.5) * 2)  # the demo's recipe, bit for bit
    assert x.min() == -1 and x.max() == 1
    assert (from_model_tensor(x) == levels).all()  # exact round trip for every level
    assert from_model_tensor(x[0]).shape == (1, 16, 16, 3)
    y = torch.tensor([-3.0, -1.0, 0.0, 0.999, 1.5, float("nan")]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    assert from_model_tensor(y)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255, 128]
    # the official global min-max stretch depends on the whole video; ours does not
    dim = torch.linspace(-0.5, 0.5, 64).view(1, 1, 8, 8).expand(2, 3, 8, 8).contiguous()
    official = official_minmax_to_uint8(dim)
    assert official.shape == (2, 8, 8, 3) and official.min() == 0 and official.max() == 255
    ours = from_model_tensor(dim)
    assert ours.min() == 64 and ours.max() == 191


# --------------------------------------------------------------------------------------- faces


def test_cascade_finds_the_astronaut(astronaut: np.ndarray, cascade: FaceDetector) -> None:
    assert cascade.backend == "cascade"
    boxes = cascade.detect_faces(astronaut)
    assert len(boxes) == 1
    box = boxes[0]
    assert box.iou(ASTRONAUT_FACE) > 0.5
    assert 70 < box.width < 140
    assert find_face(astronaut, "astronaut.png", cascade) == box
    crop = crop_box_for_face(box, astronaut.shape)
    assert crop.x0 < ASTRONAUT_FACE.x0 and crop.x1 > ASTRONAUT_FACE.x1
    assert crop.y0 < ASTRONAUT_FACE.y0 and crop.y1 > ASTRONAUT_FACE.y1


def test_no_face_raises_naming_the_file(cascade: FaceDetector) -> None:
    blank = np.full((256, 256, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert cascade.detect_face(blank) is None
    assert cascade.detect_faces(noise) == []
    with pytest.raises(MediaError, match=r"no face found in 'speaker\.png'"):
        find_face(noise, "speaker.png", cascade)


def _moving_astronaut(n: int, blank: tuple[int, ...] = ()) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames that pan over the astronaut; returns them and the face's true centre per frame."""
    img = data.astronaut()
    frames, centres = [], []
    for t in range(n):
        x, y = 20 + 3 * t, 10 + t
        f = img[y : y + 300, x : x + 260].copy()
        if t in blank:
            f[:] = 128
        frames.append(f)
        centres.append((ASTRONAUT_FACE.cx - x, ASTRONAUT_FACE.cy - y))
    return frames, np.asarray(centres)


def test_track_faces_follows_motion_smoothly(cascade: FaceDetector) -> None:
    frames, truth = _moving_astronaut(30)
    track = track_faces(iter(frames), cascade, source="pan.mp4")
    assert len(track) == 30 and track.missing_frames == 0 and track.found.all()
    centre = (track.boxes[:, :2] + track.boxes[:, 2:]) / 2
    raw_centre = (track.raw[:, :2] + track.raw[:, 2:]) / 2
    # follows the motion: the face stays within a few pixels of where it really is
    offset = centre - truth
    assert np.abs(offset - np.median(offset, axis=0)).max() < 4.0
    assert np.polyfit(np.arange(30), centre[:, 0], 1)[0] == pytest.approx(-3.0, abs=0.3)
    # low jitter: second differences of the smoothed centre are small, and much smaller than raw
    jitter = np.abs(np.diff(centre, 2, axis=0)).max()
    assert jitter < 1.5
    assert jitter < 0.5 * np.abs(np.diff(raw_centre, 2, axis=0)).max()
    size = track.boxes[:, 2] - track.boxes[:, 0]
    assert size.max() - size.min() < 6  # slowly varying crop size
    crops = track.crop_boxes((300, 260), fixed_size=True)
    assert len({round(b.width, 6) for b in crops}) == 1


def test_track_faces_counts_and_holds_missing_frames(cascade: FaceDetector) -> None:
    frames, _ = _moving_astronaut(20, blank=(0, 1, 9, 10, 11))
    track = track_faces(frames, cascade, source="pan.mp4")
    assert track.missing_frames == 5
    assert track.found.tolist() == [i not in (0, 1, 9, 10, 11) for i in range(20)]
    assert np.isnan(track.raw[[0, 1, 9, 10, 11]]).all()
    # every frame has a box; across the gap it stays near the last good one
    assert np.isfinite(track.boxes).all()
    assert np.abs(track.boxes[10] - track.boxes[8]).max() < 8

    # every k-th frame: interpolation between detections; the last frame is always examined
    sparse = track_faces(frames, cascade, every=4, source="pan.mp4")
    assert sparse.missing_frames > 0 and np.isfinite(sparse.raw[19]).all()

    with pytest.raises(MediaError, match=r"no face found in any of the 6 frames of 'empty\.mp4'"):
        track_faces([np.full((100, 100, 3), 9, np.uint8)] * 6, cascade, source="empty.mp4")


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_auto_uses_dlib_offline_and_cascade_only_without_dlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edtalk_cli.video.landmarks as landmarks

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    _no_network(monkeypatch)
    det = FaceDetector("auto")
    assert det.backend == "dlib" and det.has_landmarks
    monkeypatch.setattr(landmarks, "dlib_available", lambda: False)
    last_resort = FaceDetector("auto")
    assert last_resort.backend == "cascade" and not last_resort.has_landmarks
    with pytest.raises(WeightsError, match="gives no landmarks") as no_points:
        last_resort.landmarks(np.zeros((64, 64, 3), np.uint8), Box(0, 0, 32, 32))
    assert "crop: box" in str(no_points.value.hint)
    with pytest.raises(WeightsError, match=r"S3FD face-detector weights not found in '.*torch_home") as err:
        FaceDetector("face_alignment")
    assert "s3fd-619a316812.pth" in str(err.value)


def test_auto_uses_s3fd_when_weights_are_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, astronaut: np.ndarray
) -> None:
    from face_alignment.detection.sfd.net_s3fd import s3fd

    # Stand-in weights in the official layout; the class heads are biased to "background" so
    # the untrained network reports no faces instead of thousands of random ones.
    torch.manual_seed(0)
    state = s3fd().state_dict()
    for key in state:
        if "mbox_conf" in key:
            state[key].zero_()
            if key.endswith("bias"):
                state[key][:-1] = 10.0
                state[key][-1] = -10.0
    ckpt = tmp_path / "torch_home" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(state, ckpt / "s3fd-619a316812.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    _no_network(monkeypatch)
    assert FaceDetector("auto").backend == "dlib"  # S3FD alone gives no landmarks: dlib is preferred
    det = FaceDetector("face_alignment")
    assert det.backend == "face_alignment"
    assert det.detect_faces(astronaut) == []
