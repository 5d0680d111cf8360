"""Hardware-accelerated decoding: the NVDEC probe, the decision per device, the fallback to
software and the frames (the same with or without it). Real ffmpeg and real footage throughout;
this machine has no NVIDIA driver, so the CUDA paths run up to their "unavailable" answer."""

from __future__ import annotations

import ctypes.util
import logging
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

import edtalk_cli.video.hwdecode as hwdecode
from edtalk_cli.pipeline.faces import VideoFaceSource
from edtalk_cli.pipeline.render import JobRenderer
from edtalk_cli.video._ffmpeg import ffmpeg_exe, passthrough_timestamps
from edtalk_cli.video.hwdecode import decode_accel, hwaccel_fallback_line, probe_hwdecode
from edtalk_cli.video.io import _SWS_FLAGS, iter_video_frames, read_video
from edtalk_cli.weights.bundle import ModelBundle

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real"
CLIP = REAL / "mouth_source.mp4"  # H.264 High, yuv420p, 256x256, 25 fps, 250 frames
NO_NVIDIA_DRIVER = ctypes.util.find_library("cuda") is None
needs_no_driver = pytest.mark.skipif(not NO_NVIDIA_DRIVER, reason="an NVIDIA driver is installed here")


@pytest.fixture
def ffmpeg_starts(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The command line of every ffmpeg started (the real processes run; this only records)."""
    starts: list[list[str]] = []
    real_popen = subprocess.Popen

    class Recording(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, args, *rest, **kwargs) -> None:
            if "ffmpeg" in Path(str(args[0])).name:
                starts.append([str(a) for a in args])
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return starts


def _hwaccel_of(cmd: list[str]) -> str | None:
    """The -hwaccel of an ffmpeg command, checked to be an input option (before -i)."""
    if "-hwaccel" not in cmd:
        return None
    at = cmd.index("-hwaccel")
    assert at < cmd.index("-i"), cmd
    return cmd[at + 1]


# ----- the probe ----------------------------------------------------------------------------------
@needs_no_driver
def test_probe_says_unavailable_with_ffmpegs_reason_once_per_process(ffmpeg_starts: list[list[str]]) -> None:
    probe_hwdecode.cache_clear()
    exe = ffmpeg_exe()
    ffmpeg_starts.clear()  # imageio-ffmpeg's version check of the binary, on first use
    try:
        first = probe_hwdecode("cuda", exe)
        assert not first.available and first.reason == "Cannot load libcuda.so.1"
        assert len(ffmpeg_starts) == 2  # the test clip (libx264), then the hardware decode of it
        decode = ffmpeg_starts[1]
        assert _hwaccel_of(decode) == "cuda" and "hwdownload,format=nv12" in decode
        assert probe_hwdecode("cuda", exe) == first
        assert decode_accel("cuda:0") is None and decode_accel("cuda") is None  # the same cached probe
        assert len(ffmpeg_starts) == 2
    finally:
        probe_hwdecode.cache_clear()


def test_a_cpu_device_never_probes_nor_decodes_in_hardware(
    ffmpeg_starts: list[list[str]], tiny_weights: Path
) -> None:
    probe_hwdecode.cache_clear()
    assert decode_accel("cpu") is None and decode_accel("mps") is None
    renderer = JobRenderer(ModelBundle.from_dir(tiny_weights, "edtalk"), device="cpu")
    assert renderer.hwaccel is None  # the decision its video decodes follow
    assert ffmpeg_starts == []  # no probe for a device that is not CUDA
    source = VideoFaceSource(CLIP, fps=25, size=64, crop="none", hwaccel=renderer.hwaccel)
    source.crops(range(3))
    assert ffmpeg_starts and all(_hwaccel_of(cmd) is None for cmd in ffmpeg_starts)


def test_the_fallback_lines_of_ffmpegs_log_are_recognised() -> None:
    log = (
        "[vist#0:0/h264 @ 0x55] Selecting decoder 'h264' because of requested hwaccel method cuda\n"
        "[CUDA @ 0x55] Cannot load libcuda.so.1\n[CUDA @ 0x55] Could not dynamically load CUDA\n"
    )
    assert hwaccel_fallback_line(log) == "Cannot load libcuda.so.1"
    older = "[h264 @ 0x1] Failed setup for format cuda: hwaccel initialisation returned error.\n"
    assert (
        hwaccel_fallback_line(older) == "Failed setup for format cuda: hwaccel initialisation returned error."
    )
    assert hwaccel_fallback_line("[h264 @ 0x1] Reinit context to 256x256, pix_fmt: yuv420p\n") is None


def test_an_unknown_accelerator_is_refused() -> None:
    with pytest.raises(ValueError, match="hwaccel must be one of cuda"):
        probe_hwdecode("cuvid")
    with pytest.raises(ValueError, match="hwaccel must be one of cuda or None; got 'vaapi'"):
        iter_video_frames(CLIP, hwaccel="vaapi")


# ----- decoding -----------------------------------------------------------------------------------
@needs_no_driver
@pytest.mark.parametrize(
    ("fps", "size", "pix_fmt"),
    [(None, None, "rgb24"), (30, (128, 96), "rgb24"), (25, None, "gray")],
    ids=["native", "resampled-scaled", "gray"],
)
def test_a_hwaccel_that_cannot_be_set_up_falls_back_to_the_same_frames(
    ffmpeg_starts: list[list[str]],
    caplog: pytest.LogCaptureFixture,
    fps: int | None,
    size: tuple[int, int] | None,
    pix_fmt: str,
) -> None:
    plain = np.stack(list(iter_video_frames(CLIP, fps=fps, size=size, pix_fmt=pix_fmt)))
    ffmpeg_starts.clear()
    with caplog.at_level(logging.INFO, logger="edtalk_cli.video.io"):
        forced = np.stack(list(iter_video_frames(CLIP, fps=fps, size=size, pix_fmt=pix_fmt, hwaccel="cuda")))
    assert np.array_equal(forced, plain)
    assert forced.shape[0] == {None: 250, 25: 250, 30: 300}[fps]  # 10 s at 25 fps
    decoders = [cmd for cmd in ffmpeg_starts if "rawvideo" in cmd]
    assert [_hwaccel_of(cmd) for cmd in decoders] == ["cuda", None]  # tried, then software
    assert [r.getMessage() for r in caplog.records] == [
        f"-hwaccel cuda cannot decode '{CLIP}' (Could not load meta information); decoding in software"
    ]


def test_nv12_frames_as_nvdec_delivers_them_convert_to_the_same_rgb() -> None:
    """NVDEC hands ffmpeg NV12 frames (the software decoder: yuv420p, the same samples
    interleaved); swscale turns both into the same RGB, scaled or not."""
    for size in (None, (128, 96)):
        plain = read_video(CLIP, size=size)
        scale = f",scale={size[0]}:{size[1]}:flags={_SWS_FLAGS}" if size else ""
        out_params = ["-map", "0:v:0", "-an", *passthrough_timestamps(), "-sws_flags", _SWS_FLAGS]
        gen = imageio_ffmpeg.read_frames(
            str(CLIP), pix_fmt="rgb24", output_params=[*out_params, "-vf", f"format=nv12{scale}"]
        )
        width, height = next(gen)["size"]
        via_nv12 = np.stack([np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in gen])
        assert via_nv12.shape == plain.shape and np.array_equal(via_nv12, plain)


@needs_no_driver
def test_a_video_source_passes_its_hwaccel_to_every_decode(ffmpeg_starts: list[list[str]]) -> None:
    """Tracking, then the frames: two reads, the second behind the decoder (a restart)."""
    kwargs = {"fps": 25, "size": 64, "crop": "auto", "max_frames": 8, "cache_bytes": 1}
    plain = VideoFaceSource(CLIP, **kwargs)
    expected = plain.crops([0, 1, 5, 2])
    ffmpeg_starts.clear()
    forced = VideoFaceSource(CLIP, **kwargs, hwaccel="cuda")
    assert np.array_equal(forced.crops([0, 1, 5, 2]), expected)
    assert forced.transforms == plain.transforms
    decoders = [cmd for cmd in ffmpeg_starts if "rawvideo" in cmd]
    assert [_hwaccel_of(cmd) for cmd in decoders] == ["cuda", None] * 3  # each falls back here
    assert "gray" in decoders[0]  # the tracking pass


def test_probe_is_unavailable_when_ffmpeg_cannot_start() -> None:
    probe = hwdecode.probe_hwdecode.__wrapped__("cuda", "/nonexistent/ffmpeg")
    assert not probe.available and "/nonexistent/ffmpeg" in probe.reason
