"""Decoding audio files to a float32 mono waveform at a fixed sample rate."""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from edtalk_cli.audio.timing import num_video_frames
from edtalk_cli.defaults import FPS, SAMPLE_RATE
from edtalk_cli.errors import MediaError

__all__ = ["SILENCE_PEAK", "load_audio"]

SILENCE_PEAK = 1e-4  # a peak below this (about 3 LSB of 16-bit audio) counts as silence


_BLOCK = 1 << 20  # samples per block of the checks below (no full-length temporaries)


def _all_finite(wav: np.ndarray) -> bool:
    return all(np.isfinite(wav[i : i + _BLOCK]).all() for i in range(0, wav.size, _BLOCK))


def _peak(wav: np.ndarray) -> float:
    return max(float(np.abs(wav[i : i + _BLOCK]).max()) for i in range(0, wav.size, _BLOCK))


def _resample(wav: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """``librosa.resample(wav, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")``: soxr's
    HQ resampler, then cut or zero-padded to ``ceil(len * ratio)`` samples, without importing
    librosa (and the scipy and numba it loads, seconds of start-up)."""
    import soxr

    if rate == sample_rate:
        return wav
    out = soxr.resample(wav, rate, sample_rate, quality="soxr_hq")
    length = int(np.ceil(wav.shape[-1] * (float(sample_rate) / rate)))
    if out.shape[-1] >= length:
        return out[:length]
    return np.pad(out, (0, length - out.shape[-1]))


def _read_with_soundfile(path: Path, sample_rate: int) -> np.ndarray | None:
    """Decode with soundfile into the samples ``librosa.load(path, sr=sample_rate, mono=True)``
    gives (float32, channels averaged, soxr_hq resampling); None if libsndfile cannot read it."""
    import soundfile as sf

    try:
        wav, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (n, channels)
    except Exception:  # not a format libsndfile knows (m4a, aac, mp4, ...) or corrupt: let ffmpeg try
        return None
    wav = np.mean(wav.T, axis=0)  # librosa's mono mix-down, over the same (channels, n) view
    return np.asarray(_resample(wav, rate, sample_rate), dtype=np.float32)


def _read_with_ffmpeg(path: Path, sample_rate: int) -> np.ndarray:
    """Decode the first audio stream with imageio-ffmpeg's ffmpeg to f32le mono at ``sample_rate``.

    Stereo is mixed down to (L + R) / 2 as librosa does; other layouts use ffmpeg's normalised matrix.
    """
    import imageio_ffmpeg

    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-nostdin",
        "-hide_banner",
        "-v",
        "error",
        "-i",
        f"file:{path.resolve()}",  # 'file:' so odd names are never read as options or protocols
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-rematrix_maxval",  # normalise the down-mix matrix: stereo -> (L + R) / 2 like librosa,
        "1.0",  # not ffmpeg's default (L + R) / sqrt(2) for float output
        "-ar",
        str(sample_rate),
        "-f",
        "f32le",
        "-acodec",
        "pcm_f32le",
        "pipe:1",
    ]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        if "matches no streams" in err:
            raise MediaError(
                f"'{path}' has no audio track",
                hint="pass an audio file (wav, mp3, flac, m4a, ...) or a video that contains audio",
            )
        last = err.splitlines()[-1] if err else f"ffmpeg exited with status {proc.returncode}"
        raise MediaError(
            f"could not decode audio file '{path}': {last}",
            hint="the file is corrupt or not an audio format; re-export it, e.g. as 16 kHz mono WAV",
        )
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int = SAMPLE_RATE,
    *,
    fps: float | Fraction = FPS,
    allow_silence: bool = False,
) -> np.ndarray:
    """Load an audio file as float32 mono at ``sample_rate``, shape (num_samples,).

    Formats libsndfile reads (wav, flac, ogg, mp3, ...) are read with soundfile and soxr, giving
    the samples ``librosa.load`` gives (mono mix-down, soxr_hq resampling) as in the official demos; anything else (m4a, aac, video containers) is decoded by
    imageio-ffmpeg's ffmpeg. Raises MediaError when the file is missing, undecodable,
    empty or shorter than one video frame at ``fps``, contains non-finite samples, or is silent
    (peak below 1e-4) unless ``allow_silence``.
    """
    p = Path(path)
    if not p.exists():
        raise MediaError(
            f"audio file '{p}' does not exist",
            hint="check the path (relative paths are resolved from the current directory)",
        )
    if not p.is_file():
        raise MediaError(f"audio path '{p}' is not a file", hint="pass an audio file, not a directory")
    wav = _read_with_soundfile(p, sample_rate)
    if wav is None:
        wav = _read_with_ffmpeg(p, sample_rate)
    if wav.size == 0:
        raise MediaError(
            f"audio file '{p}' contains no audio samples",
            hint="check that the file is not empty or truncated",
        )
    if not _all_finite(wav):
        raise MediaError(
            f"audio file '{p}' contains NaN or infinite samples", hint="re-export it as 16-bit PCM WAV"
        )
    if num_video_frames(wav.size, fps, sample_rate) == 0:
        raise MediaError(
            f"audio file '{p}' is too short: {wav.size / sample_rate * 1000:.1f} ms is less than "
            f"one video frame at {float(fps):g} fps",
            hint="use an audio track of at least a fraction of a second",
        )
    peak = _peak(wav)
    if peak < SILENCE_PEAK and not allow_silence:
        raise MediaError(
            f"audio file '{p}' is silent (peak amplitude {peak:.1e})",
            hint="check that it is the right file and that its volume is not muted or near zero",
        )
    return wav
