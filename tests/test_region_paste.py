"""Region paste-back (mouth / lower / face masks, colour matching) and the no-face passthrough of dubbing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli

from edtalk_cli.manifest.loader import load_manifest, manifest_json_schema
from edtalk_cli.manifest.model import PasteBack
from edtalk_cli.manifest.problems import ManifestValidationError
from edtalk_cli.pipeline.paste import FacePaster
from edtalk_cli.video import iter_video_frames, probe_mp4, write_mp4
from edtalk_cli.video.align import official_template, official_transform
from edtalk_cli.video.masks import (
    DEFAULT_FEATHER,
    MOUTH_POINTS,
    REGION_MARGIN,
    feather_in_crop_pixels,
    match_color,
    region_mask,
)

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real"
FPS = 25
# codec noise: a decoded re-encode of a decoded clip at the default crf 18 (measured: mean 0.3, 99.9th pct 5)
NOISE_MEAN = 1.5
NOISE_P999 = 10.0


def _distance_to_hull(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Euclidean distance (H, W) of every pixel centre to the convex hull of ``points`` (N, 2), rasterised."""
    from scipy.ndimage import distance_transform_edt
    from skimage.morphology import convex_hull_image

    seeds = np.zeros(shape, dtype=bool)
    xy = np.round(points).astype(int)
    seeds[np.clip(xy[:, 1], 0, shape[0] - 1), np.clip(xy[:, 0], 0, shape[1] - 1)] = True
    return distance_transform_edt(~convex_hull_image(seeds))


# ----------------------------------------------------------------------------------- masks


def test_mouth_mask_is_one_on_the_lips_ramps_over_the_feather_and_is_zero_far_away() -> None:
    size, feather = 256, 12.8
    lm = official_template(size)  # a frontal face's 68 landmarks in crop pixels
    mask = region_mask("mouth", size, feather, lm)
    assert mask.dtype == np.float32 and mask.shape == (size, size)
    assert mask.min() == 0.0 and mask.max() == 1.0
    lips = np.round(lm[48:60]).astype(int)
    assert (mask[lips[:, 1], lips[:, 0]] == 1).all()
    centre = np.round(lm[48:60].mean(axis=0)).astype(int)
    assert mask[centre[1], centre[0]] == 1
    eyes = np.round(lm[36:48]).astype(int)
    assert (mask[eyes[:, 1], eyes[:, 0]] == 0).all()

    distance = _distance_to_hull(lm[list(MOUTH_POINTS)], (size, size))
    margin = REGION_MARGIN * size
    soft = (mask > 0) & (mask < 1)
    assert soft.sum() > 1000  # a real band, not a step
    # intermediate values only in the feather band [margin, margin + feather] (1.5 px rasterisation slack)
    assert distance[soft].min() >= margin - 1.5 and distance[soft].max() <= margin + feather + 1.5
    assert (mask[distance > margin + feather + 1.5] == 0).all()
    assert (mask[distance < margin - 1.5] == 1).all()
    # the ramp falls with the distance and has no step (smoothstep slope <= 1.5 / feather per px)
    band = soft & (distance > margin + 1) & (distance < margin + feather - 1)
    order = np.argsort(distance[band])
    values = mask[band][order]
    assert np.corrcoef(distance[band][order], values)[0, 1] < -0.95
    step = max(np.abs(np.diff(mask, axis=0)).max(), np.abs(np.diff(mask, axis=1)).max())
    assert step < 1.5 / feather + 0.03


def test_lower_mask_covers_jaw_and_mouth_but_not_eyes_and_face_mask_is_todays_ellipse() -> None:
    size = 256
    lm = official_template(size)
    lower = region_mask("lower", size, 10.0, lm)
    mouth = region_mask("mouth", size, 10.0, lm)
    for i in (*range(48, 60), 8, 33):
        x, y = np.round(lm[i]).astype(int)
        assert lower[y, x] == 1
    for i in range(36, 48):
        x, y = np.round(lm[i]).astype(int)
        assert lower[y, x] == 0
    assert (lower >= mouth - 1e-6).mean() > 0.99 and lower.sum() > 1.5 * mouth.sum()
    from edtalk_cli.video.crop import feather_mask

    assert np.array_equal(region_mask("face", size, 0.1 * size), feather_mask(size, 0.1))
    with pytest.raises(ValueError, match="landmarks"):
        region_mask("mouth", size, 10.0)


