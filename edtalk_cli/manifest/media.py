"""Media checks for ``edtalk validate``: every referenced file decodes and the source has a face.

These decode real files (audio, first video frames, images) and run the face detector, so they
are slower than the static checks done by :func:`edtalk_cli.manifest.load_manifest`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edtalk_cli.defaults import SAMPLE_RATE
from edtalk_cli.errors import EdtalkError
from edtalk_cli.manifest.model import Job
from edtalk_cli.manifest.problems import Problem

__all__ = ["MediaReport", "check_media", "inspect_media"]


@dataclass
class MediaReport:
    """What the media checks found for one job."""

    duration_s: float | None = None  # audio duration
    num_frames: int | None = None  # output frames at the job fps
    located: list[Problem] = field(default_factory=list)  # each at the manifest field naming the file

    @property
    def problems(self) -> list[str]:
        """The problems as text: ``file:line:col: field: job 'x': what. Fix``."""
        return [p.format() for p in self.located]


def _check_track(path: Path) -> str | None:
    try:
        track = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return f"cannot read pose track '{path}': {exc} (save it with numpy.save)"
    if track.ndim != 2 or track.shape[1] != 6 or track.shape[0] < 1:
        return f"pose track '{path}' has shape {track.shape}, needs (T, 6) with T >= 1"
    if not np.issubdtype(track.dtype, np.number) or not np.all(np.isfinite(track)):
        return f"pose track '{path}' holds non-finite or non-numeric values"
    return None


def inspect_media(job: Job, *, detect_faces: bool = True) -> MediaReport:
    """Decode what ``job`` refers to and collect problems (never raises for bad media).

    Every file the job reads is decoded (audio, images, the first frames of videos, pose
    tracks) and the source's face is detected; each problem is located at the manifest field that
    names the file. Segment times and frame sizes are checked by :mod:`edtalk_cli.manifest.probe`.
    """
    from edtalk_cli.audio import load_audio, num_video_frames
    from edtalk_cli.video.faces import find_face
    from edtalk_cli.video.io import iter_video_frames, probe_video, read_image

    report = MediaReport()

    def add(where: str, message: str, fix: str = "") -> None:
        origin = job.origin_of(where)
        report.located.append(Problem(origin, origin.path, f"job {job.name!r}: {message}", fix))

    for where, path, kind in dict.fromkeys(job.inputs()):
        face = where == "source.path" and detect_faces and job.source.crop != "none"
        try:
            if kind == "audio":
                # with the mouth from a video the audio is only muxed: silence is fine
                wav = load_audio(path, fps=job.fps, allow_silence=job.mouth.kind == "video")
                report.duration_s = wav.size / SAMPLE_RATE
                report.num_frames = num_video_frames(wav.size, job.fps)
            elif kind == "track":
                error = _check_track(path)
                if error is not None:
                    add(where, error)
            elif kind == "image":
                image = read_image(path)
                if face:
                    find_face(image, path)
            else:
                info = probe_video(path)
                if info.n_frames < 1:
                    add(where, f"video '{path}' has no frames")
                elif face:
                    frames = iter_video_frames(path)
                    with contextlib.closing(frames):  # type: ignore[type-var]
                        first = next(frames, None)
                    if first is None:
                        add(where, f"source video '{path}' gave no frames")
                    else:
                        find_face(first, path)
        except EdtalkError as exc:
            add(where, exc.message, exc.hint or "")
    return report


def check_media(job: Job) -> list[str]:
    """Problems with the media of ``job`` (files decode, a face in the source), as text."""
    return inspect_media(job).problems
