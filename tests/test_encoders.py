"""encode.codec: the NVENC probe, the ffmpeg arguments per encoder, the libx264 fallback and its one
warning, the manifest field and the fingerprint. Real ffmpeg throughout (no NVIDIA driver here)."""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli
from PIL import Image

import edtalk_cli.video.encoders as encoders
from edtalk_cli.audio import load_audio
from edtalk_cli.errors import ManifestError
from edtalk_cli.hashing import FileHasher
from edtalk_cli.manifest import load_manifest
from edtalk_cli.runner.fingerprint import job_fingerprint, read_sidecar
from edtalk_cli.video import probe_mp4, write_mp4
from edtalk_cli.video._ffmpeg import ffmpeg_exe, run_ffmpeg
from edtalk_cli.video.encoders import (
    NVENC_PRESETS,
    EncoderFallbackWarning,
    choose_encoder,
    encoder_args,
    probe_encoder,
)

NO_NVIDIA_DRIVER = ctypes.util.find_library("cuda") is None
needs_no_driver = pytest.mark.skipif(not NO_NVIDIA_DRIVER, reason="an NVIDIA driver is installed here")


# ----- ffmpeg arguments ---------------------------------------------------------------------------
def test_x264_arguments_are_the_crf_and_preset_as_given() -> None:
    assert encoder_args("libx264", 18, "medium") == [
        "-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p",
    ]  # fmt: skip


def test_nvenc_arguments_map_crf_to_cq_and_the_preset_to_p1_p7() -> None:
    assert encoder_args("h264_nvenc", 23, "veryfast") == [
        "-c:v", "h264_nvenc", "-preset", "p2", "-tune", "hq", "-rc", "vbr", "-cq", "23", "-b:v", "0",
        "-profile:v", "high", "-pix_fmt", "yuv420p",
    ]  # fmt: skip
    hevc = encoder_args("hevc_nvenc", 18, "veryslow")
    assert hevc[hevc.index("-preset") + 1] == "p7" and hevc[hevc.index("-profile:v") + 1] == "main"
    assert hevc[-2:] == ["-tag:v", "hvc1"]  # Apple players open only hvc1-tagged HEVC
    # NVENC's -cq 0 means "encoder's choice": crf 0 (x264's lossless) asks for the best, cq 1
    assert encoder_args("h264_nvenc", 0)[encoder_args("h264_nvenc", 0).index("-cq") + 1] == "1"
    assert sorted(set(NVENC_PRESETS.values())) == [f"p{i}" for i in range(1, 8)]
    with pytest.raises(ValueError, match="preset must be one of"):
        encoder_args("h264_nvenc", 18, "p4")
    with pytest.raises(ValueError, match=r"crf must be in 0\.\.51"):
        encoder_args("libx264", 52)


@pytest.mark.parametrize("encoder", ["h264_nvenc", "hevc_nvenc"])
def test_ffmpeg_accepts_every_nvenc_argument_list(encoder: str) -> None:
    """ffmpeg parses the encoder's options before it loads the driver: a wrong option or value fails
    with "Unable to parse" / "Unrecognized option" whether or not a GPU is there."""
    for preset in ("ultrafast", "veryfast", "faster", "medium", "slow", "slower", "veryslow"):
        for crf in (0, 18, 51):
            args = encoder_args(encoder, crf, preset)
            proc = run_ffmpeg(
                ["-loglevel", "error", "-f", "lavfi", "-i", "color=s=256x256:r=25", "-frames:v", "2",
                 *args, "-f", "null", "-"],
                timeout=60,
            )  # fmt: skip
            errors = proc.stderr.decode("utf-8", errors="replace")
            assert "Unable to parse" not in errors and "Unrecognized option" not in errors, (args, errors)
            assert "Option not found" not in errors, (args, errors)
            if NO_NVIDIA_DRIVER:
                assert proc.returncode != 0 and "libcuda" in errors