def test_feather_units_fraction_of_the_crop_or_frame_pixels() -> None:
    assert feather_in_crop_pixels(256, region="mouth") == pytest.approx(DEFAULT_FEATHER["mouth"] * 256)
    assert feather_in_crop_pixels(512, fraction=0.1) == pytest.approx(51.2)
    # 12 output-frame px on a face shown at half the crop's scale (2 crop px per frame px) -> 24 crop px
    assert feather_in_crop_pixels(256, frame_px=12, scale=2.0) == pytest.approx(24.0)
    # a face enhanced to 2x: the mask is built at its size, with the landmarks scaled to it
    paster = FacePaster(PasteBack(region="mouth", feather=0.05), 256)
    t = official_transform(official_template(256), (256, 256), 256)
    small = paster.mask(256, t, official_template(256))
    big = paster.mask(512, t, official_template(256))
    assert big.shape == (512, 512)
    assert abs(big.mean() - small.mean()) < 0.01  # the same region, twice the resolution


# ------------------------------------------------------------------------------- paste-back


def _placed_face(frame_shape: tuple[int, int]) -> tuple[np.ndarray, object]:
    """Template landmarks rotated 8 degrees, scaled 1.3x and moved into a frame, and their transform."""
    lm = official_template(256)
    angle = np.deg2rad(8)
    rot = 1.3 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (lm - 128) @ rot.T + np.array([300.0, 190.0])
    return points, official_transform(points, frame_shape, 256)


def test_region_paste_keeps_every_pixel_outside_the_mask_bit_identical() -> None:
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    face = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    points, t = _placed_face(frame.shape[:2])
    paster = FacePaster(PasteBack(region="mouth", feather_px=6.0), 256)
    out = paster.paste(frame, face, t, landmarks=paster.crop_landmarks(t, points))
    # the region in frame pixels: the hull of lips + chin grown by margin and feather (frame px) + 2 px warp slack
    reach = REGION_MARGIN * 256 / t.scale + 6.0 + 2.0
    distance = _distance_to_hull(points[list(MOUTH_POINTS)], frame.shape[:2])
    outside = distance > reach
    assert outside.mean() > 0.9
    assert np.array_equal(out[outside], frame[outside])
    changed = np.any(out != frame, axis=2)
    assert changed[distance < 1].mean() > 0.95  # the lips were replaced
    assert changed.sum() < (distance <= reach).sum()


