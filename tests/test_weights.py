"""Checkpoint I/O: official .pt files, safetensors, the weights directory, Hub installs, `edtalk weights`."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from edtalk_cli.commands import weights as weights_cmd
from edtalk_cli.errors import WeightsError
from edtalk_cli.model import Audio2Lip, EDTalkGenerator, LipPoseGenerator, ModelConfig
from edtalk_cli.weights import (
    OFFICIAL_EMOTIONS,
    OFFICIAL_FILES,
    WeightsDir,
    convert_to_safetensors,
    download_official,
    load_model,
    load_official_emotions,
    read_checkpoint,
    resolve_weights_dir,
)

CLASSES = {"edtalk": EDTalkGenerator, "edtalk_lip_pose": LipPoseGenerator, "audio2lip": Audio2Lip}
TOP_KEYS = {"edtalk": "gen", "edtalk_lip_pose": "gen", "audio2lip": "audio2lip"}
# parameter counts of the official models (EDTALK_SPEC.md section 2.1)
OFFICIAL_PARAMS = {"edtalk": 64_228_397, "edtalk_lip_pose": 46_173_091, "audio2lip": 2_822_932}
SMALL = ModelConfig(
    size=64, style_dim=64, channel_max=64, channel_base=1024, eem_hidden=16, audio_widths=(8, 8, 16, 16, 32)
)
# a second small configuration whose widths are not all saturated at channel_max
ODD = ModelConfig(
    size=128,
    style_dim=48,
    lip_dim=8,
    pose_dim=4,
    exp_dim=5,
    channel_max=96,
    channel_base=2048,
    eem_hidden=12,
    audio_widths=(4, 8, 12, 16, 24),
)
UNREACHABLE = "http://127.0.0.1:9"  # discard port: the connection is refused at once
HAPPY = [2.2530, -2.5690, -1.7017, -3.2733, 0.8803, 5.2870, 1.0596, -1.4816, 1.3691, -1.7866]


def _small_state(kind: str, config: ModelConfig = SMALL, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return CLASSES[kind](config).state_dict()


def _save_official_layout(path: Path, kind: str, sd: dict[str, torch.Tensor], **extra: object) -> Path:
    torch.save({TOP_KEYS[kind]: sd, **extra}, path)
    return path


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b) or set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def _message(exc: pytest.ExceptionInfo[WeightsError]) -> str:
    return f"{exc.value.message}\n{exc.value.hint or ''}"


# --------------------------------------------------------------------------- official layout


@pytest.mark.parametrize("kind", ["edtalk", "edtalk_lip_pose", "audio2lip"])
def test_official_file_loads_strict_into_right_class(kind: str, standin_checkpoints: dict[str, Path]) -> None:
    path = standin_checkpoints[kind]
    model, config = load_model(path, kind)
    assert type(model) is CLASSES[kind]
    assert config == ModelConfig()
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[kind]
    file_sd = torch.load(path, map_location="cpu", weights_only=True)[TOP_KEYS[kind]]
    _assert_same_tensors(model.state_dict(), file_sd)


def test_recognised_by_content_not_name(standin_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    weird = shutil.copyfile(standin_checkpoints["edtalk"], tmp_path / "weird.pt")
    misleading = shutil.copyfile(standin_checkpoints["audio2lip"], tmp_path / "EDTalk.pt")
    kind, sd, config = read_checkpoint(weird)
    assert kind == "edtalk" and len(sd) == 298 and config == ModelConfig()
    model, _ = load_model(misleading)
    assert type(model) is Audio2Lip
    lip_pose = shutil.copyfile(standin_checkpoints["edtalk_lip_pose"], tmp_path / "x.bin")
    assert read_checkpoint(lip_pose).kind == "edtalk_lip_pose"


def test_extra_top_level_entries_load_with_weights_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sd = _small_state("edtalk")
    dis = {"convs.0.0.weight": torch.randn(4, 3, 1, 1)}
    optim = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))], lr=2e-3).state_dict()
    args = argparse.Namespace(size=64, lr=0.002, exp_path="exps/", lambda_vgg=1.0, resume=None)
    path = _save_official_layout(
        tmp_path / "EDTalk.pt", "edtalk", sd, dis=dis, g_optim=optim, d_optim=optim, args=args
    )

    calls: list[dict] = []
    real_load = torch.load

    def recording_load(*a, **kw):
        calls.append(kw)
        return real_load(*a, **kw)

    monkeypatch.setattr(torch, "load", recording_load)
    model, config = load_model(path, "edtalk")
    assert calls and all(kw.get("weights_only") is True for kw in calls)
    assert config.size == 64 and config.style_dim == 64 and config.eem_hidden == 16
    _assert_same_tensors(model.state_dict(), sd)


class _Custom:
    """A class outside the weights-only allow-list."""

    def __init__(self) -> None:
        self.value = 3


class _Payload:
    """Unpickling this would write a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('executed')",))


