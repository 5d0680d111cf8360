"""Tests of the synthetic talking-face world: renderer, speech, clips, datasets and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
from scipy.ndimage import binary_dilation
from typer.testing import CliRunner

from edtalk_cli.commands.synth import app as synth_app
from edtalk_cli.errors import EdtalkError, ManifestError
from edtalk_cli.synthetic import (
    EMOTIONS,
    LANDMARK_GROUPS,
    MAX_JAW_STEP,
    MAX_LIP_STEP,
    ClipSpec,
    Expression,
    Identity,
    Mouth,
    Pose,
    Renderer,
    emotion_expression,
    load_factors,
    make_clip,
    read_index,
    synthesize,
    write_clip,
)

SIZE = 128


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(SIZE)


def _changed(a: np.ndarray, b: np.ndarray, tol: int = 0) -> np.ndarray:
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)) > tol).any(axis=-1)


def _grp(lms: np.ndarray, name: str) -> np.ndarray:
    lo, hi = LANDMARK_GROUPS[name]
    return lms[lo:hi]


# ----------------------------------------------------------------------------- renderer


def test_render_is_deterministic_and_identities_differ(renderer: Renderer) -> None:
    ident = Identity.from_seed(3)
    args = (Pose(yaw=12, pitch=-4, roll=3), Mouth(0.4, -0.3), emotion_expression("happy", 0.7))
    a = renderer.render(ident, *args)
    b = Renderer(SIZE).render(Identity.from_seed(3), *args)
    assert a.image.dtype == np.uint8 and a.image.shape == (SIZE, SIZE, 3)
    assert a.image.tobytes() == b.image.tobytes()
    assert np.array_equal(a.landmarks, b.landmarks)
    assert a.landmarks.shape == (68, 2) and a.landmarks.dtype == np.float32
    for k in a.masks:
        assert np.array_equal(a.masks[k], b.masks[k])
    others = [renderer.render(Identity.from_seed(s), *args).image for s in (4, 5, 6)]
    for o in others:
        assert np.abs(o.astype(int) - a.image).mean() > 8  # clearly another person/background
    assert Identity.from_seed(3) == ident and Identity.from_seed(4) != ident


def test_render_sizes_and_bad_size() -> None:
    for s in (64, 96, 256):
        f = Renderer(s).render(Identity.from_seed(1))
        assert f.image.shape == (s, s, 3)
        # the face is centred and scales with the image: nose tip near the centre column
        assert abs(f.landmarks[30, 0] - (s - 1) / 2) < 0.02 * s
    with pytest.raises(ValueError, match="even number of pixels"):
        Renderer(63)
    with pytest.raises(ValueError, match=r"\[64, 256\]"):
        Renderer(300)


@pytest.mark.parametrize("seed,pose", [(0, Pose()), (2, Pose(yaw=18, pitch=6)), (5, Pose(yaw=-25, roll=-8))])
def test_each_factor_changes_only_its_region(renderer: Renderer, seed: int, pose: Pose) -> None:
    ident = Identity.from_seed(seed)
    base_m, base_e = Mouth(0.1, 0.0), Expression()
    base = renderer.render(ident, pose, base_m, base_e)
    cases = {
        "mouth": [(Mouth(0.9, 0.0), base_e), (Mouth(0.3, -1.0), base_e), (Mouth(0.2, 1.0), base_e)],
        "mouth_corners": [(base_m, Expression(smile=1.0)), (base_m, Expression(smile=-1.0, smirk=1.0))],
        "brows": [
            (base_m, Expression(brow_raise=1.0)),
            (base_m, Expression(brow_furrow=1.0, brow_raise=-0.5)),
        ],
        "eyes": [
            (base_m, Expression(eye_open=1.0)),
            (base_m, Expression(blink=1.0)),
            (base_m, Expression(eye_open=-1.0)),
        ],
        "nose": [(base_m, Expression(wrinkle=1.0))],
    }
    for region, variants in cases.items():
        mask_name = "mouth" if region == "mouth_corners" else region
        for m, e in variants:
            other = renderer.render(ident, pose, m, e)
            diff = _changed(base.image, other.image)
            allowed = binary_dilation(base.masks[mask_name] | other.masks[mask_name], iterations=2)
            assert diff.sum() > 10, f"{region} factor {m, e} changed nothing"
            outside = diff & ~allowed
            assert outside.sum() == 0, (
                f"{region} factor {m, e} changed {outside.sum()} pixels outside its region"
            )


def test_pose_moves_everything_like_a_rotation(renderer: Renderer) -> None:
    ident = Identity.from_seed(7)
    front = renderer.render(ident, Pose())
    turned = renderer.render(ident, Pose(yaw=20))
    head = binary_dilation(front.masks["face"], iterations=2)
    assert _changed(front.image, turned.image)[head].mean() > 0.5

    def eye_centres(lms: np.ndarray) -> np.ndarray:
        return np.stack([_grp(lms, "eye_left").mean(0), _grp(lms, "eye_right").mean(0)])

    dist = {}
    nose_x = {}
    for yaw in (-40, -20, 0, 20, 40):
        lms = renderer.render(ident, Pose(yaw=yaw)).landmarks
        c = eye_centres(lms)
        dist[yaw] = float(np.linalg.norm(c[1] - c[0]))
        # nose tip relative to the midpoint of the eyes: moves with the yaw direction
        nose_x[yaw] = float(lms[30, 0] - c.mean(0)[0])
    # yaw > 0 turns the face to the image right: the protruding nose tip moves right
    assert nose_x[-40] < nose_x[-20] < nose_x[0] - 1 < nose_x[20] - 2 < nose_x[40] - 3
    assert abs(nose_x[0]) < 0.5
    # foreshortening: the projected eye distance shrinks with |yaw|, symmetrically
    assert dist[0] > dist[20] > dist[40]
    assert dist[0] > dist[-20] > dist[-40]
    assert abs(dist[20] - dist[-20]) < 0.03 * dist[0]
    assert dist[40] / dist[0] == pytest.approx(np.cos(np.deg2rad(40)), abs=0.08)
    # roll tilts the eye line by the roll angle (counter-clockwise in the image)
    c = eye_centres(renderer.render(ident, Pose(roll=12)).landmarks)
    angle = np.degrees(np.arctan2(-(c[1, 1] - c[0, 1]), c[1, 0] - c[0, 0]))
    assert angle == pytest.approx(12, abs=1.0)
    # pitch: the protruding nose tip rises towards the eyes when the chin goes up, and the
    # eye-to-mouth distance is foreshortened both ways
    nose_y, eye_mouth = {}, {}
    for pitch in (-20, 0, 20):
        lms = renderer.render(ident, Pose(pitch=pitch)).landmarks
        eye_y = eye_centres(lms)[:, 1].mean()
        nose_y[pitch] = float(lms[30, 1] - eye_y)
        eye_mouth[pitch] = float(_grp(lms, "mouth_outer")[:, 1].mean() - eye_y)
    assert nose_y[20] < nose_y[0] - 2 and nose_y[0] < nose_y[-20]
    assert eye_mouth[0] > eye_mouth[20] and eye_mouth[0] > eye_mouth[-20]


def test_landmarks_lie_in_their_masks(renderer: Renderer) -> None:
    for seed, pose, mouth, ex in [
        (1, Pose(), Mouth(0.0, 0.0), Expression()),
        (2, Pose(yaw=15, pitch=-5), Mouth(0.8, 0.2), emotion_expression("surprised")),
        (3, Pose(yaw=-10, roll=6), Mouth(0.3, -0.9), emotion_expression("angry")),
    ]:
        f = renderer.render(Identity.from_seed(seed), pose, mouth, ex)
        for group, mask in (
            ("mouth_outer", "mouth"),
            ("mouth_inner", "mouth"),
            ("eye_left", "eyes"),
            ("eye_right", "eyes"),
            ("brow_left", "brows"),
            ("brow_right", "brows"),
        ):
            ys, xs = np.nonzero(f.masks[mask])
            pts = _grp(f.landmarks, group)
            assert xs.min() - 1.5 <= pts[:, 0].min() and pts[:, 0].max() <= xs.max() + 1.5, (seed, group)
            assert ys.min() - 1.5 <= pts[:, 1].min() and pts[:, 1].max() <= ys.max() + 1.5, (seed, group)
        # jaw opening separates the inner lip landmarks
        lm = f.landmarks
        gap = lm[66, 1] - lm[62, 1]
        assert gap == pytest.approx(0, abs=0.6) if mouth.jaw == 0 else gap > 1.5


def test_emotions_are_distinct_points(renderer: Renderer) -> None:
    ident = Identity.from_seed(11)
    imgs = {e: renderer.render(ident, expression=emotion_expression(e)).image.astype(int) for e in EMOTIONS}
    for i, a in enumerate(EMOTIONS):
        for b in EMOTIONS[i + 1 :]:
            assert _changed(imgs[a], imgs[b]).sum() > 20, (a, b)
    half = renderer.render(ident, expression=emotion_expression("happy", 0.5)).image.astype(int)
    # intensity scales the expression: half-happy lies between neutral and happy
    d_full = np.abs(imgs["happy"] - imgs["neutral"]).sum()
    d_half = np.abs(half - imgs["neutral"]).sum()
    assert 0.2 * d_full < d_half < 0.8 * d_full
    with pytest.raises(ValueError, match="unknown emotion"):
        emotion_expression("bored")


# ----------------------------------------------------------------------------- speech


def test_speech_is_deterministic_and_sized() -> None:
    a = synthesize(7, 50)
    b = synthesize(7, 50)
    c = synthesize(8, 50)
    assert a.audio.dtype == np.float32 and a.audio.shape == (50 * 640,)
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.jaw, b.jaw) and np.array_equal(a.lip, b.lip)
    assert not np.array_equal(a.audio, c.audio)
    assert a.jaw.shape == a.lip.shape == a.silent.shape == (50,)
    assert np.abs(a.audio).max() <= 1.0 and np.abs(a.audio).max() > 0.1


def _mel_features(audio: np.ndarray, n_frames: int) -> np.ndarray:
    try:
        from edtalk_cli.audio import mel_windows, melspectrogram

        win = mel_windows(melspectrogram(audio), n_frames)  # (T, 80, 16)
    except ImportError:  # pragma: no cover - fallback if the audio module is absent
        import librosa

        mel = librosa.feature.melspectrogram(y=audio, sr=16000, n_fft=800, hop_length=200, n_mels=80)
        mel = np.log(mel + 1e-5).T
        starts = (80 * (np.arange(n_frames) - 2) / 25).astype(int)
        idx = np.clip(starts[:, None] + np.arange(16), 0, len(mel) - 1)
        win = mel[idx].transpose(0, 2, 1)
    return win.reshape(n_frames, -1)


def test_audio_predicts_jaw_opening_on_held_out_clips() -> None:
    clips = [synthesize(100 + k, 100) for k in range(10)]
    feats = [_mel_features(c.audio, c.n_frames) for c in clips]
    xtr = np.concatenate(feats[:7])
    ytr = np.concatenate([c.jaw for c in clips[:7]])
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    a = (xtr - mu) / sd
    w = np.linalg.solve(a.T @ a + 100.0 * np.eye(a.shape[1]), a.T @ (ytr - ytr.mean()))
    for f, c in zip(feats[7:], clips[7:], strict=True):
        pred = ((f - mu) / sd) @ w
        r = np.corrcoef(pred, c.jaw)[0, 1]
        assert r > 0.8, f"held-out jaw correlation {r:.3f}"


def test_mouth_closes_in_silence_and_moves_smoothly() -> None:
    n_deep = 0
    for seed in range(30):
        sp = synthesize(seed, 100)
        tf = (np.arange(100) + 0.5) / 25
        deep = sp.silent.copy()
        for label, a, b in sp.phones:
            if label != "_":
                deep &= ~((tf > a - 0.1) & (tf < b + 0.1))
        n_deep += int(deep.sum())
        assert np.all(sp.jaw[deep] < 0.05), seed
        # silent frames are quiet: RMS far below the speaking frames
        frames = sp.audio.reshape(100, 640)
        rms = np.sqrt((frames**2).mean(1))
        if deep.any():
            assert rms[deep].max() < 0.05 * rms[~sp.silent].max()
        assert np.abs(np.diff(sp.jaw)).max() <= MAX_JAW_STEP
        assert np.abs(np.diff(sp.lip)).max() <= MAX_LIP_STEP
        assert sp.jaw.max() > 0.3 and sp.lip.min() < sp.lip.max() - 0.3  # it does talk
    assert n_deep > 100


# ----------------------------------------------------------------------------- clips and datasets


def _read_video(path) -> tuple[dict, list[np.ndarray]]:
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    return meta, [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen]


def test_write_clip_files(tmp_path) -> None:
    spec = ClipSpec(seed=3, identity_seed=9, n_frames=30, size=64, emotion="segments")
    out = tmp_path / "clip"
    info = write_clip(spec, out)
    assert info["frames"] == 30 and info["identity"] == "synth-9"
    meta, frames = _read_video(out / "video.mp4")
    assert meta["fps"] == 25 and len(frames) == 30 and frames[0].shape == (64, 64, 3)
    audio, sr = sf.read(out / "audio.wav", dtype="float32")
    assert sr == 16000 and audio.shape == (30 * 640,)
    fac = load_factors(out / "factors.npz")
    assert fac["pose"].shape == (30, 6) and fac["mouth"].shape == (30, 2)
    assert fac["expression"].shape == (30, 7) and fac["landmarks"].shape == (30, 68, 2)
    assert fac["emotion"].shape == (30,) and fac["mask_boxes"].shape == (30, 5, 4)
    assert list(fac["emotion_names"]) == list(EMOTIONS)
    # the factors are those of make_clip, and the video shows their renders (near-lossless)
    clip = make_clip(spec)
    assert np.array_equal(fac["mouth"], clip.mouth) and np.array_equal(fac["pose"], clip.pose)
    np.testing.assert_allclose(audio, clip.speech.audio, atol=1.0 / 32767 + 1e-6)
    r = Renderer(64)
    for i in (0, 17, 29):
        ref = r.render(clip.identity, *clip.factors(i))
        mse = np.mean((frames[i].astype(float) - ref.image) ** 2)
        assert 10 * np.log10(255**2 / mse) > 30
        assert np.array_equal(fac["landmarks"][i], ref.landmarks)
    # smooth trajectories: no frame-to-frame jumps in pose or expression
    assert np.abs(np.diff(fac["pose"][:, 0])).max() < 3.0
    assert np.abs(np.diff(fac["expression"][:, :6], axis=0)).max() < 0.35
    # writing over an existing clip is refused, and nothing is left behind
    with pytest.raises(EdtalkError, match="already exists"):
        write_clip(spec, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]


def test_emotion_modes_and_blinks() -> None:
    fixed = make_clip(ClipSpec(seed=1, identity_seed=1, n_frames=125, emotion="sad", intensity=0.8))
    assert set(fixed.emotion.tolist()) == {EMOTIONS.index("sad")}
    assert np.allclose(fixed.intensity, 0.8)
    seg = make_clip(ClipSpec(seed=4, identity_seed=1, n_frames=250, emotion="segments"))
    assert len(set(seg.emotion.tolist())) >= 2
    blink = fixed.expression[:, 6]
    assert blink.max() > 0.9 and (blink < 0.05).mean() > 0.7  # short blinks, eyes mostly open
    with pytest.raises(EdtalkError, match="not known"):
        make_clip(replace(fixed.spec, emotion="bored"))


def test_cli_dataset_has_disjoint_identities(tmp_path) -> None:
    runner = CliRunner()
    root = tmp_path / "ds"
    args = [
        "dataset",
        str(root),
        "--clips",
        "4",
        "--test-clips",
        "2",
        "--clips-per-identity",
        "2",
        "--workers",
        "2",
    ]
    res = runner.invoke(synth_app, [*args, "--seconds", "0.4", "--size", "64", "--seed", "5"])
    assert res.exit_code == 0, res.output
    assert "4 train clips (2 identities)" in res.output and "2 test clips (1 identities)" in res.output
    index = read_index(root)
    train_ids = {c.identity for c in index.split("train")}
    test_ids = {c.identity for c in index.split("test")}
    assert len(train_ids) == 2 and len(test_ids) == 1 and not train_ids & test_ids
    for c in index.clips:
        fac = load_factors(root / c.path / "factors.npz")
        assert c.identity == f"synth-{int(fac['identity_seed'])}"
        assert c.frames == 10 and fac["pose"].shape == (10, 6)
    assert json.loads((root / "index.json").read_text())["format"] == "edtalk-dataset"
    # refuses to overwrite; bad options name the option and exit non-zero
    res = runner.invoke(synth_app, [*args, "--seconds", "0.4", "--size", "64"])
    assert res.exit_code == 1 and "already exists" in res.output
    res = runner.invoke(synth_app, ["dataset", str(tmp_path / "x"), "--clips", "1", "--size", "65"])
    assert res.exit_code == 1 and "--size 65" in res.output
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_cli_clip_and_index_errors(tmp_path) -> None:
    res = CliRunner().invoke(
        synth_app, ["clip", str(tmp_path / "c"), "--seconds", "0.2", "--size", "64", "--emotion", "happy"]
    )
    assert res.exit_code == 0, res.output
    assert "5 frames" in res.output and "emotion happy" in res.output
    fac = load_factors(tmp_path / "c" / "factors.npz")
    assert set(fac["emotion"].tolist()) == {EMOTIONS.index("happy")}
    with pytest.raises(ManifestError, match=r"index\.json' not found"):
        read_index(tmp_path)
    (tmp_path / "index.json").write_text(
        json.dumps(
            {
                "format": "edtalk-dataset",
                "version": 1,
                "clips": [
                    {"split": "train", "name": "c", "path": "c", "frames": 5, "identity": "x"},
                    {"split": "train", "name": "gone", "path": "gone", "frames": 5, "identity": "y"},
                ],
            }
        )
    )
    with pytest.raises(ManifestError, match=r"clips\[1\] \(gone\) has no"):
        read_index(tmp_path)


def test_cli_sheet_writes_the_contact_sheet_whole_with_default_permissions(tmp_path) -> None:
    """`synth sheet` writes exactly the contact sheet's pixels, with umask permissions, leaving no
    temporary file; a sheet that cannot be written leaves the old file as it was."""
    import os
    import stat

    from PIL import Image

    from edtalk_cli.synthetic.preview import contact_sheet

    out = tmp_path / "sheets" / "sheet.png"
    mask = os.umask(0o027)
    try:
        res = CliRunner().invoke(synth_app, ["sheet", str(out), "--size", "64", "--seed", "3"])
    finally:
        os.umask(mask)
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.asarray(Image.open(out)), contact_sheet(64, 3))
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert sorted(p.name for p in out.parent.iterdir()) == ["sheet.png"]
    before = out.read_bytes()
    res = CliRunner().invoke(synth_app, ["sheet", str(out), "--size", "63"])
    assert res.exit_code == 1 and out.read_bytes() == before


# ----------------------------------------------------------------------------- judges and metrics


@pytest.fixture(scope="module")
def judge():
    from edtalk_cli.synthetic.judges import judge_frames, report

    return judge_frames, report()


def test_judges_reach_documented_accuracy_on_held_out_renders(judge) -> None:
    from edtalk_cli.synthetic.judges.train import sample_factors

    judge_frames, rep = judge
    rng = np.random.default_rng(2024)
    n = 64
    f = sample_factors(rng, n)
    r = Renderer(128)
    frames = [
        r.render(
            Identity.from_seed(2 * int(rng.integers(1 << 30)) + 1),  # odd seeds: the held-out stream
            Pose.from_vector(f["pose"][i]),
            Mouth.from_vector(f["mouth"][i]),
            Expression.from_vector(f["expression"][i]),
        )
        for i in range(n)
    ]
    imgs = np.stack([fr.image for fr in frames])
    gt_lms = np.stack([fr.landmarks for fr in frames])
    pred = judge_frames(imgs)
    fdoc = rep["factor_judge"]["metrics"]
    edoc = rep["emotion_judge"]["metrics"]
    err = np.linalg.norm(pred["landmarks"] - gt_lms, axis=-1).mean()
    assert err <= fdoc["landmark_error_px128_mean"] * 1.3 + 0.3
    assert np.abs(pred["pose"][:, 0] - f["pose"][:, 0]).mean() <= fdoc["yaw_mae_deg"] * 1.3 + 0.5
    assert np.corrcoef(pred["mouth"][:, 0], f["mouth"][:, 0])[0, 1] >= edoc["jaw_corr"] - 0.05
    # 64 frames: allow about two binomial standard deviations below the documented accuracy
    assert (pred["emotion"] == f["emotion"]).mean() >= edoc["emotion_accuracy"] - 0.12
    # the same frame at 256 px (the model's output size) is judged alike
    big = judge_frames(
        Renderer(256).render(Identity.from_seed(5), Pose.from_vector(f["pose"][0])).image[None]
    )
    small = judge_frames(
        Renderer(128).render(Identity.from_seed(5), Pose.from_vector(f["pose"][0])).image[None]
    )
    assert np.linalg.norm((big["landmarks"][0] + 0.5) / 2 - 0.5 - small["landmarks"][0], axis=-1).mean() < 1.0
    assert big["emotion"][0] == small["emotion"][0]


@pytest.mark.slow
def test_metrics_detect_wrong_outputs(judge) -> None:
    from scipy.ndimage import gaussian_filter

    from edtalk_cli.synthetic import metrics as M

    judge_frames, _ = judge
    a = make_clip(ClipSpec(seed=36, identity_seed=1001, n_frames=40, emotion="happy", intensity=1.0))
    b = make_clip(ClipSpec(seed=32, identity_seed=1003, n_frames=40, emotion="sad", intensity=1.0))
    ident = a.identity
    gt = M.cross_reenactment_target(ident, a.mouth, a.pose, a.expression)
    gt_img = np.stack([f.image for f in gt])
    masks = {k: np.stack([f.masks[k] for f in gt]) for k in ("mouth", "eyes", "brows")}

    def render(mouth, pose, expr):
        return np.stack([f.image for f in M.cross_reenactment_target(ident, mouth, pose, expr)])

    # a good output: the target, slightly blurred and noisy (as a generator's output would be)
    rng = np.random.default_rng(0)
    good = gaussian_filter(gt_img.astype(float), (0, 0.8, 0.8, 0)) + rng.normal(0, 3, gt_img.shape)
    good = np.clip(good, 0, 255).astype(np.uint8)
    frozen = render(
        np.repeat(a.mouth[[int(np.argmax(a.mouth[:, 0]))]], 40, 0), a.pose, a.expression
    )  # stuck open
    swapped_pose = render(a.mouth, b.pose, a.expression)
    wrong_emotion = render(a.mouth, a.pose, b.expression)
    swapped_mouth = render(b.mouth, a.pose, a.expression)

    # PSNR / SSIM: perfect for the target, high for the good output, lower for a swapped
    # driver; a frozen mouth damages the mouth region and leaves the eyes intact
    ok = M.region_scores(gt_img, gt_img, masks)
    assert ok["full"]["psnr"] == float("inf") and ok["full"]["ssim"] == pytest.approx(1.0)
    good_s = M.region_scores(good, gt_img, masks)
    bad = M.region_scores(swapped_pose, gt_img, masks)
    assert (
        bad["full"]["psnr"] < good_s["full"]["psnr"] - 5
        and bad["full"]["ssim"] < good_s["full"]["ssim"] - 0.1
    )
    fr = M.region_scores(frozen, gt_img, masks)
    assert fr["mouth"]["psnr"] < good_s["mouth"]["psnr"] - 3 and fr["eyes"]["psnr"] == float("inf")
    assert fr["mouth"]["ssim"] < fr["eyes"]["ssim"]

    # landmark distances between judged output and judged target (as with one detector in
    # the paper): small for the good output, large for a frozen mouth or a swapped pose
    p_gt, p_good = judge_frames(gt_img), judge_frames(good)
    p_frozen, p_swap = judge_frames(frozen), judge_frames(swapped_pose)
    m_good = M.m_lmd(p_good["landmarks"], p_gt["landmarks"])
    assert M.m_lmd(p_frozen["landmarks"], p_gt["landmarks"]) > 2 * m_good
    assert M.f_lmd(p_swap["landmarks"], p_gt["landmarks"]) > 3 * M.f_lmd(
        p_good["landmarks"], p_gt["landmarks"]
    )
    # lip sync: the regressed jaw follows the ground truth, not for a frozen mouth
    sync_good = M.lip_sync_correlation(a.mouth[:, 0], p_good["mouth"][:, 0])
    assert sync_good > 0.9
    assert M.lip_sync_correlation(a.mouth[:, 0], p_frozen["mouth"][:, 0]) < sync_good - 0.35
    # emotion accuracy via the classifier
    assert M.emotion_accuracy(p_good["emotion"], a.emotion) >= 0.8
    assert M.emotion_accuracy(judge_frames(wrong_emotion)["emotion"], a.emotion) <= 0.2
    # leakage: changing only the mouth driver moves the mouth, not pose or expression
    leak = M.leakage(p_good, judge_frames(swapped_mouth))
    assert leak["pose"] < 0.3 and leak["expression"] < 0.3
    assert leak["mouth"] > 2 * max(leak["pose"], leak["expression"])
    leak_pose = M.leakage(p_good, p_swap)
    assert leak_pose["pose"] > 0.5 and leak_pose["pose"] > 2 * leak_pose["expression"]