def test_colour_match_moves_the_region_to_the_sources_colour() -> None:
    rng = np.random.default_rng(5)
    base = np.clip(rng.normal(150, 25, (256, 256, 3)), 0, 255)
    reference = base.astype(np.uint8)
    tinted = np.clip(base * [0.8, 1.05, 0.9] + [-10, 25, 5], 0, 255).astype(np.uint8)  # a colour cast
    lm = official_template(256)
    mask = region_mask("lower", 256, 12.0, lm)
    matched = match_color(tinted, reference, mask)
    inside = mask == 1
    ref_means = reference[inside].mean(axis=0)
    assert np.abs(tinted[inside].mean(axis=0) - ref_means).max() > 10  # the cast is there before
    assert np.abs(matched[inside].mean(axis=0) - ref_means).max() < 1.5  # and gone after
    lab = [
        cv2.cvtColor(im.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[inside] for im in (matched, reference)
    ]
    assert np.abs(lab[0].std(axis=0) - lab[1].std(axis=0)).max() < 1.0  # the spread, matched in CIELAB

    # through the paste: the pasted region has the target frame's channel means
    frame = np.zeros((256, 256, 3), np.uint8)
    frame[:] = reference
    t = official_transform(lm, frame.shape[:2], 256)
    paster = FacePaster(PasteBack(region="lower", color_match=True), 256)
    out = paster.paste(frame, tinted, t, landmarks=lm, reference=reference)
    plain = FacePaster(PasteBack(region="lower"), 256).paste(frame, tinted, t, landmarks=lm)
    core = region_mask("lower", 256, 0.0, lm) == 1
    assert np.abs(out[core].mean(axis=0) - reference[core].mean(axis=0)).max() < 1.5
    assert np.abs(plain[core].mean(axis=0) - reference[core].mean(axis=0)).max() > 10


# --------------------------------------------------------------------------------- manifest


def _manifest(tmp_path: Path, source: str) -> Path:
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "face.png")
    sf.write(tmp_path / "voice.wav", np.zeros(1600, np.float32), 16000)
    path = tmp_path / "m.yaml"
    path.write_text(f"version: 1\njobs:\n  - name: a\n    source: {source}\n    audio: voice.wav\n")
    return path


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("face.png", (True, PasteBack())),
        ("{path: face.png, paste_back: false}", (False, PasteBack())),
        ("{path: face.png, paste_back: true}", (True, PasteBack())),
        (
            "{path: face.png, paste_back: {region: mouth, feather: 12px, color_match: true}}",
            (True, PasteBack(region="mouth", feather_px=12.0, color_match=True)),
        ),
        (
            "{path: face.png, paste_back: {region: lower, feather: 0.08}}",
            (True, PasteBack(region="lower", feather=0.08)),
        ),
    ],
)
def test_paste_back_forms(tmp_path: Path, source: str, expected: tuple[bool, PasteBack]) -> None:
    job = load_manifest(_manifest(tmp_path, source)).jobs[0]
    assert (job.source.paste_back, job.source.paste_options) == expected


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ("{region: nose}", "jobs[0].source.paste_back.region", "face, lower, mouth"),
        ("{feather: 3}", "jobs[0].source.paste_back.feather", "'12px'"),
        ("{feather: 12pt}", "jobs[0].source.paste_back.feather", "0 to 0.5"),
        ("{colour_match: true}", "jobs[0].source.paste_back.colour_match", "color_match"),
        ("sometimes", "jobs[0].source.paste_back", "true, false or a mapping"),
    ],
)
def test_bad_paste_back_names_the_field_and_the_allowed_values(
    tmp_path: Path, value: str, field: str, words: str
) -> None:
    with pytest.raises(ManifestValidationError) as info:
        load_manifest(_manifest(tmp_path, f"{{path: face.png, paste_back: {value}}}"))
    text = str(info.value)
    assert field in text and words in text and "m.yaml:4:" in text


def test_region_needing_landmarks_refuses_the_box_crop(tmp_path: Path) -> None:
    with pytest.raises(ManifestValidationError, match="crop: box tracks boxes only"):
        load_manifest(_manifest(tmp_path, "{path: face.png, crop: box, paste_back: {region: mouth}}"))


def test_schema_accepts_what_the_loader_accepts() -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_json_schema())

    def ok(source: object) -> bool:
        manifest = {"version": 1, "jobs": [{"name": "a", "source": source, "audio": "voice.wav"}]}
        return not list(validator.iter_errors(manifest))

    assert ok({"path": "f.png", "paste_back": False})
    assert ok({"path": "f.png", "paste_back": {"region": "mouth", "feather": "12px", "color_match": True}})
    assert ok({"path": "f.png", "crop": "box", "paste_back": {"region": "face", "feather": 0.1}})
    assert not ok({"path": "f.png", "paste_back": {"region": "nose"}})
    assert not ok({"path": "f.png", "paste_back": {"feather": 0.7}})
    assert not ok({"path": "f.png", "paste_back": {"feather": "12pt"}})
    assert not ok({"path": "f.png", "paste_back": "yes please"})
    assert not ok({"path": "f.png", "crop": "box", "paste_back": {"region": "mouth"}})


