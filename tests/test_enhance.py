"""Face enhancement (GFPGAN through spandrel): manifest, weights, the 2x face before paste-back,
fingerprints. Stand-in GFPGANv1.4 weights (random init, official layout) from conftest."""

from __future__ import annotations

import os
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_cli
from PIL import Image
from scipy.ndimage import binary_dilation

from edtalk_cli.audio import load_audio
from edtalk_cli.errors import WeightsError
from edtalk_cli.manifest import load_manifest
from edtalk_cli.manifest.problems import ManifestValidationError
from edtalk_cli.pipeline.enhance import FaceEnhancer, upscale_faces
from edtalk_cli.pipeline.options import RenderOptions
from edtalk_cli.pipeline.render import JobRenderer
from edtalk_cli.runner.batch import BatchRunner, RunOptions
from edtalk_cli.video import iter_video_frames, probe_mp4
from edtalk_cli.weights.bundle import ModelBundle
from edtalk_cli.weights.enhancer import import_spandrel, load_enhancer, read_enhancer_state_dict


@pytest.fixture(scope="module")
def media(tmp_path_factory, parity) -> Path:
    """A real photo with a face (scikit-image's astronaut) and 0.1 s of speech: one frame at 10 fps."""
    from skimage import data

    root = tmp_path_factory.mktemp("enhance_media")
    Image.fromarray(data.astronaut()).save(root / "astro.png")
    speech = load_audio(parity / "speech.wav")  # 16 kHz
    sf.write(root / "short.wav", speech[:1600], 16000)
    return root


@pytest.fixture(scope="module")
def weights_with_gfpgan(tmp_path_factory, tiny_weights, gfpgan_weights) -> Path:
    """The tiny 64 px model's weights directory, plus GFPGANv1.4.pth found there by default."""
    root = tmp_path_factory.mktemp("weights_gfpgan")
    for item in tiny_weights.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, root / item.name)
    os.link(gfpgan_weights, root / "GFPGANv1.4.pth")
    return root


def _manifest(directory: Path, media: Path, jobs: str) -> Path:
    path = directory / "enhance.yaml"
    path.write_text(
        f"version: 1\ndefaults: {{source: {media / 'astro.png'}, audio: {media / 'short.wav'}, fps: 10, "
        f'output: "out/{{name}}.mp4"}}\njobs:\n{jobs}'
    )
    return path


def _frames(path: Path) -> np.ndarray:
    return np.stack(list(iter_video_frames(path)))


