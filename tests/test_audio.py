"""Audio features: Wav2Lip mel parity, per-frame windows, loading/resampling, errors, smoothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from edtalk_cli.audio import (
    MOUTH_SMOOTHING_KERNEL,
    audio_features,
    gaussian_kernel_1d,
    load_audio,
    mel_window_starts,
    mel_windows,
    melspectrogram,
    num_samples_for_frames,
    num_video_frames,
    smooth_mouth_coeffs,
)
from edtalk_cli.errors import MediaError

HOP_S = 200 / 16000  # one mel hop: 12.5 ms


@pytest.fixture(scope="module")
def expected(parity: Path) -> dict[str, np.ndarray]:
    with np.load(parity / "expected.npz") as data:
        return {k: data[k] for k in ("mel", "mel_windows", "audio2lip", "audio2lip_smoothed")}


@pytest.fixture(scope="module")
def speech(parity: Path) -> np.ndarray:
    return load_audio(parity / "speech.wav")


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", *args], check=True)


# --------------------------------------------------------------------------- parity


def test_mel_and_windows_match_official(parity: Path, expected: dict[str, np.ndarray]) -> None:
    feats = audio_features(parity / "speech.wav")
    assert feats.sample_rate == 16000 and feats.fps == 25.0
    assert feats.num_frames == 32 and feats.wav.shape == (32 * 640,)
    assert feats.duration_s == pytest.approx(1.28)
    assert feats.mel.dtype == np.float64 and feats.mel.shape == expected["mel"].shape == (103, 80)
    assert np.abs(feats.mel - expected["mel"]).max() <= 1e-6
    win64 = mel_windows(feats.mel, feats.num_frames)
    assert win64.dtype == np.float64 and win64.shape == (32, 80, 16)
    assert np.abs(win64 - expected["mel_windows"]).max() <= 1e-6
    assert feats.windows.dtype == np.float32 and feats.windows.shape == (32, 80, 16)
    assert np.abs(feats.windows - expected["mel_windows"]).max() <= 1e-6


def test_reflect_padding_is_what_makes_the_edges_match(speech: np.ndarray, expected) -> None:
    # The official mel used librosa's old 'reflect' STFT padding; 'constant' would change the edge rows.
    from scipy.signal import lfilter

    from edtalk_cli.audio import mel_basis

    spec = librosa.stft(
        y=lfilter([1.0, -0.97], [1.0], speech), n_fft=800, hop_length=200, win_length=800, pad_mode="constant"
    )
    db = 20 * np.log10(np.maximum(1e-5, mel_basis() @ np.abs(spec))) - 20
    const = np.clip(8 * (db + 100) / 100 - 4, -4, 4).T
    edge_diff = np.abs(const - expected["mel"]).max(axis=1)
    assert edge_diff[[0, 1, -2, -1]].min() > 1e-3  # the first/last two rows differ ...
    assert edge_diff[2:-2].max() < 1e-9  # ... the interior does not
    assert np.abs(melspectrogram(speech) - expected["mel"]).max() <= 1e-6


@pytest.mark.parametrize("extra", [0, 1, 199, 200, 401])
def test_chunked_mel_equals_one_full_length_stft(speech: np.ndarray, expected, extra: int) -> None:
    # Long audio is transformed in chunks (flat memory); every chunk split, including chunks whose
    # edges need the start/end reflection, gives the same rows as one full-length STFT.
    wav = np.concatenate([speech, speech[: 3 * 16000 + extra]])
    whole = melspectrogram(wav, chunk_frames=10**9)
    assert whole.shape == (1 + len(wav) // 200, 80)
    for chunk in (4, 7, 64, len(whole) - 5):
        assert np.abs(melspectrogram(wav, chunk_frames=chunk) - whole).max() <= 1e-12, (
            chunk
        )  # FFT rounding only
    # and on the fixture clip the chunked path still reproduces the official mel
    assert np.abs(melspectrogram(speech, chunk_frames=5) - expected["mel"]).max() <= 1e-6
    with pytest.raises(ValueError, match="chunk_frames must be >= 4"):
        melspectrogram(wav, chunk_frames=2)


def test_smoothing_matches_official(expected: dict[str, np.ndarray]) -> None:
    raw = torch.from_numpy(expected["audio2lip"])  # (32, 20) float64
    out = smooth_mouth_coeffs(raw)
    assert out.dtype == torch.float64 and out.shape == (32, 20)
    assert (out.numpy() - expected["audio2lip_smoothed"]).__abs__().max() <= 1e-6
    # Batched input gives the same rows; float32 stays float32 and close.
    batched = smooth_mouth_coeffs(torch.stack([raw, 2 * raw]))
    assert torch.allclose(batched[0], out, atol=1e-12) and torch.allclose(batched[1], 2 * out, atol=1e-12)
    out32 = smooth_mouth_coeffs(raw.float())
    assert out32.dtype == torch.float32
    assert np.abs(out32.double().numpy() - expected["audio2lip_smoothed"]).max() <= 1e-5
    # Disabled: untouched.
    assert smooth_mouth_coeffs(raw, enabled=False) is raw


def test_smoothing_kernel_and_zero_padded_edges() -> None:
    np.testing.assert_allclose(MOUTH_SMOOTHING_KERNEL, [0.27406862, 0.45186276, 0.27406862], atol=1e-8)
    assert MOUTH_SMOOTHING_KERNEL.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_array_equal(gaussian_kernel_1d(3, 1.0), MOUTH_SMOOTHING_KERNEL)
    a, b, c = 0.27406862, 0.45186276, 0.27406862
    x = torch.tensor([[1.0], [2.0], [4.0], [8.0]], dtype=torch.float64)  # (T=4, C=1)
    y = smooth_mouth_coeffs(x)[:, 0].tolist()
    # Edges are not renormalised: frame 0 = b*x0 + c*x1 (zero padding).
    expected_y = [b * 1 + c * 2, a * 1 + b * 2 + c * 4, a * 2 + b * 4 + c * 8, a * 4 + b * 8]
    np.testing.assert_allclose(y, expected_y, atol=1e-7)
    # A constant signal shrinks by ~27% at both ends only.
    ones = smooth_mouth_coeffs(torch.ones(10, 3))
    assert torch.allclose(ones[1:-1], torch.ones(8, 3))
    assert ones[0, 0].item() == pytest.approx(a + b, abs=1e-6) and ones[-1, 2].item() == pytest.approx(a + b)
    with pytest.raises(ValueError, match="shape"):
        smooth_mouth_coeffs(torch.ones(5))


# --------------------------------------------------------------------------- windows and frames


def test_window_starts_equal_official_int_formula_at_25fps() -> None:
    official = [int(80 * (i - 2) / 25) for i in range(1001)]
    assert official[:3] == [-6, -3, 0]  # int() truncates toward zero
    assert mel_window_starts(1001).tolist() == official
    assert mel_window_starts(1001, fps=25).tolist() == official
    assert mel_window_starts(0).shape == (0,)


def test_spec_example_19200_samples() -> None:
    assert num_video_frames(19200) == 30
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(19200)).astype(np.float32)
    feats = audio_features(wav)
    assert feats.num_frames == 30 and feats.mel.shape == (97, 80) and feats.windows.shape == (30, 80, 16)
    # A mel whose row k holds the value k shows which rows each window took.
    rows = np.repeat(np.arange(97, dtype=np.float64)[:, None], 80, axis=1)
    win = mel_windows(rows, 30)
    assert win.shape == (30, 80, 16)
    assert np.all(win == win[:, :1, :])  # every mel bin of a column comes from the same row
    assert win[0, 0].tolist() == [0] * 7 + list(range(1, 10))
    assert mel_window_starts(30)[29] == 86
    assert win[29, 0].tolist() == list(range(86, 97)) + [96] * 5
    # Longer audio is cropped to whole frames (T * 640 samples), as the official code does.
    longer = audio_features(np.concatenate([wav, wav[:639]]))
    assert longer.num_frames == 30 and longer.wav.shape == (19200,)
    assert longer.source_duration_s == pytest.approx(19839 / 16000)
    np.testing.assert_array_equal(longer.mel, feats.mel)


def test_num_video_frames_matches_official_at_25fps() -> None:
    rng = np.random.default_rng(1)
    for n in [0, 1, 639, 640, 641, 1279, 1280, *rng.integers(0, 10**8, 200).tolist()]:
        assert num_video_frames(n) == int(n / 640), n
        assert num_samples_for_frames(num_video_frames(n)) == 640 * int(n / 640)


@pytest.mark.parametrize(
    ("fps", "num_samples", "frames"),
    [
        (30, 16000, 30),
        (30.0, 15999, 29),
        (24, 2000, 3),  # exactly 3.0 frames
        (24, 1999, 2),
        (29.97, 1_600_000, 2997),  # float 29.97 is slightly below 2997/100; must still be exact
        (30000 / 1001, 80_080, 150),  # NTSC: 80080 * 30000 / (1001 * 16000) == 150 exactly
        (30000 / 1001, 80_079, 149),
        (50, 320, 1),
        (50, 319, 0),
        (12.5, 1280, 1),
    ],
)
def test_num_video_frames_other_fps(fps: float, num_samples: int, frames: int) -> None:
    assert num_video_frames(num_samples, fps) == frames
    # The crop length never exceeds the samples the frames came from and covers all frames.
    n_crop = num_samples_for_frames(frames, fps)
    assert n_crop <= num_samples and num_video_frames(n_crop, fps) == frames


@pytest.mark.parametrize("fps", [25, 30, 24, 29.97, 30000 / 1001, 50, 60, 12.5])
def test_window_centre_tracks_frame_time(fps: float) -> None:
    """The 16-step window keeps the official centring relative to t = i / fps at every fps.

    Window centre = (start + 7.5) hops. The official rule puts it 0.1-1.1 hops (1.25-13.75 ms) after
    the frame time when start >= 0, and 1.1-2.1 hops after it for the first frames, whose negative
    start is truncated toward zero. The same bounds must hold at every fps.
    """
    T = round(60 * fps)  # one minute
    starts = mel_window_starts(T, fps)
    t = np.arange(T) / fps
    offset_hops = ((starts + 7.5) * HOP_S - t) / HOP_S
    pos = starts >= 0
    # Only frames at t <= 67.5 ms (80 t - 6.4 <= -1) start before the audio.
    np.testing.assert_array_equal(~pos, t <= 5.4 / 80 + 1e-12)
    assert offset_hops[pos].min() > 0.1 - 1e-9 and offset_hops[pos].max() <= 1.1 + 1e-9
    assert np.abs(offset_hops[pos]).max() * HOP_S <= 0.01375 + 1e-12
    assert offset_hops[~pos].min() >= 1.1 - 1e-9 and offset_hops[~pos].max() < 2.1
    # No drift over a minute: the last window is still centred on the last frame.
    assert offset_hops[-1] <= 1.1 + 1e-9
    steps = np.diff(starts)
    assert steps.min() >= np.floor(80 / fps) and steps.max() <= np.ceil(80 / fps) + 1


def test_audio_features_other_fps(parity: Path) -> None:
    feats = audio_features(parity / "speech.wav", fps=30)
    assert feats.num_frames == 38  # floor(1.28 s * 30)
    assert feats.windows.shape == (38, 80, 16)
    assert feats.wav.shape == (20267,)  # ceil(38 * 16000 / 30)
    assert feats.duration_s == pytest.approx(38 / 30, abs=1 / 16000)
    np.testing.assert_array_equal(feats.windows, mel_windows(feats.mel, 38, 30).astype(np.float32))


# --------------------------------------------------------------------------- loading


def test_stereo_44k_wav_is_mixed_to_16k_mono(tmp_path: Path, speech: np.ndarray) -> None:
    x44 = librosa.resample(speech, orig_sr=16000, target_sr=44100)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(x44.size) / 44100)
    stereo = np.stack([x44 + tone, x44 - tone], axis=1)  # the mono mix (L + R) / 2 is the speech
    path = tmp_path / "speech_44k_stereo.wav"
    sf.write(path, stereo.astype(np.float32), 44100, subtype="FLOAT")
    wav = load_audio(path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size - speech.size) <= 32  # within 2 ms
    n = min(wav.size, speech.size)
    ref, got = melspectrogram(speech[:n]), melspectrogram(wav[:n])
    # Measured 0.003 (soxr round trip); a left-channel-only loader gives 0.12.
    assert np.abs(got - ref).mean() < 0.02
    left = librosa.resample(stereo[:, 0].astype(np.float32), orig_sr=44100, target_sr=16000)[:n]
    assert np.abs(melspectrogram(left) - ref).mean() > 0.05  # the bound above does detect a bad mix


def test_m4a_aac_decodes_through_ffmpeg(tmp_path: Path, speech: np.ndarray) -> None:
    src = tmp_path / "stereo.wav"
    x44 = librosa.resample(speech, orig_sr=16000, target_sr=44100)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(x44.size) / 44100)
    sf.write(src, np.stack([x44 + tone, x44 - tone], axis=1).astype(np.float32), 44100, subtype="FLOAT")
    path = tmp_path / "speech.m4a"
    _ffmpeg("-i", str(src), "-c:a", "aac", "-b:a", "128k", str(path))
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))  # libsndfile cannot read it, so this exercises the ffmpeg fallback
    wav = load_audio(path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size - speech.size) <= 48  # within 3 ms (AAC priming is trimmed by the edit list)
    n = min(wav.size, speech.size)
    # AAC at 128 kb/s is lossy: measured mean |diff| 0.045 in normalised mel units (range [-4, 4]).
    # ffmpeg's unnormalised down-mix ((L + R) / sqrt(2), +3 dB) would give about 0.25.
    assert np.abs(melspectrogram(wav[:n]) - melspectrogram(speech[:n])).mean() < 0.1
    feats = audio_features(path)
    assert feats.num_frames == 32


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope_missing.wav"
    with pytest.raises(MediaError, match="does not exist") as err:
        load_audio(path)
    assert "nope_missing.wav" in str(err.value)
    with pytest.raises(MediaError, match="not a file"):
        load_audio(tmp_path)


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage_bytes.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match="could not decode") as err:
        audio_features(path)
    assert "garbage_bytes.wav" in str(err.value)


def test_empty_and_too_short_wav(tmp_path: Path) -> None:
    empty = tmp_path / "empty_track.wav"
    sf.write(empty, np.zeros(0, dtype=np.int16), 16000)
    with pytest.raises(MediaError, match="no audio samples") as err:
        load_audio(empty)
    assert "empty_track.wav" in str(err.value)
    short = tmp_path / "short_blip.wav"
    sf.write(short, (0.5 * np.ones(600)).astype(np.float32), 16000)  # 37.5 ms < one 40 ms frame
    with pytest.raises(MediaError, match="too short") as err:
        load_audio(short)
    assert "short_blip.wav" in str(err.value)
    assert load_audio(short, fps=30).size == 600  # 37.5 ms is more than one 33.3 ms frame


def test_silent_wav(tmp_path: Path) -> None:
    path = tmp_path / "all_zero.wav"
    sf.write(path, np.zeros(16000, dtype=np.int16), 16000)
    with pytest.raises(MediaError, match="silent") as err:
        audio_features(path)
    assert "all_zero.wav" in str(err.value) and "volume" in (err.value.hint or "")
    wav = load_audio(path, allow_silence=True)
    assert wav.shape == (16000,) and not wav.any()
    feats = audio_features(path, allow_silence=True)
    assert feats.num_frames == 25 and np.all(feats.mel == -4.0)  # the mel floor


def test_video_without_audio_track(tmp_path: Path) -> None:
    path = tmp_path / "no_sound.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=25:duration=0.2", "-pix_fmt", "yuv420p", str(path))
    with pytest.raises(MediaError, match="no audio track") as err:
        load_audio(path)
    assert "no_sound.mp4" in str(err.value)
