"""Audio features for EDTalk: the Wav2Lip mel recipe and the per-video-frame mel windows.

Everything here follows EDTALK_SPEC.md §3 exactly (16 kHz, 80 mel bins, hop 200 = 80 mel frames
per second, 16-step windows), so that Audio2Lip sees the same inputs as in the official demos.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np

from edtalk_cli.audio.loading import load_audio
from edtalk_cli.audio.timing import fps_fraction, num_samples_for_frames, num_video_frames
from edtalk_cli.defaults import FPS, SAMPLE_RATE
from edtalk_cli.errors import MediaError

__all__ = [
    "HOP_LENGTH",
    "MEL_FPS",
    "MEL_STEPS",
    "N_FFT",
    "N_MELS",
    "SAMPLE_RATE",
    "AudioFeatures",
    "audio_features",
    "mel_basis",
    "mel_window_starts",
    "mel_windows",
    "melspectrogram",
]

# Wav2Lip hparams (the model was trained on exactly these; the sample rate is SAMPLE_RATE).
N_FFT = 800
HOP_LENGTH = 200
WIN_LENGTH = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_STEPS = 16  # mel frames per window (200 ms)
MEL_FPS = SAMPLE_RATE // HOP_LENGTH  # 80 mel frames per second
_REFERENCE_FPS = 25  # the rate the official window rule was written for


def _check_sample_rate(sample_rate: int) -> None:
    if sample_rate != SAMPLE_RATE:
        raise ValueError(
            f"the Wav2Lip mel recipe is defined at {SAMPLE_RATE} Hz only, got sample_rate={sample_rate}; "
            "resample first (load_audio does)"
        )


@functools.lru_cache(maxsize=1)
def mel_basis() -> np.ndarray:
    """The constant Slaney mel filterbank, float32 (80, 401); cached and read-only."""
    import librosa

    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
    basis.setflags(write=False)
    return basis


MEL_CHUNK_FRAMES = 1024  # mel frames per STFT chunk (~13 s of audio, ~7 MB of complex128 spectrum)


def melspectrogram(
    wav: np.ndarray, sample_rate: int = SAMPLE_RATE, chunk_frames: int = MEL_CHUNK_FRAMES
) -> np.ndarray:
    """Normalised log-mel spectrogram of a mono waveform by the Wav2Lip recipe (spec §3).

    Returns float64 of shape (1 + len(wav) // 200, 80), values in [-4, 4]. Long waveforms are
    transformed ``chunk_frames`` mel frames at a time, so the working memory is bounded whatever
    the length (only the float64 result grows, 640 bytes per mel frame); each STFT frame sees the
    same samples as in one full-length STFT, so chunking changes the result only by FFT rounding
    (measured <= 2e-15).
    """
    _check_sample_rate(sample_rate)
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"expected a mono 1-D waveform, got shape {wav.shape}")
    if wav.shape[0] == 0:
        raise ValueError("cannot compute a mel spectrogram of an empty waveform")
    if chunk_frames < 4:
        raise ValueError(f"chunk_frames must be >= 4, got {chunk_frames}")
    num_mel = 1 + wav.shape[0] // HOP_LENGTH
    if num_mel <= chunk_frames:
        return _normalize(_mel_magnitudes_whole(wav)).T.copy()
    out = np.empty((num_mel, N_MELS), np.float64)
    for first in range(0, num_mel, chunk_frames):
        last = min(first + chunk_frames, num_mel)
        if num_mel - last < 4:  # fold a tiny tail into this chunk (the end reflection needs context)
            last = num_mel
        out[first:last] = _normalize(_mel_magnitudes_span(wav, first, last)).T
        if last == num_mel:
            break
    return out


def _mel_magnitudes_whole(wav: np.ndarray) -> np.ndarray:
    """Mel magnitudes (80, 1 + len // 200) of the whole waveform: pre-emphasis, centred reflect-padded STFT."""
    from scipy.signal import lfilter

    # Pre-emphasis y[n] = x[n] - 0.97 x[n-1]; lfilter returns float64 (float32 input is upcast exactly).
    emphasized = lfilter([1.0, -PREEMPHASIS], [1.0], wav)
    # The authors' librosa padded with 'reflect' (the default became 'constant' in 0.9).
    return _mel_of_frames(emphasized, center=True)


def _mel_magnitudes_span(wav: np.ndarray, first: int, last: int) -> np.ndarray:
    """Mel magnitudes (80, last - first) of STFT frames ``first..last-1`` of the centred STFT.

    Frame t of the centred STFT covers samples ``t*200 - 400 .. t*200 + 399`` of the
    pre-emphasised signal, reflected at both ends (numpy 'reflect': index -k -> k,
    L-1+k -> L-1-k). Those samples are gathered for the span and framed without padding.
    """
    length = wav.shape[0]
    half = N_FFT // 2
    index = np.arange(first * HOP_LENGTH - half, (last - 1) * HOP_LENGTH + half)
    index = np.abs(index)  # reflect at the start
    index = np.where(index >= length, 2 * (length - 1) - index, index)  # reflect at the end
    samples = wav[index].astype(np.float64)
    previous = wav[np.maximum(index - 1, 0)].astype(np.float64)
    emphasized = samples - PREEMPHASIS * np.where(index > 0, previous, 0.0)
    return _mel_of_frames(emphasized, center=False)


def _mel_of_frames(signal: np.ndarray, center: bool) -> np.ndarray:
    import librosa

    with warnings.catch_warnings():
        # Clips shorter than n_fft (50 ms) are fine: the reflect padding covers them.
        warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large", category=UserWarning)
        spec = librosa.stft(
            y=signal,
            n_fft=N_FFT,
            hop_length=HOP_LENGTH,
            win_length=WIN_LENGTH,
            window="hann",
            center=center,
            pad_mode="reflect",
        )
    return np.dot(mel_basis(), np.abs(spec))  # (80, frames) float64


def _normalize(mel: np.ndarray) -> np.ndarray:
    """Wav2Lip's dB conversion and symmetric normalisation to [-4, 4]."""
    floor = np.exp(MIN_LEVEL_DB / 20.0 * np.log(10.0))  # ~1e-5
    db = 20.0 * np.log10(np.maximum(floor, mel)) - REF_LEVEL_DB
    return np.clip(
        (2.0 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE,
        -MAX_ABS_VALUE,
        MAX_ABS_VALUE,
    )


def mel_window_starts(num_frames: int, fps: float | Fraction = FPS) -> np.ndarray:
    """First mel index of the 16-step window of each video frame, int64 (num_frames,).

    Rule: ``start_i = int(80 * (i * 25 / fps - 2) / 25)`` with ``int()`` truncating toward zero,
    i.e. the official Wav2Lip rule ``int(80 * (i - 2) / 25)`` applied at the 25-fps frame position of
    time ``i / fps``. Equivalently ``start_i = trunc(80 * i / fps - 6.4)``: the window's first mel frame
    sits 6.4 mel hops (80 ms) before the frame time, so the 16-step (200 ms) window is centred on
    that frame time in the same way for every fps (its centre ``start + 7.5`` lies 0.1 to 1.1 hops
    after ``80 * i / fps`` when ``start >= 0``; truncation toward zero moves negative starts one
    hop later, e.g. i=0 -> -6, i=1 -> -3 at 25 fps). Evaluated in exact integer arithmetic, so at
    fps == 25 it is bit-identical to the official expression.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    frac = fps_fraction(fps)
    p, q = frac.numerator, frac.denominator  # fps = p / q
    i = np.arange(int(num_frames), dtype=np.int64)
    # 80 * (i * 25 q / p - 2) / 25 = (80 * 25 * q * i - 160 * p) / (25 * p)
    num = 80 * _REFERENCE_FPS * q * i - 160 * p
    den = _REFERENCE_FPS * p
    return np.where(num >= 0, num // den, -((-num) // den)).astype(np.int64)


def mel_windows(
    mel: np.ndarray, num_frames: int, fps: float | Fraction = FPS, frames: slice | None = None
) -> np.ndarray:
    """Per-video-frame mel windows, shape (num_frames, 80, 16), in ``mel``'s dtype.

    ``mel`` is (n_mel, 80). Window i takes mel rows start_i..start_i+15, each clamped to [0, n_mel-1]
    (so edge rows repeat), and is transposed to 80 x 16. ``frames`` selects a range of video frames
    (to build long tracks chunk by chunk in bounded memory).
    """
    mel = np.asarray(mel)
    if mel.ndim != 2 or mel.shape[1] != N_MELS or mel.shape[0] == 0:
        raise ValueError(f"expected a mel spectrogram of shape (n_mel, {N_MELS}), got {mel.shape}")
    starts = mel_window_starts(num_frames, fps)
    if frames is not None:
        starts = starts[frames]
    idx = np.clip(starts[:, None] + np.arange(MEL_STEPS), 0, mel.shape[0] - 1)  # (T, 16)
    return np.ascontiguousarray(mel[idx].transpose(0, 2, 1))  # (T, 16, 80) -> (T, 80, 16)


@dataclass(frozen=True)
class AudioFeatures:
    """Everything the pipeline needs from a driving audio track.

    ``wav`` is the float32 mono waveform cropped to the whole video frames
    (ceil(num_frames * sample_rate / fps) samples; exactly num_frames * 640 at 25 fps), which is
    what ``mel`` (n_mel, 80) float64 was computed from. ``windows`` is (num_frames, 80, 16) float32.
    ``duration_s`` is the duration of ``wav``; ``source_duration_s`` that of the audio before cropping.
    """

    wav: np.ndarray
    sample_rate: int
    fps: float | Fraction
    num_frames: int
    mel: np.ndarray
    duration_s: float
    source_duration_s: float

    @cached_property
    def windows(self) -> np.ndarray:
        """(num_frames, 80, 16) float32, computed on first use (large for long audio)."""
        return mel_windows(self.mel, self.num_frames, self.fps).astype(np.float32)


def audio_features(
    path_or_wav: str | os.PathLike[str] | np.ndarray,
    fps: float | Fraction = FPS,
    sample_rate: int = SAMPLE_RATE,
    *,
    allow_silence: bool = False,
) -> AudioFeatures:
    """Load (if given a path), crop to whole frames, and compute the mel and its per-frame windows.

    An array is taken as a mono waveform already at ``sample_rate`` and used as is (no silence check).
    A path goes through :func:`load_audio`, which raises MediaError for unusable audio. Either way
    MediaError is raised when the audio is shorter than one video frame.
    """
    _check_sample_rate(sample_rate)
    if isinstance(path_or_wav, np.ndarray):
        wav = np.asarray(path_or_wav, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(f"expected a mono 1-D waveform, got shape {wav.shape}")
        what = "the audio waveform"
    else:
        wav = load_audio(path_or_wav, sample_rate, fps=fps, allow_silence=allow_silence)
        what = f"audio file '{os.fspath(path_or_wav)}'"
    num_frames = num_video_frames(wav.shape[0], fps, sample_rate)
    if num_frames == 0:
        raise MediaError(
            f"{what} is shorter than one video frame ({wav.shape[0]} samples at {sample_rate} Hz, "
            f"{float(fps):g} fps)",
            hint="use an audio track of at least a fraction of a second",
        )
    source_len = wav.shape[0]
    wav = wav[: num_samples_for_frames(num_frames, fps, sample_rate)]
    mel = melspectrogram(wav, sample_rate)
    return AudioFeatures(
        wav=wav,
        sample_rate=sample_rate,
        fps=fps,
        num_frames=num_frames,
        mel=mel,
        duration_s=wav.shape[0] / sample_rate,
        source_duration_s=source_len / sample_rate,
    )
