"""Whole jobs without wasted work: each source frame through the encoder once, the same frames as
the pass-per-use route, bounded dubbing memory (small real model, real ffmpeg, real dlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edtalk_cli.pipeline.render as render_module
from edtalk_cli.manifest import load_manifest
from edtalk_cli.pipeline.faces import TRACK_MARGIN, VideoFaceSource
from edtalk_cli.pipeline.options import RenderOptions
from edtalk_cli.pipeline.render import JobRenderer
from edtalk_cli.video import write_mp4
from edtalk_cli.video.crop import blend_into
from edtalk_cli.weights.bundle import ModelBundle


@pytest.fixture(scope="module")
def actor_clip(tmp_path_factory) -> Path:
    """A 40-frame 25 fps clip of a real face (scikit-image's astronaut) drifting 2 px per frame."""
    from skimage import data

    photo = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256), Image.BICUBIC))
    path = tmp_path_factory.mktemp("media") / "actor.mp4"
    write_mp4((np.roll(photo, 2 * k, axis=1) for k in range(40)), path, 25)
    return path


def _job(tmp_path: Path, body: str):
    manifest = tmp_path / "talk.yaml"
    manifest.write_text(body)
    return load_manifest(manifest).jobs[0]


def _encoded_images(renderer: JobRenderer) -> list[int]:
    """Batch sizes of every encoder call of ``renderer`` (appended to as it runs)."""
    calls: list[int] = []
    renderer.engine.model.enc.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    return calls


def _render_both_ways(job, weights: Path, monkeypatch) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(frames, frames with the coefficients in a pass of their own, encoder images each way)."""
    renderer = JobRenderer(ModelBundle.from_dir(weights), options=RenderOptions(batch_size=4))
    calls = _encoded_images(renderer)
    frames = renderer.frames(job).images
    single = np.stack(list(frames))
    single_calls = sum(calls)
    monkeypatch.setattr(render_module, "row_local_plan", lambda *args: None)
    calls.clear()
    frames = renderer.frames(job).images
    separate = np.stack(list(frames))
    return single, separate, single_calls, sum(calls)


SEGMENTS = """
    emotion: {{preset: happy, intensity: 0.7}}
    segments:
      - {{start: 0.4, end: 0.9, emotion: sad}}
    transition: 0.3
"""


@pytest.mark.slow
@pytest.mark.parametrize("segments", ["", SEGMENTS], ids=["own-expression", "emotion-segments"])
def test_dubbing_encodes_each_source_frame_once_with_the_same_frames(
    tmp_path, parity, tiny_weights, actor_clip, monkeypatch, segments
):
    # 1.28 s of speech: 32 output frames of a 40-frame source (trimmed)
    job = _job(
        tmp_path,
        f"""
version: 1
jobs:
  - name: dub
    source: {actor_clip}
    audio: {parity / "speech.wav"}
    output: "out/{{name}}.mp4"
{segments.format()}
""",
    )
    single, separate, single_calls, separate_calls = _render_both_ways(job, tiny_weights, monkeypatch)
    assert single.shape == (32, 256, 256, 3)
    assert single_calls == 32  # one encoder pass per source frame used
    assert separate_calls == 64  # the coefficient pass encodes every frame a second time
    difference = np.abs(single.astype(int) - separate.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3  # float rounding only


def test_pingpong_dubbing_encodes_a_repeated_frame_once_per_batch(
    tmp_path, parity, tiny_weights, monkeypatch
):
    photo = np.asarray(Image.open(parity / "source.png").convert("RGB"))
    write_mp4((np.roll(photo, 3 * k, axis=0) for k in range(3)), tmp_path / "short.mp4", 25)
    job = _job(
        tmp_path,
        f"""
version: 1
jobs:
  - name: dub
    source: {{path: short.mp4, loop: pingpong, crop: none}}
    audio: {parity / "speech.wav"}
    output: "out/{{name}}.mp4"