# ----- the probe ----------------------------------------------------------------------------------
@needs_no_driver
def test_probe_says_unavailable_quickly_and_runs_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    starts: list[list[str]] = []
    real_run = subprocess.run

    def spy(cmd, *args, **kwargs):  # the real ffmpeg runs; the spy only counts the starts
        starts.append(list(cmd))
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(encoders.subprocess, "run", spy)
    probe_encoder.cache_clear()
    try:
        began = time.perf_counter()
        first = probe_encoder("h264_nvenc", ffmpeg_exe())
        took = time.perf_counter() - began
        assert not first.available and "libcuda" in first.reason
        assert took < 5.0
        assert len(starts) == 1 and "h264_nvenc" in starts[0] and "-frames:v" in starts[0]
        assert probe_encoder("h264_nvenc", ffmpeg_exe()) == first
        assert choose_encoder("auto", cuda=True).encoder == "libx264"  # the same cached probe
        assert len(starts) == 1
        assert not probe_encoder("hevc_nvenc", ffmpeg_exe()).available  # another encoder: its own probe
        assert len(starts) == 2
        # libx264 never needs a probe: h264, and auto for frames that were not rendered on CUDA
        assert choose_encoder("h264", cuda=True).encoder == choose_encoder("auto").encoder == "libx264"
        assert len(starts) == 2
    finally:
        probe_encoder.cache_clear()


@needs_no_driver
def test_choice_falls_back_to_x264_saying_why_only_when_nvenc_was_asked_for() -> None:
    asked = choose_encoder("hevc_nvenc", cuda=True)
    assert (asked.encoder, asked.codec) == ("libx264", "hevc_nvenc")
    assert asked.warning is not None and asked.warning.startswith(
        "encode.codec hevc_nvenc is not available ("
    )
    assert "libcuda" in asked.warning and asked.warning.endswith("encoding with libx264 (h264) instead")
    assert choose_encoder("auto", cuda=True).warning is None  # auto: libx264 is a choice, not a fallback
    with pytest.raises(ValueError, match="codec must be one of auto, h264, h264_nvenc, hevc_nvenc"):
        choose_encoder("nvenc")


# ----- the writer ---------------------------------------------------------------------------------
def _frames(n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)]


def test_h264_writes_what_auto_writes_off_cuda(tmp_path: Path) -> None:
    explicit = write_mp4(_frames(), tmp_path / "h264.mp4", 25, codec="h264")
    default = write_mp4(_frames(), tmp_path / "auto.mp4", 25)
    assert explicit.encoder == default.encoder == "libx264"
    assert (tmp_path / "h264.mp4").read_bytes() == (tmp_path / "auto.mp4").read_bytes()
    info = probe_mp4(tmp_path / "h264.mp4")
    assert info["video"]["codec"] == "h264" and info["video"]["pix_fmt"] == "yuv420p" and info["faststart"]


@needs_no_driver
def test_unavailable_nvenc_writes_h264_with_one_warning(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = write_mp4(_frames(), tmp_path / "out.mp4", 25, codec="h264_nvenc", cuda=True)
    fallbacks = [w for w in caught if issubclass(w.category, EncoderFallbackWarning)]
    assert len(fallbacks) == 1 and "encode.codec h264_nvenc is not available" in str(fallbacks[0].message)
    assert written.encoder == "libx264"
    info = probe_mp4(tmp_path / "out.mp4")
    assert info["video"]["codec"] == "h264" and info["video"]["frames"] == 6 and info["faststart"]


# ----- the manifest and the fingerprint -----------------------------------------------------------
def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).write_bytes(b"x")


def test_manifest_codec_is_checked_and_merged(tmp_path: Path) -> None:
    _touch(tmp_path, "face.png", "voice.wav")
    path = tmp_path / "m.yaml"
    path.write_text(
        "version: 1\ndefaults:\n  encode: {codec: hevc_nvenc}\njobs:\n"
        "  - {name: a, source: face.png, audio: voice.wav, encode: {crf: 23}}\n"
        "  - {name: b, source: face.png, audio: voice.wav, encode: {codec: h264}}\n"
    )
    first, second = load_manifest(path).jobs
    assert (first.encode.codec, first.encode.crf) == ("hevc_nvenc", 23)
    assert second.encode.codec == "h264"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\njobs:\n  - {name: a, source: face.png, audio: voice.wav, encode: {codec: nvenc}}\n"
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(bad)
    message = str(info.value.message)
    assert f"{bad}:3:" in message and "jobs[0].encode.codec: invalid value 'nvenc'" in message
    assert "'auto', 'h264', 'h264_nvenc' or 'hevc_nvenc'" in message


