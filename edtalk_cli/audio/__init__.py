"""Driving-audio decoding and features: the Wav2Lip mel recipe, per-frame windows, mouth smoothing."""

from edtalk_cli.audio.features import (
    HOP_LENGTH,
    MEL_FPS,
    MEL_STEPS,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    AudioFeatures,
    audio_features,
    mel_basis,
    mel_window_starts,
    mel_windows,
    melspectrogram,
)
from edtalk_cli.audio.loading import SILENCE_PEAK, load_audio
from edtalk_cli.audio.smoothing import MOUTH_SMOOTHING_KERNEL, gaussian_kernel_1d, smooth_mouth_coeffs
from edtalk_cli.audio.timing import fps_fraction, num_samples_for_frames, num_video_frames

__all__ = [
    "HOP_LENGTH",
    "MEL_FPS",
    "MEL_STEPS",
    "MOUTH_SMOOTHING_KERNEL",
    "N_FFT",
    "N_MELS",
    "SAMPLE_RATE",
    "SILENCE_PEAK",
    "AudioFeatures",
    "audio_features",
    "fps_fraction",
    "gaussian_kernel_1d",
    "load_audio",
    "mel_basis",
    "mel_window_starts",
    "mel_windows",
    "melspectrogram",
    "num_samples_for_frames",
    "num_video_frames",
    "smooth_mouth_coeffs",
]