def test_pickled_objects_are_refused_and_never_run(tmp_path: Path) -> None:
    sd = _small_state("audio2lip")
    custom = _save_official_layout(tmp_path / "custom.pt", "audio2lip", sd, extra=_Custom())
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(custom)
    text = _message(exc)
    assert "custom.pt" in text and "arbitrary pickled Python objects" in text and "_Custom" in text
    assert "edtalk weights convert" in text

    marker = tmp_path / "marker.txt"
    evil = _save_official_layout(tmp_path / "evil.pt", "audio2lip", sd, payload=_Payload(marker))
    with pytest.raises(WeightsError) as exc:
        load_model(evil)
    assert "evil.pt" in _message(exc) and "arbitrary pickled" in _message(exc)
    assert not marker.exists()


# --------------------------------------------------------------------------- errors


def test_missing_file_and_missing_model_in_dir(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as exc:
        load_model(tmp_path / "nope.pt")
    text = _message(exc)
    assert "nope.pt" in text and "does not exist" in text and "edtalk weights download" in text

    with pytest.raises(WeightsError) as exc:
        load_model(tmp_path, "audio2lip")
    text = _message(exc)
    assert "Audio2Lip.pt" in text and "Audio2Lip.safetensors" in text and str(tmp_path) in text
    assert "edtalk weights download" in text and "huggingface.co/tanshuai0219/EDTalk" in text
    assert "EDTALK_WEIGHTS" in text  # says where weights are looked for


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_corrupt_files(
    damage: str, suffix: str, standin_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    source = standin_checkpoints["audio2lip"]
    if suffix == ".safetensors":
        source = convert_to_safetensors(source, tmp_path / "src")
    data = source.read_bytes()
    bad = tmp_path / f"Audio2Lip{suffix}"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        bad.write_bytes(random.Random(7).randbytes(4096))
    else:
        bad.write_bytes(b"")
    with pytest.raises(WeightsError) as exc:
        load_model(bad, "audio2lip")
    text = _message(exc)
    assert str(bad) in text and "corrupt" in text and "download" in text


def test_wrong_model_names_both(standin_checkpoints: dict[str, Path]) -> None:
    with pytest.raises(WeightsError) as exc:
        load_model(standin_checkpoints["audio2lip"], "edtalk")
    text = _message(exc)
    assert "Audio2Lip.pt holds the Audio2Lip model" in text
    assert "EDTalk full model (EDTalk.pt) is expected" in text


def test_mismatched_keys_are_listed(tmp_path: Path) -> None:
    sd = _small_state("edtalk")
    del sd["fc.2.bias"]
    sd["extra.weight"] = torch.zeros(3)
    sd["lip_fc.0.weight"] = torch.zeros(64, 63)
    path = _save_official_layout(tmp_path / "bad.pt", "edtalk", sd)
    with pytest.raises(WeightsError) as exc:
        load_model(path, "edtalk")
    text = _message(exc)
    assert "bad.pt" in text
    assert "1 missing key(s), 1 unexpected key(s), 1 shape mismatch(es)" in text
    assert "fc.2.bias" in text and "extra.weight" in text
    assert "lip_fc.0.weight: file (64, 63) vs model (64, 64)" in text


def test_many_missing_keys_are_capped(tmp_path: Path) -> None:
    sd = _small_state("audio2lip")
    gone = [k for k in sd if k.startswith("audio_encoder.1") or k.startswith("audio_encoder.2")][:15]
    for key in gone:
        del sd[key]
    path = _save_official_layout(tmp_path / "a2l.pt", "audio2lip", sd)
    with pytest.raises(WeightsError) as exc:
        load_model(path)
    text = _message(exc)
    assert "15 missing key(s)" in text and "... and 5 more" in text
    assert sum(key in text for key in gone) == 10


def test_not_an_edtalk_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pt"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(2, 3, 3, 3)}}, path)
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(path)
    assert "resnet.pt is not an EDTalk checkpoint" in _message(exc) and "'state_dict'" in _message(exc)


# --------------------------------------------------------------------------- config inference


@pytest.mark.parametrize("config", [SMALL, ODD], ids=["small", "odd"])
@pytest.mark.parametrize("kind", ["edtalk", "edtalk_lip_pose", "audio2lip"])
def test_small_model_config_inferred_from_shapes(kind: str, config: ModelConfig, tmp_path: Path) -> None:
    sd = _small_state(kind, config, seed=3)
    path = _save_official_layout(tmp_path / "trained.pt", kind, sd)
    model, got = load_model(path)
    assert type(model) is CLASSES[kind]
    _assert_same_tensors(model.state_dict(), sd)
    if kind == "audio2lip":
        assert got.audio_widths == config.audio_widths and got.lip_dim == config.lip_dim
    else:
        fields = ["size", "style_dim", "lip_dim", "pose_dim", "channel_base", "channel_max"]
        if kind == "edtalk":
            fields += ["exp_dim", "eem_hidden"]
        assert {f: getattr(got, f) for f in fields} == {f: getattr(config, f) for f in fields}


def test_small_model_output_survives_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(5)
    original = Audio2Lip(SMALL).eval()
    path = _save_official_layout(tmp_path / "a.pt", "audio2lip", original.state_dict())
    loaded, _ = load_model(convert_to_safetensors(path))
    mel = torch.randn(4, 1, 80, 16)
    with torch.no_grad():
        assert torch.equal(original(mel), loaded(mel))
    assert loaded(mel).shape == (4, 20)


# --------------------------------------------------------------------------- safetensors


def test_convert_round_trip(standin_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    src = standin_checkpoints["audio2lip"]
    out = convert_to_safetensors(src, tmp_path / "out")
    assert out == tmp_path / "out" / "Audio2Lip.safetensors"
    assert sorted(p.name for p in out.parent.iterdir()) == ["Audio2Lip.json", "Audio2Lip.safetensors"]

    original = torch.load(src, map_location="cpu", weights_only=True)["audio2lip"]
    _assert_same_tensors(load_file(out), original)  # buffers (BN stats, int64 counters) included
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["kind"] == "audio2lip" and meta["source"] == "Audio2Lip.pt"
    assert meta["config"] == ModelConfig().to_dict()
    assert meta["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()

    model, config = load_model(out, "audio2lip")
    assert config == ModelConfig()
    _assert_same_tensors(model.state_dict(), original)


def test_convert_small_generator_keeps_buffers(tmp_path: Path) -> None:
    sd = _small_state("edtalk", SMALL, seed=1)
    src = _save_official_layout(tmp_path / "mine.pt", "edtalk", sd)
    out = convert_to_safetensors(src)
    assert out == tmp_path / "mine.safetensors"
    kernels = [k for k in load_file(out) if k.endswith(".kernel")]
    assert len(kernels) == 2 * 4 + 3 * 4  # 4 encoder ResBlocks x 2 blurs; 4 levels x (conv, rgb, flow)
    model, config = load_model(out)
    _assert_same_tensors(model.state_dict(), sd)
    assert json.loads((tmp_path / "mine.json").read_text())["config"] == config.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.json", "mine.pt", "mine.safetensors"]


def test_json_config_wins_and_safetensors_is_preferred(tmp_path: Path) -> None:
    sd = _small_state("audio2lip")
    _save_official_layout(tmp_path / "Audio2Lip.pt", "audio2lip", sd)
    assert WeightsDir(tmp_path).path_for("audio2lip") == tmp_path / "Audio2Lip.pt"
    out = convert_to_safetensors(tmp_path / "Audio2Lip.pt")
    sidecar = out.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["config"]["size"] = 128  # a field the Audio2Lip tensors cannot tell
    sidecar.write_text(json.dumps(meta))

    wdir = WeightsDir(tmp_path)
    assert wdir.path_for("audio2lip") == out
    assert wdir.available() == {"audio2lip": out} and wdir.missing() == ["edtalk", "edtalk_lip_pose"]
    model, config = load_model(tmp_path, "audio2lip")  # the directory: picks Audio2Lip.safetensors
    assert isinstance(model, Audio2Lip)
    assert config.size == 128 and config.audio_widths == SMALL.audio_widths
    assert read_checkpoint(tmp_path / "Audio2Lip.pt").config.size == 256

    sidecar.unlink()  # without the sidecar the safetensors header still holds the config
    assert read_checkpoint(out).config.audio_widths == SMALL.audio_widths
    bare = tmp_path / "bare.safetensors"  # no header metadata, no sidecar: inferred from shapes
    save_file({k: v.contiguous() for k, v in sd.items()}, str(bare))
    kind, _, config = read_checkpoint(bare)
    assert kind == "audio2lip" and config.audio_widths == SMALL.audio_widths


def test_sidecar_problems(tmp_path: Path) -> None:
    src = _save_official_layout(tmp_path / "A.pt", "audio2lip", _small_state("audio2lip"))
    out = convert_to_safetensors(src)
    sidecar = out.with_suffix(".json")
    good = sidecar.read_text()

    sidecar.write_text(good.replace('"audio2lip"', '"edtalk"'))
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(out)
    assert "A.json says A.safetensors holds the EDTalk full model" in _message(exc)

    sidecar.write_text("{not json")
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(out)
    assert "A.json" in _message(exc) and "not valid JSON" in _message(exc)

    sidecar.write_text(good)
    data = bytearray(out.read_bytes())
    data[-5] ^= 0xFF  # flip a bit in the tensor data
    out.write_bytes(bytes(data))
    assert read_checkpoint(out).kind == "audio2lip"  # still parses
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(out, verify=True)
    assert "corrupt" in _message(exc) and "SHA-256" in _message(exc)


# --------------------------------------------------------------------------- weights directory


def test_weights_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("EDTALK_WEIGHTS", raising=False)
    assert resolve_weights_dir(None) == tmp_path / "xdg" / "edtalk" / "weights"
    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path / "env"))
    assert resolve_weights_dir(None) == tmp_path / "env"
    assert resolve_weights_dir(tmp_path / "cli") == tmp_path / "cli"
    assert resolve_weights_dir(str(tmp_path / "cli2")) == tmp_path / "cli2"


def _write_presets(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    values = {}
    for i, name in enumerate(OFFICIAL_EMOTIONS):
        arr = (np.asarray(HAPPY, dtype=np.float32) * (i + 1)).reshape(1, 10)
        np.save(folder / f"{name}.npy", arr)
        values[name] = arr[0]
    return values


def test_emotion_presets(tmp_path: Path) -> None:
    assert load_official_emotions(tmp_path) == {}
    values = _write_presets(tmp_path / "predefined_exp_weights")
    got = load_official_emotions(tmp_path)
    assert list(got) == sorted(OFFICIAL_EMOTIONS)
    for name, arr in got.items():
        assert arr.shape == (10,) and arr.dtype == np.float32
        np.testing.assert_array_equal(arr, values[name])
    assert got["angry"][5] == pytest.approx(5.2870)

    np.save(tmp_path / "predefined_exp_weights" / "sleepy.npy", np.zeros((1, 9), np.float32))
    with pytest.raises(WeightsError) as exc:
        load_official_emotions(tmp_path)
    assert "sleepy.npy" in _message(exc) and "(1, 9)" in _message(exc) and "(1, 10)" in _message(exc)

    (tmp_path / "predefined_exp_weights" / "sleepy.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(WeightsError) as exc:
        load_official_emotions(tmp_path)
    assert "sleepy.npy" in _message(exc) and "corrupt" in _message(exc)


# --------------------------------------------------------------------------- hub


def test_download_without_network_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    target = tmp_path / "weights"
    start = time.monotonic()
    with pytest.raises(WeightsError) as exc:
        download_official(target, endpoint=UNREACHABLE, timeout=3)
    assert time.monotonic() - start < 20
    text = _message(exc)
    assert "could not be reached" in text and "not in the local Hugging Face cache" in text
    assert "https://huggingface.co/tanshuai0219/EDTalk/tree/main/ckpts" in text
    for name in ("EDTalk.pt", "EDTalk_lip_pose.pt", "Audio2Lip.pt"):
        assert str(target / name) in text
    assert (
        f"{target}/predefined_exp_weights/{{angry,contempt,disgusted,fear,happy,neutral,sad,surprised}}.npy"
        in text
    )
    assert not target.exists()  # no empty directory left behind


def _fake_hf_cache(hub: Path, files: dict[str, Path]) -> Path:
    """The Hugging Face cache layout: refs/main -> snapshots/<rev>/ckpts/... (links into blobs)."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / "models--tanshuai0219--EDTalk"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    for remote, source in files.items():
        blob = repo / "blobs" / hashlib.sha256(remote.encode()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.symlink_to(source)
        link = repo / "snapshots" / revision / remote
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    return repo


def test_download_installs_from_local_hf_cache(
    standin_checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    presets = _write_presets(tmp_path / "presets")
    files = {f"ckpts/{p.name}": p for p in standin_checkpoints.values()}
    files |= {f"ckpts/predefined_exp_weights/{n}.npy": tmp_path / "presets" / f"{n}.npy" for n in presets}
    _fake_hf_cache(tmp_path / "hub", files)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # -> $HF_HOME/hub

    target = tmp_path / "weights"
    installed = download_official(target, endpoint=UNREACHABLE, timeout=3)
    assert sorted(installed) == sorted(target / f.local for f in OFFICIAL_FILES)
    for kind, source in standin_checkpoints.items():
        assert (target / source.name).read_bytes() == source.read_bytes(), kind
    assert WeightsDir(target).missing() == []
    got = load_official_emotions(target)
    assert sorted(got) == sorted(OFFICIAL_EMOTIONS)
    np.testing.assert_array_equal(got["happy"], presets["happy"])
    assert not [p for p in target.rglob("*") if p.name.endswith(".tmp")]


def test_download_rejects_wrong_or_damaged_cached_files(
    standin_checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged = tmp_path / "damaged.npy"
    damaged.write_bytes(b"not an array")
    _fake_hf_cache(
        tmp_path / "hub",
        {
            "ckpts/EDTalk.pt": standin_checkpoints["audio2lip"],
            "ckpts/predefined_exp_weights/sad.npy": damaged,
        },
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    wanted = [f for f in OFFICIAL_FILES if f.local in ("EDTalk.pt", "predefined_exp_weights/sad.npy")]
    target = tmp_path / "weights"
    with pytest.raises(WeightsError) as exc:
        download_official(target, endpoint=UNREACHABLE, timeout=3, files=wanted)
    text = _message(exc)
    assert "ckpts/EDTalk.pt failed verification" in text and "holds the Audio2Lip model" in text
    assert "sad.npy failed verification" in text and "corrupt" in text
    assert (
        not (target / "EDTalk.pt").exists() and not (target / "predefined_exp_weights" / "sad.npy").exists()
    )


# --------------------------------------------------------------------------- CLI


def _invoke(*args: str, **env: str):
    return CliRunner().invoke(weights_cmd.app, list(args), env={"COLUMNS": "220", **env})


def test_cli_convert(standin_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    small = _save_official_layout(tmp_path / "small.pt", "edtalk_lip_pose", _small_state("edtalk_lip_pose"))
    result = _invoke(
        "convert", str(standin_checkpoints["audio2lip"]), str(small), "--out", str(tmp_path / "st")
    )
    assert result.exit_code == 0, result.output
    assert "Audio2Lip.safetensors (audio2lip: Audio2Lip model)" in result.output
    assert "small.safetensors (edtalk_lip_pose: EDTalk lip-pose model)" in result.output
    assert read_checkpoint(tmp_path / "st" / "small.safetensors").config.size == 64

    bad = tmp_path / "bad.pt"
    bad.write_bytes(random.Random(1).randbytes(2000))
    result = _invoke("convert", str(bad), str(small), "--out", str(tmp_path / "st2"))
    assert result.exit_code == 1
    assert f"weights file {bad} is corrupt" in result.output
    assert isinstance(result.exception, WeightsError)
    assert "1 of 2 file(s) could not be converted" in result.exception.message
    assert (tmp_path / "st2" / "small.safetensors").is_file() and not (
        tmp_path / "st2" / "bad.safetensors"
    ).exists()


def test_cli_info(standin_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    wdir = tmp_path / "w"
    wdir.mkdir()
    shutil.copyfile(standin_checkpoints["audio2lip"], wdir / "Audio2Lip.pt")
    _write_presets(wdir / "predefined_exp_weights")
    result = _invoke("info", "--weights", str(wdir))
    assert result.exit_code == 0, result.output
    assert f"Weights directory: {wdir}" in result.output
    assert (
        "audio2lip" in result.output
        and "2,822,932" in result.output
        and "lip 20, widths 32-64-128-256-512" in result.output
    )
    assert result.output.count("missing") >= 2
    assert "Missing: EDTalk.pt, EDTalk_lip_pose.pt" in result.output
    assert "angry, contempt, disgusted, fear, happy, neutral, sad, surprised" in result.output

    result = _invoke("info", str(standin_checkpoints["edtalk"]))
    assert result.exit_code == 0, result.output
    assert "64,228,397" in result.output and "size 256, style 512, lip 20, pose 6, exp 10" in result.output

    (wdir / "EDTalk.pt").write_bytes(b"PK\x03\x04" + bytes(100))  # looks like a zip, is not one
    result = _invoke("info", str(wdir))
    assert result.exit_code == 1
    assert f"weights file {wdir / 'EDTalk.pt'} is corrupt" in result.output


def test_cli_path(tmp_path: Path) -> None:
    result = _invoke("path", EDTALK_WEIGHTS=str(tmp_path / "env"))
    assert result.exit_code == 0 and result.output.strip() == str(tmp_path / "env")
    result = _invoke("path", "--weights", str(tmp_path / "cli"), EDTALK_WEIGHTS=str(tmp_path / "env"))
    assert result.output.strip() == str(tmp_path / "cli")


def test_full_cli_exit_code_and_message(standin_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "Audio2Lip.pt"
    bad.write_bytes(standin_checkpoints["audio2lip"].read_bytes()[:5000])
    repo = Path(__file__).resolve().parents[1]
    run = run_cli("weights", "info", cwd=repo, COLUMNS="200", EDTALK_WEIGHTS=str(tmp_path))
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"Weights directory: {tmp_path}" in run.stdout
    assert f"weights file {bad} is corrupt" in run.stderr and "edtalk weights download" in run.stderr
