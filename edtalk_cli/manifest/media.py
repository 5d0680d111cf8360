"""Media checks for ``edtalk validate``: every referenced file decodes, faces are found,
segments fit inside the audio.

These decode real files (audio, first video frames, images) and run the face detector, so they
are slower than the static checks done by :func:`edtalk_cli.manifest.load_manifest`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edtalk_cli.errors import EdtalkError
from edtalk_cli.manifest.model import EmotionSpec, Job, PoseSpec

__all__ = ["MediaReport", "check_media", "inspect_media"]


@dataclass
class MediaReport:
    """What the media checks found for one job."""

    duration_s: float | None = None  # audio duration
    num_frames: int | None = None  # output frames at the job fps
    problems: list[str] = field(default_factory=list)


def _error_text(exc: EdtalkError) -> str:
    return exc.message + (f" (hint: {exc.hint})" if exc.hint else "")


def _emotion_videos(spec: EmotionSpec | None) -> list[Path]:
    if spec is None:
        return []
    if spec.kind == "video" and spec.path is not None:
        return [spec.path]
    if spec.kind == "blend":
        return [p for _, comp in spec.components or () for p in _emotion_videos(comp)]
    return []


def _emotion_images(spec: EmotionSpec | None) -> list[Path]:
    if spec is None:
        return []
    if spec.kind == "image" and spec.path is not None:
        return [spec.path]
    if spec.kind == "blend":
        return [p for _, comp in spec.components or () for p in _emotion_images(comp)]
    return []


def _check_track(pose: PoseSpec, job: Job) -> list[str]:
    assert pose.path is not None
    try:
        track = np.load(pose.path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return [f"job {job.name!r}: cannot read pose track '{pose.path}': {exc} (save it with numpy.save)"]
    if track.ndim != 2 or track.shape[1] != 6 or track.shape[0] < 1:
        return [
            f"job {job.name!r}: pose track '{pose.path}' has shape {track.shape}, needs (T, 6) with T >= 1"
        ]
    if not np.issubdtype(track.dtype, np.number) or not np.all(np.isfinite(track)):
        return [f"job {job.name!r}: pose track '{pose.path}' holds non-finite or non-numeric values"]
    return []


def inspect_media(job: Job, *, detect_faces: bool = True) -> MediaReport:
    """Decode what ``job`` refers to and collect problems (never raises for bad media)."""
    from edtalk_cli.audio import load_audio, num_video_frames
    from edtalk_cli.video.faces import find_face
    from edtalk_cli.video.io import iter_video_frames, probe_video, read_image

    report = MediaReport()
    add = report.problems.append

    try:
        wav = load_audio(job.audio, fps=job.fps)
        report.duration_s = wav.size / 16000.0
        report.num_frames = num_video_frames(wav.size, job.fps)
    except EdtalkError as exc:
        add(f"job {job.name!r}: {_error_text(exc)}")

    # the source, with its face
    try:
        if job.source.kind == "image":
            image = read_image(job.source.path)
            if detect_faces and job.source.crop == "auto":
                find_face(image, job.source.path)
        else:
            probe_video(job.source.path)
            if detect_faces and job.source.crop == "auto":
                frames = iter_video_frames(job.source.path)
                with contextlib.closing(frames):  # type: ignore[type-var]
                    first = next(frames, None)
                if first is None:
                    add(f"job {job.name!r}: source video '{job.source.path}' gave no frames")
                else:
                    find_face(first, job.source.path)
    except EdtalkError as exc:
        add(f"job {job.name!r}: {_error_text(exc)}")

    videos: list[Path] = []
    if job.mouth.kind == "video" and job.mouth.path is not None:
        videos.append(job.mouth.path)
    poses = [job.pose, *(s.pose for s in job.segments if s.pose is not None)]
    for pose in poses:
        if pose.kind == "video" and pose.path is not None:
            videos.append(pose.path)
        elif pose.kind == "track":
            report.problems.extend(_check_track(pose, job))
    emotions = [job.emotion, *(s.emotion for s in job.segments)]
    for emotion in emotions:
        videos.extend(_emotion_videos(emotion))
        for image_path in _emotion_images(emotion):
            try:
                read_image(image_path)
            except EdtalkError as exc:
                add(f"job {job.name!r}: {_error_text(exc)}")
    for video in dict.fromkeys(videos):
        try:
            info = probe_video(video)
            if info.n_frames < 1:
                add(f"job {job.name!r}: video '{video}' has no frames")
        except EdtalkError as exc:
            add(f"job {job.name!r}: {_error_text(exc)}")

    if report.duration_s is not None:
        duration = report.duration_s
        frame = 1.0 / job.fps
        for seg in job.segments:
            span = f"{seg.start:g}s-{'end' if seg.end is None else f'{seg.end:g}s'}"
            where = f"job {job.name!r}: segment {span}"
            ends = f"the audio ends at {duration:.3f}s"
            if seg.start >= duration:
                add(f"{where} starts after the audio: {ends}; move or remove the segment")
            elif seg.end is not None and seg.end > duration + frame:
                add(
                    f"{where} runs past the end of the audio: {ends}; "
                    "shorten it, or omit 'end' to run to the end"
                )
    return report


def check_media(job: Job) -> list[str]:
    """Problems with the media of ``job`` (files decode, a face in the source, segments within the audio)."""
    return inspect_media(job).problems