@pytest.mark.slow
def test_render_with_enhance_restores_a_2x_face_before_paste_back(tmp_path, media, weights_with_gfpgan):
    """`edtalk render`: the enhanced job's face region differs from the plain render's, the rest of
    the photo does not; with paste_back off the output is the face given to paste-back: 128 px
    for the 64 px model."""
    manifest = _manifest(
        tmp_path,
        media,
        "  - name: plain\n"
        "  - name: enhanced\n    enhance: {model: gfpgan, strength: 1}\n"
        f"  - name: face\n    source: {{path: {media / 'astro.png'}, paste_back: false}}\n    enhance: {{}}\n",
    )
    result = run_cli(
        "render", str(manifest), "--weights", str(weights_with_gfpgan), "--device", "cpu", "-q", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    plain, enhanced = _frames(tmp_path / "out/plain.mp4"), _frames(tmp_path / "out/enhanced.mp4")
    assert plain.shape == enhanced.shape == (1, 512, 512, 3)
    photo = np.asarray(Image.open(media / "astro.png").convert("RGB")).astype(int)
    diff = np.abs(enhanced.astype(int) - plain).max(axis=-1)[0]  # (512, 512)
    face = np.abs(plain[0].astype(int) - photo).max(axis=-1) > 8  # where the generated face was pasted
    assert face.mean() > 0.02
    assert diff[face].mean() > 20  # the restored face differs from the plain one
    far = ~binary_dilation(face, iterations=8)  # 8 px clear of the pasted face
    assert far.mean() > 0.1
    assert diff[far].mean() < 1.0  # the rest is the same photo, up to codec noise (x264 CRF
    # sets the frame's quantiser from the whole frame, so its noise differs a little everywhere)
    to_photo = [np.abs(video[0].astype(int) - photo).max(axis=-1)[far].mean() for video in (plain, enhanced)]
    assert abs(to_photo[0] - to_photo[1]) < 0.2
    face_video = probe_mp4(tmp_path / "out/face.mp4")["video"]
    assert (face_video["width"], face_video["height"]) == (128, 128)  # 2 x the 64 px model


@pytest.mark.slow
def test_strength_blends_restored_and_upscaled_faces(weights_with_gfpgan):
    """strength 0 is the bicubic 2x upscale itself, 1 the GFPGAN output, 0.5 halfway between."""
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    network = load_enhancer(weights_with_gfpgan / "GFPGANv1.4.pth")
    up = upscale_faces(faces)
    assert up.shape == (1, 128, 128, 3)
    assert np.array_equal(FaceEnhancer(None, strength=0.0).enhance(faces), up)
    full = FaceEnhancer(network, strength=1.0).enhance(faces)  # the GFPGAN output, rounded
    half = FaceEnhancer(network, strength=0.5).enhance(faces)
    assert np.abs(full.astype(int) - up).mean() > 20
    # half = round((up + restored) / 2) and full = round(restored): within 0.5 + 0.25 of each other
    assert np.abs(half - (up.astype(float) + full) / 2).max() <= 0.75 + 1e-3


def test_strength_zero_is_the_plain_render_up_to_the_bicubic_round_trip(media, weights_with_gfpgan):
    """With strength 0 GFPGAN does not run: the 64 px face goes 64 -> 128 (bicubic, uint8) -> the
    paste-back. Against the plain render (64 -> paste-back) that round trip moves the pasted face
    pixels by about 1 level on average; everything outside the face stays bit-identical."""
    root = media / "strength0"
    root.mkdir(exist_ok=True)
    manifest = _manifest(root, media, "  - name: plain\n  - name: zero\n    enhance: {strength: 0}\n")
    jobs = {job.name: job for job in load_manifest(manifest).jobs}
    renderer = JobRenderer(ModelBundle.from_dir(weights_with_gfpgan), options=RenderOptions(batch_size=1))
    plain = np.stack(list(renderer.frames(jobs["plain"]).images)).astype(int)
    zero = np.stack(list(renderer.frames(jobs["zero"]).images)).astype(int)
    photo = np.asarray(Image.open(media / "astro.png").convert("RGB")).astype(int)
    face = np.abs(plain - photo).max(axis=-1) > 0  # where the plain render pasted its face
    face_zero = np.abs(zero - photo).max(axis=-1) > 0
    assert face.mean() > 0.02
    assert abs(face_zero.mean() - face.mean()) < 0.002  # the same paste region
    diff = np.abs(zero - plain).max(axis=-1)
    assert diff[face].mean() < 2.5
    assert np.percentile(diff[face], 99) <= 12


def test_bad_strength_and_missing_weights_are_named(tmp_path, media, tiny_weights):
    manifest = _manifest(
        tmp_path,
        media,
        "  - name: too_strong\n    enhance: {strength: 2}\n"
        "  - name: no_file\n    enhance: {weights: nowhere/GFPGANv1.4.pth}\n",
    )
    with pytest.raises(ManifestValidationError) as info:
        load_manifest(manifest)
    lines = [p.format() for p in info.value.problems]
    assert any(f"{manifest}:5:" in line and "enhance.strength" in line and "1" in line for line in lines), (
        lines
    )
    assert any("enhance.weights" in line and "nowhere/GFPGANv1.4.pth" in line for line in lines), lines

    # no enhance.weights and no GFPGANv1.4 in the weights directory: dry-run and render name both
    ok = _manifest(tmp_path, media, "  - name: default_lookup\n    enhance: {}\n")
    result = run_cli("render", str(ok), "--weights", str(tiny_weights), "--dry-run", cwd=tmp_path)
    assert result.returncode == 1
    text = " ".join(result.stdout.split() + result.stderr.split())
    assert "GFPGANv1.4.pth" in text and str(tiny_weights) in text and "enhance.weights" in text
    job = load_manifest(ok).jobs[0]
    with pytest.raises(WeightsError, match=r"GFPGANv1\.4\.safetensors nor GFPGANv1\.4\.pth"):
        BatchRunner(RunOptions(weights=tiny_weights, devices="cpu")).fingerprint(job)


def test_wrong_files_are_refused_naming_the_file(tmp_path, tiny_weights):
    edtalk = tiny_weights / "EDTalk.pt"
    with pytest.raises(WeightsError, match=rf"{edtalk}.*not a GFPGAN state dict.*'gen'"):
        load_enhancer(edtalk)
    random = tmp_path / "random.pth"
    torch.save({"params_ema": {"a.weight": torch.randn(3, 3)}}, random)
    with pytest.raises(WeightsError, match=rf"{random}.*not a GFPGAN state dict"):
        load_enhancer(random)
    # the GFPGAN keys spandrel detects, but tensors of the wrong shapes
    shapes = tmp_path / "shapes.pth"
    torch.save(
        {"toRGB.0.weight": torch.zeros(1), "stylegan_decoder.style_mlp.1.weight": torch.zeros(1)}, shapes
    )
    with pytest.raises(WeightsError, match=rf"{shapes}.*could not be loaded as GFPGAN"):
        load_enhancer(shapes)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))

    marker = ""


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    _Payload.marker = str(tmp_path / "pwned")
    evil = tmp_path / "GFPGANv1.4.pth"
    with evil.open("wb") as fh:
        pickle.dump({"params_ema": _Payload()}, fh, protocol=2)
    with pytest.raises(WeightsError, match="arbitrary pickled Python objects"):
        read_enhancer_state_dict(evil)
    assert not (tmp_path / "pwned").exists()


