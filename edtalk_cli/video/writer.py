"""Streaming H.264/HEVC + AAC mp4 writer on the ffmpeg binary of imageio-ffmpeg.

Frames go straight into ffmpeg's stdin as raw RGB (constant memory whatever the length). The
output is H.264 (libx264, or h264_nvenc) or HEVC (hevc_nvenc) yuv420p, BT.709-tagged, with AAC
audio, ``-movflags +faststart``. With a :class:`~edtalk_cli.video.yuv.Colorimetry` the frames are
tv-range I420 planes (H * 3 / 2, W) instead, handed to the encoder as they are (no colour
conversion) and tagged with the source's colours (its matrix, primaries and trc where it had
them, tv range). Which encoder runs is decided by
:func:`edtalk_cli.video.encoders.choose_encoder` from the ``codec`` asked for. The file is written
to ``.{name}.<random>.part.mp4`` next to the target and renamed with ``os.replace`` only after
ffmpeg exited cleanly. The temporary file is created exclusively (``mkstemp``, see ``edtalk_cli.atomic``)
and ffmpeg writes to that very file through its descriptor (``/proc/self/fd/N`` on Linux), so a
symlink planted or swapped in under the temporary name is never followed. On any exception
(KeyboardInterrupt and GeneratorExit included) ffmpeg is killed and the temporary file deleted, so
no half-written output is ever left behind; ffmpeg also dies with its parent process (kill -9
included, see ``child_preexec``).

Audio/video sync. Both streams start at 0. ``-shortest`` is *not* used: with AAC it cuts the
audio at a 1024-sample packet boundary before the end of the video (measured: 9 ms short at
29.97 fps), so it is neither exact nor needed. Instead:

* ``n_frames=None`` (default): the audio is muxed whole. A caller that passes
  ``floor(audio_duration * fps)`` frames gets a video that ends less than one frame before the
  audio, and the file's duration is the audio's.
* ``n_frames=N``: the audio is trimmed (or padded with silence) to exactly ``N / fps`` seconds, and
  the writer checks that exactly ``N`` frames arrive.

We drive the ffmpeg process ourselves rather than through ``imageio_ffmpeg.write_frames`` because
that generator neither reports ffmpeg's exit status nor lets us capture its error output, so a
failed encode would go unnoticed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from edtalk_cli.atomic import TempFile
from edtalk_cli.defaults import VIDEO_CODEC, X264_CRF, X264_PRESET
from edtalk_cli.errors import EdtalkError, MediaError
from edtalk_cli.video._ffmpeg import (
    child_preexec,
    ffmpeg_exe,
    fps_fraction,
    parse_framecrc,
    parse_input_header,
    passthrough_timestamps,
    run_ffmpeg,
)
from edtalk_cli.video.encoders import choose_encoder, encoder_args
from edtalk_cli.video.yuv import Colorimetry

__all__ = ["VideoWriter", "WriteResult", "mp4_top_level_atoms", "probe_mp4", "write_mp4"]


@dataclass(frozen=True)
class WriteResult:
    """What :func:`write_mp4` / :meth:`VideoWriter.close` produced."""

    path: Path
    frames: int
    fps: Fraction
    duration_s: float  # frames / fps: the video stream's duration
    width: int  # encoded size (odd input sizes are padded by one pixel to even)
    height: int
    has_audio: bool
    encoder: str = "libx264"  # the ffmpeg video encoder that ran (libx264, h264_nvenc, hevc_nvenc)


TEMP_SUFFIX = ".part.mp4"  # temporary files are ``.{name}.<random>.part.mp4`` beside the output


def _seconds(value: Fraction) -> str:
    return f"{float(value):.9f}"


def _check_audio(audio_path: Path) -> None:
    """Raise MediaError naming the file unless ffmpeg sees an audio stream in it."""
    if not audio_path.is_file():
        raise MediaError(f"audio file not found: '{audio_path}'", hint="check the path")
    proc = run_ffmpeg(["-i", str(audio_path)])
    header = parse_input_header(proc.stderr.decode("utf-8", errors="replace"))
    if header is None:
        raise MediaError(
            f"cannot read audio '{audio_path}'",
            hint="use an audio file ffmpeg can decode (WAV, MP3, FLAC, OGG, M4A, ...)",
        )
    if header.first("audio") is None:
        raise MediaError(f"'{audio_path}' has no audio stream", hint="pass a file that contains audio")


class VideoWriter:
    """Context manager that streams RGB uint8 frames into an H.264/AAC mp4.

    >>> with VideoWriter("out.mp4", fps=25, audio_path="speech.wav") as w:  # doctest: +SKIP
    ...     for frame in frames:
    ...         w.write(frame)
    >>> w.result.frames  # doctest: +SKIP
    """

    def __init__(
        self,
        out_path: str | Path,
        fps: float | Fraction,
        audio_path: str | Path | None = None,
        *,
        crf: int = X264_CRF,
        preset: str = X264_PRESET,
        codec: str = VIDEO_CODEC,
        cuda: bool = False,
        n_frames: int | None = None,
        audio_sample_rate: int = 48000,
        audio_bitrate: str = "192k",
        before_publish: Callable[[Path, WriteResult], None] | None = None,
        colorimetry: Colorimetry | None = None,
    ) -> None:
        """``colorimetry``: the frames are tv-range I420 arrays (H * 3 / 2, W) of even H and W, written
        without conversion and tagged as :meth:`Colorimetry.output_tags` says; None: RGB frames.

        ``before_publish(tmp, result)`` is called with the finished temporary file just before it
        is renamed to ``out_path`` (e.g. to record its hash first); if it raises, nothing is renamed.

        ``codec``: auto, h264, h264_nvenc or hevc_nvenc; ``cuda``: the frames are rendered on a
        CUDA device, which lets ``auto`` pick NVENC (see :mod:`edtalk_cli.video.encoders`). An
        NVENC codec ffmpeg cannot use here falls back to libx264 with an
        :class:`~edtalk_cli.video.encoders.EncoderFallbackWarning`."""
        self.out_path = Path(out_path)
        self.fps = fps_fraction(fps)
        if n_frames is not None and n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {n_frames}")
        self.crf = int(crf)
        self.preset = preset
        self.choice = choose_encoder(codec, cuda=cuda)
        self._video_args = encoder_args(self.choice.encoder, self.crf, self.preset)  # checks crf, preset
        self.choice.warn()
        self.n_frames = n_frames
        self.audio_sample_rate = int(audio_sample_rate)
        self.audio_bitrate = audio_bitrate
        self.audio_path = Path(audio_path) if audio_path is not None else None
        if self.audio_path is not None:
            _check_audio(self.audio_path)
        self.before_publish = before_publish
        self.colorimetry = colorimetry
        self._temp: TempFile | None = None
        self.tmp_path: Path | None = None  # the exclusive temporary file, once the first frame came
        self.frames_written = 0
        self.result: WriteResult | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None  # temporary file collecting ffmpeg's stderr
        self._in_size: tuple[int, int] | None = None  # (H, W) of incoming frames
        self._pad: tuple[int, int] = (0, 0)  # rows, cols of edge padding to even size
        self._closed = False

    # ------------------------------------------------------------------ process

    def _command(self, width: int, height: int) -> list[str]:
        in_format = "rgb24" if self.colorimetry is None else "yuv420p"
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", in_format, "-s", f"{width}x{height}",
            "-framerate", str(self.fps), "-i", "pipe:0",
        ]  # fmt: skip
        duration = None if self.n_frames is None else Fraction(self.n_frames) / self.fps
        if self.audio_path is not None:
            if duration is not None:
                cmd += ["-t", _seconds(duration)]
            cmd += ["-i", str(self.audio_path)]
        cmd += ["-map", "0:v:0"]
        if self.colorimetry is not None:  # the planes as they are, only tagged
            tags = ":".join(f"{name}={value}" for name, value in self.colorimetry.output_tags().items())
            cmd += ["-vf", f"setparams={tags}", *self._video_args]
        else:
            cmd += self._rgb_video_args()
        if self.audio_path is not None:
            cmd += ["-map", "1:a:0", "-c:a", "aac", "-b:a", self.audio_bitrate]
            cmd += ["-ar", str(self.audio_sample_rate)]
            if duration is not None:
                cmd += ["-af", f"apad=whole_dur={_seconds(duration)}"]
        cmd += ["-movflags", "+faststart", "-f", "mp4", self._ffmpeg_target()]
        return cmd

    def _rgb_video_args(self) -> list[str]:
        """RGB frames to bt709 tv-range yuv420p, tagged so (matrix, primaries, transfer, range), and
        the encoder. The tags are set on the frames (``setparams``): encoder options alone leave the
        primaries and transfer untagged with this ffmpeg."""
        return [
            "-vf", "scale=out_color_matrix=bt709:out_range=tv:flags=bicubic+accurate_rnd+full_chroma_int,"
            "format=yuv420p,setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv",
            *self._video_args,
        ]  # fmt: skip

    def _ffmpeg_target(self) -> str:
        """Where ffmpeg writes: our temporary file's descriptor on Linux, else its name."""
        assert self._temp is not None and self._temp.fd is not None
        if sys.platform.startswith("linux"):
            return f"/proc/self/fd/{self._temp.fd}"
        return str(self._temp.path)

    def _start(self, height: int, width: int) -> None:
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self._pad = (height % 2, width % 2)
        enc_w, enc_h = width + self._pad[1], height + self._pad[0]
        self._temp = TempFile(self.out_path, TEMP_SUFFIX)
        self.tmp_path = self._temp.path
        assert self._temp.fd is not None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close/abort)
        self._proc = subprocess.Popen(
            self._command(enc_w, enc_h),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            pass_fds=(self._temp.fd,),
            preexec_fn=child_preexec(),  # dies with us; Ctrl-C reaches Python only
        )
        self._in_size = (height, width)

    def _ffmpeg_errors(self) -> str:
        if self._log is None:
            return ""
        try:
            self._log.seek(0)
            text = self._log.read().decode("utf-8", errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return "\n".join(text.splitlines()[-8:])

    # ------------------------------------------------------------------ public

    def _frame_size(self, arr: np.ndarray) -> tuple[int, int]:
        """(H, W) of a frame in this writer's input format; ValueError for another layout."""
        if self.colorimetry is None:
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"frames must be uint8 arrays (H, W, 3), got {arr.dtype} {arr.shape}")
            return arr.shape[0], arr.shape[1]
        height = arr.shape[0] * 2 // 3 if arr.ndim == 2 else 0
        if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[0] % 3 or height % 2 or arr.shape[1] % 2:
            raise ValueError(
                f"I420 frames must be uint8 arrays (H * 3 / 2, W) of even H and W, got {arr.dtype} {arr.shape}"
            )
        return height, arr.shape[1]

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: RGB uint8 (H, W, 3), or I420 (H * 3 / 2, W) with a ``colorimetry``;
        every frame must have the first frame's size."""
        if self._closed:
            raise RuntimeError("VideoWriter is closed")
        arr = np.asarray(frame)
        size = self._frame_size(arr)
        if self._proc is None:
            self._start(*size)
        elif size != self._in_size:
            raise ValueError(
                f"frame {self.frames_written} has size {size[1]}x{size[0]}, "
                f"the first frame had {self._in_size[1]}x{self._in_size[0]}"  # type: ignore[index]
            )
        if self.n_frames is not None and self.frames_written >= self.n_frames:
            raise ValueError(f"more than the announced n_frames={self.n_frames} frames were written")
        if self._pad != (0, 0):
            arr = np.pad(arr, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        arr = np.ascontiguousarray(arr)
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(memoryview(arr).cast("B"))
        except (BrokenPipeError, OSError) as exc:
            self._proc.wait()
            raise EdtalkError(
                f"ffmpeg stopped while writing '{self.out_path}': {self._ffmpeg_errors() or exc}",
                hint="check free disk space and that the output folder is writable",
            ) from exc
        self.frames_written += 1

    def close(self) -> WriteResult:
        """Finish encoding, check ffmpeg's exit status and move the file into place."""
        if self.result is not None:
            return self.result
        if self._closed:
            raise RuntimeError("VideoWriter was aborted")
        try:
            if self._proc is None:
                raise ValueError(f"no frames were written to '{self.out_path}'")
            if self.n_frames is not None and self.frames_written != self.n_frames:
                raise ValueError(
                    f"{self.frames_written} frames were written to '{self.out_path}', "
                    f"n_frames={self.n_frames} were announced"
                )
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            rc = self._proc.wait()
            assert self._temp is not None
            if rc != 0 or not self._temp.is_ours():
                raise EdtalkError(
                    f"ffmpeg failed (exit code {rc}) writing '{self.out_path}': {self._ffmpeg_errors()}",
                    hint="check free disk space and that the output folder is writable",
                )
            self._temp.close_fd()
            assert self._in_size is not None
            result = WriteResult(
                path=self.out_path,
                frames=self.frames_written,
                fps=self.fps,
                duration_s=float(self.frames_written / self.fps),
                width=self._in_size[1] + self._pad[1],
                height=self._in_size[0] + self._pad[0],
                has_audio=self.audio_path is not None,
                encoder=self.choice.encoder,
            )
            if self.before_publish is not None:
                self.before_publish(self._temp.path, result)
            self._temp.publish()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        if self._log is not None:
            self._log.close()
        self.result = result
        return self.result

    def abort(self) -> None:
        """Kill ffmpeg and delete the temporary file (idempotent)."""
        self._closed = True
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
            except OSError:
                pass
            proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._temp is not None:
            self._temp.discard()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:  # last resort: never leave ffmpeg or a .part file behind
        if getattr(self, "_proc", None) is not None and self.result is None:
            self.abort()


def write_mp4(
    frames: Iterable[np.ndarray],
    out_path: str | Path,
    fps: float | Fraction,
    audio_path: str | Path | None = None,
    *,
    crf: int = X264_CRF,
    preset: str = X264_PRESET,
    codec: str = VIDEO_CODEC,
    cuda: bool = False,
    n_frames: int | None = None,
    audio_sample_rate: int = 48000,
    before_publish: Callable[[Path, WriteResult], None] | None = None,
    colorimetry: Colorimetry | None = None,
) -> WriteResult:
    """Stream ``frames`` (RGB uint8, (H, W, 3); tv-range I420 (H * 3 / 2, W) with a
    ``colorimetry``) into an H.264/AAC mp4 at ``out_path``.

    See the module docstring for the sync rules and the ``n_frames`` contract. Any exception
    raised while iterating ``frames`` propagates after ffmpeg is stopped and the partial file is
    deleted. ``codec``, ``cuda``, ``before_publish`` and ``colorimetry``: see :class:`VideoWriter`.
    """
    writer = VideoWriter(
        out_path,
        fps,
        audio_path,
        crf=crf,
        preset=preset,
        codec=codec,
        cuda=cuda,
        n_frames=n_frames,
        audio_sample_rate=audio_sample_rate,
        before_publish=before_publish,
        colorimetry=colorimetry,
    )
    try:
        for frame in frames:
            writer.write(frame)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


# --------------------------------------------------------------------------------------- probing


def mp4_top_level_atoms(path: str | Path) -> list[str]:
    """The top-level box types of an ISO-BMFF (mp4/mov) file, in file order."""
    atoms: list[str] = []
    with open(path, "rb") as fh:
        size_total = os.fstat(fh.fileno()).st_size
        pos = 0
        while pos + 8 <= size_total:
            fh.seek(pos)
            head = fh.read(8)
            size = int.from_bytes(head[:4], "big")
            kind = head[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(fh.read(8), "big")
            elif size == 0:
                size = size_total - pos
            if size < 8:
                break
            atoms.append(kind)
            pos += size
    return atoms


def probe_mp4(path: str | Path) -> dict[str, Any]:
    """Describe a media file by decoding it fully with ffmpeg (for tests and validation).

    Returns ``{"format", "duration" (container, s), "streams": [...], "video", "audio",
    "faststart", "atoms"}``; each stream dict has ``kind, codec, pix_fmt, width, height, fps,
    sample_rate, channels`` from the header, plus ``frames`` (decoded frames, or decoded audio
    packets), ``start_s``, ``end_s`` and ``duration_s`` from the decoded timestamps.
    ``video``/``audio`` are the first stream of that kind (or None).
    """
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"media file not found: '{p}'")
    head = run_ffmpeg(["-i", str(p)])
    header = parse_input_header(head.stderr.decode("utf-8", errors="replace"))
    if header is None:
        raise MediaError(f"cannot read media file '{p}'")
    wanted = [s for s in header.streams if s.kind in ("video", "audio")]
    args = ["-i", str(p)]
    for s in wanted:
        args += ["-map", f"0:{s.index}"]
    args += [*passthrough_timestamps(), "-f", "framecrc", "-"]
    decoded = parse_framecrc(run_ffmpeg(args).stdout.decode("utf-8", errors="replace"))
    streams: list[dict[str, Any]] = []
    for out_index, s in enumerate(wanted):
        d = decoded.get(out_index)
        start, end = d.start_end() if d is not None else (Fraction(0), Fraction(0))
        streams.append(
            {
                "index": s.index,
                "kind": s.kind,
                "codec": s.codec,
                "pix_fmt": s.pix_fmt,
                "width": s.width,
                "height": s.height,
                "fps": s.fps,
                "sample_rate": s.sample_rate,
                "channels": s.channels,
                "frames": d.count if d is not None else 0,
                "start_s": float(start),
                "end_s": float(end),
                "duration_s": float(end - start),
            }
        )
    atoms = mp4_top_level_atoms(p)
    faststart = "moov" in atoms and "mdat" in atoms and atoms.index("moov") < atoms.index("mdat")
    return {
        "format": header.format_name,
        "duration": header.duration,
        "streams": streams,
        "video": next((s for s in streams if s["kind"] == "video"), None),
        "audio": next((s for s in streams if s["kind"] == "audio"), None),
        "faststart": faststart,
        "atoms": atoms,
    }
