"""Dubbing on I420 planes: box colour conversions against ffmpeg's, the I420 writer, the source
bytes kept outside the pasted pixels, and a whole render against the RGB path (real footage,
real ffmpeg)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli

from edtalk_cli.manifest import load_manifest
from edtalk_cli.manifest.model import PasteBack
from edtalk_cli.pipeline.faces import VideoFaceSource, transform_box
from edtalk_cli.pipeline.paste import PASTE_ON_DEVICE_ENV, DubbingPaster
from edtalk_cli.pipeline.render import dubbing_on_planes
from edtalk_cli.video import iter_video_frames, probe_mp4, probe_video, write_mp4
from edtalk_cli.video._ffmpeg import run_ffmpeg
from edtalk_cli.video.align import in_box
from edtalk_cli.video.yuv import Colorimetry, i420_planes, to_rgb, write_rgb

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real"
PC_CLIP = REAL / "pose_source2.mp4"  # yuvj420p (pc), untagged matrix, 256 x 256
TV_CLIP = REAL / "mouth_source.mp4"  # yuv420p, untagged, 256 x 256


def _frames(path: Path, count: int, **kwargs) -> list[np.ndarray]:
    out = []
    for frame in iter_video_frames(path, **kwargs):
        if len(out) == count:
            break
        out.append(frame)
    return out


@pytest.mark.parametrize("clip", [PC_CLIP, TV_CLIP], ids=["yuvj420p-pc", "yuv420p-tv"])
def test_to_rgb_agrees_with_ffmpegs_accurate_decode_and_a_box_with_the_whole_frame(clip: Path) -> None:
    info = probe_video(clip)
    colorimetry = Colorimetry.of_video(info)
    assert colorimetry == Colorimetry("bt601", full_range=clip == PC_CLIP)  # untagged, < 720 lines
    planes = _frames(clip, 12, pix_fmt=info.pix_fmt)
    rgb = _frames(clip, 12)
    worst, means = 0, []
    for yuv, reference in zip(planes, rgb):
        mine = to_rgb(yuv, (0, 0, info.width, info.height), colorimetry)
        diff = np.abs(mine.astype(np.int16) - reference.astype(np.int16))
        worst, means = max(worst, int(diff.max())), [*means, float(diff.mean())]
        for box in [
            (0, 0, 64, 32),
            (info.width - 66, info.height - 40, info.width, info.height),
            (82, 60, 200, 190),
        ]:
            x0, y0, x1, y1 = box
            np.testing.assert_array_equal(to_rgb(yuv, box, colorimetry), mine[y0:y1, x0:x1])
    # measured: max 5 / 7 levels (swscale upsamples chroma bicubically, we bilinearly), mean 0.10 / 0.18
    assert worst <= 9 and np.mean(means) < 0.3, (worst, np.mean(means))


def test_colorimetry_of_tagged_untagged_and_unsupported_streams(tmp_path: Path) -> None:
    def clip(name: str, size: str, *params: str) -> Colorimetry | None:
        path = tmp_path / f"{name}.mp4"
        args = ["-f", "lavfi", "-i", f"testsrc=s={size}:d=0.12", *params, "-c:v", "libx264", str(path)]
        assert run_ffmpeg(args).returncode == 0
        return Colorimetry.of_video(probe_video(path))

    tagged = "setparams=range=tv:colorspace=bt709:color_primaries=bt709:color_trc=bt709"
    assert clip("hd709", "64x48", "-vf", f"{tagged},format=yuv420p") == Colorimetry(
        "bt709", False, ("bt709", "bt709", "bt709")
    )
    ntsc = "setparams=colorspace=smpte170m:color_primaries=smpte170m:color_trc=bt709,format=yuv420p"
    assert clip("ntsc", "64x48", "-vf", ntsc) == Colorimetry(
        "bt601", False, ("smpte170m", "smpte170m", "bt709")
    )
    assert clip("sd", "64x48", "-pix_fmt", "yuv420p") == Colorimetry("bt601")  # untagged, < 720 lines
    assert clip("hd", "1280x720", "-pix_fmt", "yuv420p") == Colorimetry("bt709")  # untagged, >= 720 lines
    assert clip("pc", "64x48", "-pix_fmt", "yuvj420p") == Colorimetry("bt601", full_range=True)
    assert clip("uhd2020", "64x48", "-vf", "setparams=colorspace=bt2020nc,format=yuv420p") is None
    assert clip("chroma444", "64x48", "-pix_fmt", "yuv444p") is None
    assert Colorimetry.of_stream("yuv420p", 49, 64) is None  # odd sizes take the RGB path
    assert Colorimetry("bt709", tags=("bt709", "unknown", "unknown")).output_tags() == {
        "range": "tv",
        "colorspace": "bt709",
    }


def test_write_rgb_writes_only_changed_pixels_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    planes = _frames(TV_CLIP, 1, pix_fmt="yuv420p")[0]
    colorimetry = Colorimetry("bt601")
    box = (40, 60, 200, 180)
    rgb = to_rgb(planes, box, colorimetry)
    changed = np.zeros(rgb.shape[:2], dtype=bool)
    out = planes.copy()
    write_rgb(out, box, rgb, changed, colorimetry)
    np.testing.assert_array_equal(out, planes)  # nothing changed: nothing written

    changed[:] = True  # the same colours written back: the source bytes up to rounding, clipping
    write_rgb(out, box, rgb, changed, colorimetry)  # and chroma's bilinear up / 2x2 mean down
    luma_diff, u_diff, v_diff = (
        np.abs(a.astype(np.int16) - b) for a, b in zip(i420_planes(out), i420_planes(planes))
    )
    assert (
        (luma_diff > 1).mean() < 1e-3 and u_diff.max() <= 3 and v_diff.max() <= 3
    )  # measured: U, V max 2, 3

    new = rgb.copy()
    changed = rng.random(rgb.shape[:2]) < 0.02
    new[changed] = 255 - new[changed]
    out = planes.copy()
    write_rgb(out, box, new, changed, colorimetry)
    luma_out, u_out, v_out = i420_planes(out)
    luma, u, v = i420_planes(planes)
    inside = np.zeros(luma.shape, dtype=bool)
    inside[60:180, 40:200] = changed
    np.testing.assert_array_equal(luma_out[~inside], luma[~inside])
    blocks = inside.reshape(luma.shape[0] // 2, 2, luma.shape[1] // 2, 2).any(axis=(1, 3))
    np.testing.assert_array_equal(u_out[~blocks], u[~blocks])
    np.testing.assert_array_equal(v_out[~blocks], v[~blocks])
    assert (luma_out[inside] != luma[inside]).mean() > 0.9


def test_i420_writer_hands_the_planes_to_the_encoder_unchanged(tmp_path: Path) -> None:
    colorimetry = Colorimetry("bt709", False, ("bt709", "bt709", "bt709"))
    frames = _frames(TV_CLIP, 8, pix_fmt="yuv420p")
    path = tmp_path / "planes.mp4"
    result = write_mp4(
        iter(frames), path, 25, REAL / "mouth_source.wav", n_frames=8, crf=0, colorimetry=colorimetry
    )
    assert (result.frames, result.width, result.height) == (8, 256, 256)
    back = _frames(path, 9, pix_fmt="yuv420p")
    assert len(back) == 8
    for sent, decoded in zip(frames, back):
        np.testing.assert_array_equal(decoded, sent)  # lossless x264: no conversion on the way
    header = run_ffmpeg(["-i", str(path)]).stderr.decode()
    assert "yuv420p(tv, bt709, progressive)" in header
    info = probe_mp4(path)
    assert info["video"]["pix_fmt"] == "yuv420p" and info["faststart"]
    assert abs(info["audio"]["duration_s"] - 8 / 25) < 0.03

    odd = np.zeros((49 * 3 // 2, 64), dtype=np.uint8)
    with pytest.raises(ValueError, match="even H and W"):
        write_mp4(iter([odd]), tmp_path / "odd.mp4", 25, colorimetry=colorimetry)
    with pytest.raises(ValueError, match=r"I420 frames must be uint8 arrays \(H \* 3 / 2, W\)"):
        write_mp4(iter([np.zeros((48, 64, 3), np.uint8)]), tmp_path / "rgb.mp4", 25, colorimetry=colorimetry)
    assert not list(tmp_path.glob("odd*")) and not list(tmp_path.glob("rgb*"))


@pytest.mark.parametrize("crop", ["auto", "box"])
def test_dubbing_paster_on_planes_keeps_the_source_bytes_and_matches_the_rgb_path(crop: str) -> None:
    frames = 6
    rgb_source = VideoFaceSource(PC_CLIP, fps=25, size=256, crop=crop, max_frames=frames)
    yuv_source = VideoFaceSource(PC_CLIP, fps=25, size=256, crop=crop, max_frames=frames, planes=True)
    colorimetry = yuv_source.colorimetry
    assert colorimetry == Colorimetry("bt601", full_range=True) and rgb_source.colorimetry is None
    rgb_paster = DubbingPaster(rgb_source, PasteBack(), 256)
    yuv_paster = DubbingPaster(yuv_source, PasteBack(), 256)
    tv = dataclasses.replace(colorimetry, full_range=False)  # the output's range
    for k in range(frames):
        crop_rgb = rgb_source.crop(k)
        crop_yuv = yuv_source.crop(k)
        assert np.abs(crop_rgb.astype(np.int16) - crop_yuv.astype(np.int16)).mean() < 0.3
        face = 255 - crop_yuv  # a face unlike the source's: every blended pixel changes
        out = yuv_paster.frame(k, face, crop_yuv)
        expected_rgb = rgb_paster.frame(k, face, crop_rgb)

        source = colorimetry.to_output(yuv_source.planes(k))  # the source's bytes in tv range
        transform = yuv_source.transforms[k]
        box = transform_box(transform)
        region = to_rgb(yuv_source.planes(k), box, colorimetry)
        pasted = yuv_paster.paster.paste(region, face, in_box(transform, box), reference=crop_yuv)
        x0, y0, x1, y1 = box
        changed = np.zeros((256, 256), dtype=bool)
        changed[y0:y1, x0:x1] = (pasted != region).any(axis=-1)
        written = np.abs(to_rgb(out, box, tv).astype(np.int16) - pasted.astype(np.int16))
        assert written[changed[y0:y1, x0:x1]].mean() < 1.5  # what was pasted is what was written
        luma_out, u_out, v_out = i420_planes(out)
        luma_src, u_src, v_src = i420_planes(source)
        same_luma = luma_out == luma_src
        assert same_luma[~changed].all()  # never written outside what the paste changed
        blocks = changed.reshape(128, 2, 128, 2).any(axis=(1, 3))
        assert (u_out == u_src)[~blocks].all() and (v_out == v_src)[~blocks].all()
        assert same_luma.mean() < 0.9  # the face was pasted
        # the pasted face against the RGB path's frame: chroma subsampling and rounding apart, equal
        diff = np.abs(to_rgb(out, (0, 0, 256, 256), tv).astype(np.int16) - expected_rgb.astype(np.int16))
        face_diff = diff[changed]
        assert face_diff.mean() < 2.0 and np.percentile(face_diff, 99) < 12, (k, face_diff.mean())
    assert yuv_paster.without_face == rgb_paster.without_face == 0


@pytest.mark.parametrize(
    ("crop", "options"),
    [("auto", PasteBack()), ("auto", PasteBack(region="mouth", color_match=True)), ("box", PasteBack())],
)
def test_planes_blended_on_the_device_in_a_batch_are_the_cpu_blend(crop: str, options: PasteBack) -> None:
    frames = 8
    source = VideoFaceSource(PC_CLIP, fps=25, size=256, crop=crop, max_frames=frames, planes=True)
    on_cpu = DubbingPaster(source, options, 256, on_device=False)
    on_device = DubbingPaster(source, options, 256, device="cpu", on_device=True)  # torch, in one batch
    crops = source.crops(range(frames))
    faces = np.ascontiguousarray(crops[:, ::-1])  # each face mirrored: unlike its source, aligned with it
    batch = list(on_device.frames(list(range(frames)), faces, crops))
    for k in range(frames):
        expected = on_cpu.frame(k, faces[k], crops[k])
        diff = np.abs(batch[k].astype(np.int16) - expected.astype(np.int16))
        # torch against OpenCV: 1 level at float rounding ties, on a few pixels of the face
        assert diff.max() <= 1 and (diff > 0).mean() < 0.001, (k, diff.max(), (diff > 0).mean())
        assert (
            batch[k] != source.colorimetry.to_output(source.planes(k))
        ).mean() > 0.02  # a face was blended
    assert on_device.without_face == on_cpu.without_face == 0


def test_the_i420_path_is_taken_by_dubbing_jobs_with_a_crop_wherever_they_blend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(
        "version: 1\njobs:\n"
        f"  - {{name: dub, source: {TV_CLIP}, audio: {REAL / 'mouth_source.wav'}}}\n"
        f"  - {{name: box, source: {{path: {TV_CLIP}, crop: box}}, audio: {REAL / 'mouth_source.wav'}}}\n"
        f"  - {{name: whole, source: {{path: {TV_CLIP}, crop: none}}, audio: {REAL / 'mouth_source.wav'}}}\n"
        f"  - {{name: faces, source: {{path: {TV_CLIP}, paste_back: false}}, audio: {REAL / 'mouth_source.wav'}}}\n"
        f"  - {{name: photo, source: {REAL / 'uncrop_face.jpg'}, audio: {REAL / 'mouth_source.wav'}}}\n"
    )
    jobs = {job.name: job for job in load_manifest(manifest).jobs}
    for blend in ("0", "1"):  # on the CPU or in torch on the device: the same frames to blend into
        monkeypatch.setenv(PASTE_ON_DEVICE_ENV, blend)
        eligible = {name: dubbing_on_planes(job) for name, job in jobs.items()}
        assert eligible == {"dub": True, "box": True, "whole": False, "faces": False, "photo": False}


def _voice(path: Path, seconds: float) -> None:
    audio, rate = sf.read(REAL / "mouth_source.wav")
    sf.write(path, audio[: round(seconds * rate)], rate)


@pytest.mark.slow
def test_dubbing_render_on_planes_matches_the_rgb_path(tmp_path: Path, tiny_weights: Path) -> None:
    from edtalk_cli.pipeline.options import RenderOptions
    from edtalk_cli.pipeline.render import JobRenderer
    from edtalk_cli.weights.bundle import ModelBundle

    frames = 20
    _voice(tmp_path / "voice.wav", frames / 25)
    (tmp_path / "dub.yaml").write_text(
        "version: 1\njobs:\n"
        f"  - name: dub\n    source: {{path: {PC_CLIP}, paste_back: {{region: mouth}}}}\n"
        "    audio: voice.wav\n    output: out/dub.mp4\n    encode: {crf: 0}\n"
    )
    run = run_cli("render", "dub.yaml", "--weights", str(tiny_weights), "--device", "cpu", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    planes_out = tmp_path / "out" / "dub.mp4"

    # the RGB path of the same job: its frames through the RGB writer, as render wrote them before
    job = load_manifest(tmp_path / "dub.yaml").jobs[0]
    renderer = JobRenderer(ModelBundle.from_dir(tiny_weights), options=RenderOptions(batch_size=1))
    produced = renderer.frames(job)
    assert produced.pixel_format == "rgb24" and produced.colorimetry is None
    rgb_out = tmp_path / "rgb.mp4"
    write_mp4(produced.images, rgb_out, 25, job.audio, n_frames=produced.count, crf=0)

    mine, theirs = probe_mp4(planes_out), probe_mp4(rgb_out)
    assert mine["video"]["pix_fmt"] == theirs["video"]["pix_fmt"] == "yuv420p"
    assert mine["faststart"] and theirs["faststart"]
    for key in ("frames", "duration_s", "start_s"):
        assert mine["video"][key] == theirs["video"][key], key
        assert mine["audio"][key] == theirs["audio"][key], key
    assert mine["video"]["frames"] == frames
    assert abs(mine["video"]["duration_s"] - mine["audio"]["duration_s"]) <= 1 / 25

    a = np.stack(_frames(planes_out, frames + 1)).astype(np.int16)
    b = np.stack(_frames(rgb_out, frames + 1)).astype(np.int16)
    source = np.stack(_frames(PC_CLIP, frames)).astype(np.int16)
    diff = np.abs(a - b).mean(axis=-1)
    # measured (crf 0, tiny random model): mean 0.68, p99 2.3 levels
    assert diff.mean() < 1.2 and np.percentile(diff, 99) < 6, (diff.mean(), np.percentile(diff, 99))
    assert np.abs(a - source).mean(axis=-1).max() > 30  # the mouth was replaced

    # away from the mouth the output carries the source's own bytes (lossless x264 at crf 0):
    # measured 85 % of the bytes on the I420 path, 45 % on the RGB path (its round trip through RGB)
    colorimetry = Colorimetry.of_video(probe_video(PC_CLIP))
    source_planes = [colorimetry.to_output(p) for p in _frames(PC_CLIP, frames, pix_fmt="yuvj420p")]
    kept = [(o == p).mean() for o, p in zip(_frames(planes_out, frames, pix_fmt="yuv420p"), source_planes)]
    assert min(kept) > 0.75, kept


def test_untagged_hd_frames_decode_to_rgb_with_the_matrix_the_i420_path_reads(tmp_path: Path) -> None:
    for height, matrix in ((720, "bt709"), (480, "bt601")):
        clip = tmp_path / f"untagged_{height}.mp4"
        run_ffmpeg(
            ["-y", "-f", "lavfi", "-i", f"testsrc2=size={height * 16 // 9 // 2 * 2}x{height}:rate=25",
             "-frames:v", "1", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-crf", "10", str(clip)]
        )  # fmt: skip
        info = probe_video(clip)
        colorimetry = Colorimetry.of_video(info)
        assert info.color_tags is None and colorimetry is not None and colorimetry.matrix == matrix
        planes = next(iter_video_frames(clip, pix_fmt="yuv420p"))
        ours = to_rgb(planes, (0, 0, info.width, info.height), colorimetry)
        rgb = next(iter_video_frames(clip))
        diff = np.abs(ours.astype(np.int16) - rgb.astype(np.int16))
        # one matrix on both sides: only chroma upsampling at testsrc2's hard colour edges differs
        # (bt601 read against bt709 written measured a mean of 8.9 levels at 1080p)
        assert diff.mean() < 0.6 and np.median(diff) == 0, (height, diff.mean())