# ------------------------------------------------------------------------- real footage


def _canvas_clip(path: Path, frames: int, black: tuple[int, ...] = ()) -> list[np.ndarray]:
    """The real 256x256 talking head of pose_source2.mp4 on a 640x360 gradient canvas, moving
    3 px right per frame and bobbing up to 9 px; frames in ``black`` are all black."""
    h, w = 360, 640
    y, x = np.mgrid[0:h, 0:w]
    canvas = np.repeat((40 + 0.2 * x + 0.1 * y).astype(np.uint8)[..., None], 3, axis=2)
    out = []
    for k, face in enumerate(iter_video_frames(REAL / "pose_source2.mp4", fps=FPS)):
        if k >= frames:
            break
        frame = canvas.copy()
        x0, y0 = 120 + 3 * k, 50 + k % 10
        frame[y0 : y0 + 256, x0 : x0 + 256] = face
        out.append(np.zeros_like(frame) if k in black else frame)
    write_mp4(iter(out), path, FPS)
    return out


def _voice(path: Path, seconds: float) -> None:
    audio, sr = sf.read(REAL / "mouth_source.wav")
    sf.write(path, audio[: round(seconds * sr)], sr)


def _codec_noise(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=-1)
    return float(diff.mean()), float(np.percentile(diff, 99.9))


@pytest.mark.slow
def test_dubbing_real_footage_replaces_only_the_mouth(tmp_path: Path, standin_checkpoints) -> None:
    from edtalk_cli.pipeline.options import RenderOptions
    from edtalk_cli.pipeline.render import JobRenderer
    from edtalk_cli.video.landmarks import LandmarkDetector
    from edtalk_cli.weights.bundle import ModelBundle

    frames = 25  # 1 s: the face moves 72 px and bobs through 2.5 cycles
    _canvas_clip(tmp_path / "actor.mp4", frames)
    _voice(tmp_path / "voice.wav", frames / FPS)
    manifest = tmp_path / "dub.yaml"
    manifest.write_text(
        "version: 1\njobs:\n  - name: dub\n    source: {path: actor.mp4, paste_back: {region: mouth}}\n"
        "    audio: voice.wav\n    output: out/dub.mp4\n"
    )
    job = load_manifest(manifest).jobs[0]
    bundle = ModelBundle.from_dir(standin_checkpoints["edtalk"].parent)
    result = JobRenderer(bundle, options=RenderOptions(batch_size=4)).render(job)
    assert result.frames == frames and result.frames_without_face == 0

    source = list(iter_video_frames(tmp_path / "actor.mp4"))  # decoded, as the renderer saw it
    output = list(iter_video_frames(result.output))
    assert len(source) == len(output) == frames
    detector = LandmarkDetector("dlib")
    outside_diffs, lips_diffs = [], []
    for src, out in zip(source, output):
        face = detector.largest(src)
        assert face is not None  # the face is found on every frame
        lm = face.landmarks
        # the official crop's scale: crop px per frame px, from the same landmarks
        scale = official_transform(lm, src.shape[:2], 256).scale
        reach = (REGION_MARGIN + DEFAULT_FEATHER["mouth"]) * 256 / scale + 4.0  # + 4 px for landmark jitter
        distance = _distance_to_hull(lm[list(MOUTH_POINTS)], src.shape[:2])
        diff = np.abs(out.astype(np.int16) - src.astype(np.int16)).mean(axis=-1)
        outside_diffs.append(diff[distance > reach])
        lips_diffs.append(diff[distance == 0])
    outside = np.concatenate(outside_diffs)
    assert outside.mean() < NOISE_MEAN and np.percentile(outside, 99.9) < NOISE_P999
    assert np.concatenate(lips_diffs).mean() > 15  # the mouth region does change

    info = probe_mp4(result.output)
    video, audio = info["video"], info["audio"]
    assert abs(video["start_s"] - audio["start_s"]) <= 1 / FPS
    assert abs(video["duration_s"] - audio["duration_s"]) <= 1 / FPS
    assert abs(video["duration_s"] - frames / FPS) <= 1 / FPS