""",
    )
    single, separate, single_calls, _ = _render_both_ways(job, tiny_weights, monkeypatch)
    # batches of 4 over the order 0 1 2 1 | 0 1 2 1 | ...: 3 distinct frames each, 8 batches
    assert single_calls == 3 * 8
    difference = np.abs(single.astype(int) - separate.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


def test_a_segment_restarting_the_source_pose_takes_the_separate_coefficient_pass(
    tmp_path, parity, tiny_weights, actor_clip
):
    np.save(tmp_path / "nod.npy", np.random.default_rng(0).normal(size=(32, 6)))
    job = _job(
        tmp_path,
        f"""
version: 1
jobs:
  - name: dub
    source: {actor_clip}
    audio: {parity / "speech.wav"}
    output: "out/{{name}}.mp4"
    pose: {{track: nod.npy}}
    segments:
      - {{start: 0.4, pose: static}}
""",
    )
    renderer = JobRenderer(ModelBundle.from_dir(tiny_weights), options=RenderOptions(batch_size=4))
    build = renderer._plan_builder(job, 32)
    assert render_module.row_local_plan(32, build) is None
    calls = _encoded_images(renderer)
    produced = renderer.frames(job)
    frames, count = produced.images, produced.count
    assert count == 32 and len(list(frames)) == 32
    assert sum(calls) == 32 + 32  # the source's coefficient pass, then the render pass


def test_a_photo_is_encoded_once(tmp_path, parity, tiny_weights):
    Image.open(parity / "source.png").save(tmp_path / "face.png")
    job = _job(
        tmp_path,
        f"""
version: 1
jobs:
  - name: talk
    source: {{path: face.png, crop: none}}
    audio: {parity / "speech.wav"}
    output: "out/{{name}}.mp4"
""",
    )
    renderer = JobRenderer(ModelBundle.from_dir(tiny_weights), options=RenderOptions(batch_size=4))
    calls = _encoded_images(renderer)
    produced = renderer.frames(job)
    frames, count = produced.images, produced.count
    rendered = np.stack(list(frames))
    assert calls == [1] and count == 32
    # the source's coefficients from its kept latent are those of a separate encoder pass
    crop = np.asarray(Image.open(tmp_path / "face.png").convert("RGB").resize((64, 64), Image.BICUBIC))
    own = renderer.engine.source_coefficients()
    again = renderer.engine.extract_coefficients([crop])
    np.testing.assert_array_equal(own.pose, again.pose)
    np.testing.assert_array_equal(own.expression, again.expression)
    assert rendered.shape == (32, 256, 256, 3)


def test_video_source_tracks_only_the_frames_a_job_uses(actor_clip):
    full = VideoFaceSource(actor_clip, fps=25, size=64, crop="auto")
    part = VideoFaceSource(actor_clip, fps=25, size=64, crop="auto", max_frames=5)
    assert full.num_frames == 40 and part.total_frames == 40
    assert part.num_frames == 5 + TRACK_MARGIN < 40  # the used frames and the smoothing margin
    for k in range(5):
        np.testing.assert_array_equal(part.transforms[k].matrix, full.transforms[k].matrix)


def test_video_source_caches_are_bounded(actor_clip):
    source = VideoFaceSource(actor_clip, fps=25, size=64, crop="none", cache_bytes=4 * 256 * 256 * 3)
    for k in range(40):
        source.crop(k)
    assert len(source._cache) == 4
    np.testing.assert_array_equal(source.frame(39), source.frame(39))
    first = source.frame(0).copy()  # behind the cache: the decoder restarts
    assert len(source._cache) <= 4
    assert np.abs(first.astype(int) - source.frame(1).astype(int)).mean() > 0


def test_blend_into_matches_the_float64_blend_within_one_level():
    rng = np.random.default_rng(0)
    dst = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    src = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:300, :400]
    mask = np.clip(1.5 - 3 * np.hypot(yy / 300 - 0.5, xx / 400 - 0.5), 0, 1).astype(np.float32)
    blended = blend_into(dst, src, mask)
    m = mask.astype(np.float64)[..., None]
    expected = np.rint(src * m + dst * (1 - m))
    difference = np.abs(blended - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01  # rounding at .5 only
    np.testing.assert_array_equal(blended[mask == 0], dst[mask == 0])  # outside the mask: untouched
    np.testing.assert_array_equal(blended[mask == 1], src[mask == 1])