def test_fingerprint_follows_the_codec_and_keeps_the_default_jobs_digest(tmp_path: Path) -> None:
    _touch(tmp_path, "face.png", "voice.wav")
    path = tmp_path / "m.yaml"
    codecs = ["auto", "h264", "h264_nvenc", "hevc_nvenc"]
    path.write_text(
        "version: 1\njobs:\n"
        + "".join(
            f"  - {{name: {c}, source: face.png, audio: voice.wav, encode: {{codec: {c}}}}}\n" for c in codecs
        )
        + "  - {name: plain, source: face.png, audio: voice.wav}\n"
    )
    prints = {
        job.name: job_fingerprint(job, hasher=FileHasher(), weights={}, precision="fp32")
        for job in load_manifest(path).jobs
    }
    assert len({prints[c].digest for c in codecs}) == 4
    assert prints["auto"].digest == prints["plain"].digest  # the default: no "encode" in the settings
    assert "encode" not in prints["plain"].settings
    assert prints["h264"].settings["encode"]["codec"] == "h264"


# ----- a whole run --------------------------------------------------------------------------------
def _two_nvenc_jobs(folder: Path, parity: Path) -> None:
    """``folder/m.yaml``: jobs a and b of 8 frames on a 64 px photo, asking for h264_nvenc."""
    Image.open(parity / "source.png").convert("RGB").resize((64, 64)).save(folder / "face.png")
    sf.write(folder / "voice.wav", load_audio(parity / "speech.wav")[: 8 * 640], 16000)
    (folder / "m.yaml").write_text(
        "version: 1\ndefaults:\n  source: {path: face.png, crop: none}\n  audio: voice.wav\n"
        "  encode: {codec: h264_nvenc, preset: ultrafast}\n"
        '  output: "out/{name}.mp4"\njobs:\n  - name: a\n  - name: b\n'
    )


@needs_no_driver
def test_nvenc_jobs_on_cpu_render_h264_with_one_warning_per_run(
    tmp_path: Path, parity: Path, tiny_weights: Path
) -> None:
    _two_nvenc_jobs(tmp_path, parity)
    run = run_cli(
        "render", "m.yaml", "--weights", tiny_weights, "--devices", "cpu", "--log-json", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    notes = [line for line in run.stderr.splitlines() if "encode.codec h264_nvenc is not available" in line]
    assert len(notes) == 1, run.stderr
    assert notes[0].startswith("warning: ") and notes[0].endswith("encoding with libx264 (h264) instead")
    done = [json.loads(line) for line in run.stdout.splitlines() if '"job_done"' in line]
    assert sorted(e["name"] for e in done) == ["a", "b"] and {e["encoder"] for e in done} == {"libx264"}
    for name in ("a", "b"):
        output = tmp_path / "out" / f"{name}.mp4"
        info = probe_mp4(output)
        assert info["video"]["codec"] == "h264" and info["video"]["frames"] == 8
        assert info["video"]["pix_fmt"] == "yuv420p" and info["faststart"]
        assert read_sidecar(output)["encoder"] == "libx264"


@pytest.mark.slow  # two worker processes load torch
@needs_no_driver
def test_nvenc_fallback_is_shown_once_for_a_run_of_two_worker_processes(
    tmp_path: Path, parity: Path, tiny_weights: Path
) -> None:
    _two_nvenc_jobs(tmp_path, parity)
    run = run_cli(
        "render", "m.yaml", "--weights", tiny_weights, "--devices", "cpu", "--workers-per-device", "2",
        "--log-json", "--no-cache", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert next(e for e in events if e["event"] == "run_start")["backend"] == "loky"
    done = [e for e in events if e["event"] == "job_done"]
    assert len({e["worker"] for e in done}) == 2  # each job in its own worker process
    text = "encode.codec h264_nvenc is not available"
    assert (run.stdout + run.stderr).count(text) == 1, run.stderr
    assert {e["encoder"] for e in done} == {"libx264"}  # each job still records the encoder that ran
    for name in ("a", "b"):
        assert read_sidecar(tmp_path / "out" / f"{name}.mp4")["encoder"] == "libx264"