@pytest.mark.slow
def test_frames_without_a_face_pass_through_and_are_counted(tmp_path: Path, tiny_weights: Path) -> None:
    frames, black = 32, (10, 11, 12, 13, 14)
    _canvas_clip(tmp_path / "actor.mp4", frames, black=black)
    _voice(tmp_path / "voice.wav", frames / FPS)
    manifest = tmp_path / "dub.yaml"
    manifest.write_text(
        "version: 1\njobs:\n  - name: dub\n    source: actor.mp4\n    audio: voice.wav\n    output: out/dub.mp4\n"
    )
    run = run_cli(
        "render", "dub.yaml", "--weights", str(tiny_weights), "--device", "cpu", "--report-csv", "r.csv",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "dub: 5 of 32 frames had no face and are the source frames unchanged" in " ".join(
        (run.stdout + run.stderr).split()
    )
    with open(tmp_path / "r.csv") as fh:
        row = next(csv.DictReader(fh))
    assert row["frames_without_face"] == "5" and row["frames"] == "32"

    source = list(iter_video_frames(tmp_path / "actor.mp4"))
    output = list(iter_video_frames(tmp_path / "out" / "dub.mp4"))
    for k in range(frames):
        mean, p999 = _codec_noise(output[k], source[k])
        if k in black:  # the decoded source frame as is: no patch
            assert mean < NOISE_MEAN and p999 < NOISE_P999, (k, mean, p999)
            assert output[k].max() < 20
        else:  # the face was pasted
            y0, x0 = 50 + k % 10, 120 + 3 * k
            region = (slice(y0 + 60, y0 + 200), slice(x0 + 60, x0 + 200))
            assert _codec_noise(output[k][region], source[k][region])[0] > 5, k

    run = run_cli(
        "render", "dub.yaml", "--weights", str(tiny_weights), "--device", "cpu", "--log-json", "--force",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    done = [e for e in events if e["event"] == "job_done"]
    assert len(done) == 1 and done[0]["frames_without_face"] == 5


def test_photo_source_with_the_mouth_region_changes_only_the_mouth(
    tmp_path: Path, tiny_weights: Path
) -> None:
    from PIL import Image
    from skimage import data

    from edtalk_cli.pipeline.options import RenderOptions
    from edtalk_cli.pipeline.render import JobRenderer
    from edtalk_cli.video.landmarks import LandmarkDetector
    from edtalk_cli.weights.bundle import ModelBundle

    photo = data.astronaut()
    Image.fromarray(photo).save(tmp_path / "astronaut.png")
    _voice(tmp_path / "voice.wav", 0.5)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "version: 1\njobs:\n  - name: a\n    source: {path: astronaut.png, paste_back: {region: mouth, feather: 4px}}\n"
        "    audio: voice.wav\n"
    )
    job = load_manifest(manifest).jobs[0]
    renderer = JobRenderer(ModelBundle.from_dir(tiny_weights), options=RenderOptions(batch_size=4))
    produced = renderer.frames(job, (0, 4))
    frames, count = produced.images, produced.count
    frames = list(frames)
    assert count == len(frames) == 4
    lm = LandmarkDetector("dlib").largest(photo).landmarks
    scale = official_transform(lm, photo.shape[:2], 64).scale  # the tiny model's crop is 64 px
    # margin + 2 crop px (hull rasterisation, bilinear warp) in frame px, + the feather
    reach = (REGION_MARGIN * 64 + 2.0) / scale + 4.0
    distance = _distance_to_hull(lm[list(MOUTH_POINTS)], photo.shape[:2])
    for frame in frames:
        assert np.array_equal(frame[distance > reach], photo[distance > reach])
        assert np.abs(frame[distance == 0].astype(int) - photo[distance == 0]).mean() > 5