def test_safetensors_params_ema_and_bare_layouts_read_the_same(tmp_path, gfpgan_weights):
    from safetensors.torch import save_file

    official = read_enhancer_state_dict(gfpgan_weights)
    bare = tmp_path / "bare.pth"
    torch.save(official, bare)
    params = tmp_path / "params.pth"
    torch.save({"params": official}, params)
    converted = tmp_path / "GFPGANv1.4.safetensors"
    save_file({k: v.contiguous() for k, v in official.items()}, str(converted))
    for path in (bare, params, converted):
        other = read_enhancer_state_dict(path)
        assert other.keys() == official.keys()
        assert all(torch.equal(other[k], official[k]) for k in official)


def test_fingerprint_counts_enhancement_only_when_on(tmp_path, media, weights_with_gfpgan):
    manifest = _manifest(
        tmp_path,
        media,
        "  - name: plain\n  - name: half\n    enhance: {strength: 0.5}\n"
        "  - name: full\n    enhance: {strength: 1}\n",
    )
    jobs = {job.name: job for job in load_manifest(manifest).jobs}
    runner = BatchRunner(RunOptions(weights=weights_with_gfpgan, devices="cpu"))
    plain = runner.fingerprint(jobs["plain"])
    half, full = runner.fingerprint(jobs["half"]), runner.fingerprint(jobs["full"])
    assert "enhance" not in plain.settings and "enhance.weights" not in plain.inputs
    assert half.settings["enhance"] == {"model": "gfpgan", "weights": None, "strength": 0.5}
    assert half.inputs["enhance.weights"]["path"] == str(weights_with_gfpgan / "GFPGANv1.4.pth")
    assert len({plain.digest, half.digest, full.digest}) == 3
    # --enhance gives the jobs without their own the defaults: `plain` then equals `full`
    enhanced = BatchRunner(RunOptions(weights=weights_with_gfpgan, devices="cpu", enhance=True))
    assert enhanced.fingerprint(enhanced.job_for(jobs["plain"])).digest == full.digest
    assert enhanced.job_for(jobs["half"]).enhance == jobs["half"].enhance
    # other GFPGAN weights (same name, other content): another fingerprint
    other = tmp_path / "other_weights"
    shutil.copytree(weights_with_gfpgan, other, ignore=shutil.ignore_patterns("GFPGANv1.4.pth"))
    state = read_enhancer_state_dict(weights_with_gfpgan / "GFPGANv1.4.pth")
    state["toRGB.0.weight"] = state["toRGB.0.weight"] + 1
    torch.save({"params_ema": state}, other / "GFPGANv1.4.pth")
    moved = BatchRunner(RunOptions(weights=other, devices="cpu")).fingerprint(jobs["full"])
    assert moved.digest != full.digest


def test_spandrel_imports_without_torchvision_and_leaves_no_placeholder():
    spandrel = import_spandrel()
    assert hasattr(spandrel, "ModelLoader")
    try:
        import torchvision  # noqa: F401
    except Exception:
        from spandrel.architectures.RestoreFormer import tv_normalize

        assert "torchvision" not in sys.modules  # the placeholder lived only for the import
        with pytest.raises(RuntimeError, match="torchvision is not importable"):
            tv_normalize(torch.zeros(3, 2, 2), [0.5] * 3, [0.5] * 3)


def test_missing_spandrel_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)  # what Python does for an absent package
    with pytest.raises(WeightsError) as info:
        import_spandrel()
    assert "spandrel" in info.value.message
    assert "pip install --no-deps" in (info.value.hint or "") and "einops" in (info.value.hint or "")
