"""ONNX export and the onnxruntime engine: parity with the official float32 tolerances, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image
from test_parity import IMAGE_KEYS, _official_outputs
from test_render import _write_manifest

from edtalk_cli.errors import EdtalkError
from edtalk_cli.pipeline.engine import RenderEngine
from edtalk_cli.pipeline.onnx_backend import OnnxAudio2Lip, OnnxGraphs, OnnxRenderEngine, check_engine
from edtalk_cli.pipeline.onnx_export import GRAPH_FILES, METADATA_NAME, export_onnx
from edtalk_cli.pipeline.options import RenderOptions
from edtalk_cli.pipeline.render import JobRenderer
from edtalk_cli.video import iter_video_frames
from edtalk_cli.weights import load_model
from edtalk_cli.weights.bundle import ModelBundle

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def standin_exports(standin_checkpoints, tmp_path_factory) -> dict[str, Path]:
    """The stand-in official weights exported once per model: generator kind -> ONNX directory."""
    weights = standin_checkpoints["edtalk"].parent
    root = tmp_path_factory.mktemp("onnx")
    return {
        "edtalk": export_onnx(weights, root / "full", model="edtalk").directory,
        "edtalk_lip_pose": export_onnx(weights, root / "lip_pose", model="lip_pose").directory,
    }


@pytest.fixture(scope="module")
def outputs_onnx(parity, standin_checkpoints, standin_exports):
    def onnx_backend(kind: str, model):
        graphs = OnnxGraphs(standin_exports["edtalk" if kind == "audio2lip" else kind])
        if kind == "audio2lip":
            return OnnxAudio2Lip(graphs)
        graphs.check_matches(kind, model.config, [standin_checkpoints[kind]])
        return OnnxRenderEngine(model, graphs, batch_size=4)

    return _official_outputs(parity, standin_checkpoints, "fp32", backend=onnx_backend)


@pytest.mark.slow
@pytest.mark.parametrize("key", IMAGE_KEYS)
def test_onnxruntime_matches_official_float32(outputs_onnx, parity, key):
    """The same tolerances as the torch float32 run in test_parity.py."""
    expected = np.load(parity / "expected.npz")[key]
    diff = np.abs(outputs_onnx[key] - expected)
    assert diff.mean() <= 1e-4
    assert (diff > 2 / 255).mean() < 1e-3


@pytest.mark.slow
def test_onnxruntime_audio_matches_official(outputs_onnx, parity):
    expected = np.load(parity / "expected.npz")
    assert np.abs(outputs_onnx["audio2lip"] - expected["audio2lip"]).max() <= 1e-4
    assert np.abs(outputs_onnx["audio2lip_smoothed"] - expected["audio2lip_smoothed"]).max() <= 1e-4


@pytest.mark.slow  # the module's stand-in exports take about 15 s
def test_export_metadata_and_dynamic_batch(standin_exports):
    """Every graph is written with a symbolic batch axis, and the metadata names the source weights."""
    import onnx

    directory = standin_exports["edtalk"]
    metadata = json.loads((directory / METADATA_NAME).read_text())
    assert metadata["kind"] == "edtalk" and metadata["has_expression"]
    assert metadata["config"]["size"] == 256
    assert set(metadata["weights"]) == {"EDTalk.pt", "Audio2Lip.pt"}
    for name, filename in GRAPH_FILES.items():
        graph = onnx.load(str(directory / filename), load_external_data=False).graph
        for value in [*graph.input, *graph.output]:
            first = value.type.tensor_type.shape.dim[0]
            assert first.dim_param and not first.HasField("dim_value"), (name, value.name)
    decoder = onnx.load(str(directory / "decoder.onnx"), load_external_data=False).graph
    assert [i.name for i in decoder.input] == [
        "source_latent", "direction", "exp_latent", *[f"feat{i}" for i in range(6)]
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["edtalk", "edtalk_lip_pose"])
def test_per_frame_sources_match_the_torch_engine(standin_exports, standin_checkpoints, parity, kind):
    """Re-lip-syncing a video (one source per frame, batch 3) through the same graphs.

    Compared with the torch engine in float32, at the parity tolerances.
    """
    generator, _ = load_model(standin_checkpoints[kind], kind)
    graphs = OnnxGraphs(standin_exports[kind])
    sources = np.stack([np.asarray(Image.open(parity / f"drive_{n}.png").convert("RGB")) for n in "abc"])
    rng = np.random.default_rng(0)
    coeffs = torch.from_numpy(rng.normal(scale=0.3, size=(3, generator.num_coeffs)).astype(np.float32))
    ours = next(
        OnnxRenderEngine(generator, graphs, batch_size=3).render_with_sources(sources, coeffs)
    ).numpy()
    ref = next(RenderEngine(generator, batch_size=3).render_with_sources(sources, coeffs)).numpy()
    assert ours.shape == (3, 3, 256, 256)
    diff = np.abs(ours - ref)
    assert diff.mean() <= 1e-4 and (diff > 2 / 255).mean() < 1e-3


def test_export_refuses_a_non_empty_directory(tmp_path, tiny_weights):
    out = tmp_path / "graphs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(EdtalkError, match="not empty"):
        export_onnx(tiny_weights, out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".graphs")]  # no staging left behind


def test_bad_onnx_dir_errors_name_the_directory_and_the_fix(tmp_path, tiny_weights):
    with pytest.raises(EdtalkError, match="does not exist") as info:
        check_engine("onnxruntime", tmp_path / "nowhere", "fp32")
    assert "edtalk export onnx" in info.value.hint
    with pytest.raises(EdtalkError, match="needs --onnx-dir"):
        check_engine("onnxruntime", None, "fp32")
    with pytest.raises(EdtalkError, match="float32 graphs"):
        check_engine("onnxruntime", tmp_path, "bf16")
    with pytest.raises(EdtalkError, match="is unknown"):
        check_engine("tensorrt", None, "fp32")
    export = export_onnx(tiny_weights, tmp_path / "tiny")
    (export.directory / "decoder.onnx").unlink()
    with pytest.raises(EdtalkError, match=r"lacks decoder\.onnx"):
        check_engine("onnxruntime", export.directory, "fp32")


@pytest.mark.slow  # the module's stand-in exports take about 15 s
def test_graphs_of_other_weights_are_refused(tmp_path, tiny_weights, standin_exports):
    with pytest.raises(EdtalkError, match="holds edtalk at 256 px, but the job renders with edtalk at 64 px"):
        JobRenderer(
            ModelBundle.from_dir(tiny_weights, "edtalk"),
            options=RenderOptions(engine="onnxruntime", onnx_dir=standin_exports["edtalk"]),
        )


def test_graphs_of_same_shaped_but_other_weights_are_refused(tmp_path, tiny_weights):
    """Same kind and size, other contents: the sha256 in the metadata tells them apart."""
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, weights)
    export = export_onnx(weights, tmp_path / "graphs", model="edtalk")
    state = torch.load(weights / "EDTalk.pt", weights_only=True)
    state["gen"]["fc.0.bias"] = state["gen"]["fc.0.bias"] + 0.01  # fine-tuned, say
    torch.save(state, weights / "EDTalk.pt")
    with pytest.raises(EdtalkError, match=r"was not made from '.*EDTalk\.pt'") as info:
        JobRenderer(
            ModelBundle.from_dir(weights, "edtalk"),
            options=RenderOptions(engine="onnxruntime", onnx_dir=export.directory),
        )
    assert "edtalk export onnx" in info.value.hint


@pytest.mark.slow  # an export and two renders in subprocesses
def test_cli_export_then_render_with_onnxruntime_matches_torch(tmp_path, parity):
    """`edtalk export onnx` then `edtalk render --engine onnxruntime`: the frames of the torch engine.

    With the built-in demo model (trained, 64 px). Both renders go through H.264, so the decoded
    frames are compared at mean |diff| <= 0.5 (of 255) and max <= 8; another emotion moves the
    mean far more.
    """
    Image.open(parity / "source.png").save(tmp_path / "face.png")
    graphs = tmp_path / "graphs"
    exported = run_cli("export", "onnx", "--model", "demo", "-o", str(graphs), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "decoder.onnx" in exported.stdout
    defaults = f"""
version: 1
defaults: {{source: {{path: face.png, crop: none}}, audio: {parity / "speech.wav"}}}
"""
    (tmp_path / "torch.yaml").write_text(
        defaults
        + """jobs:
  - {name: happy, emotion: happy, output: "torch/happy.mp4"}
  - {name: sad, emotion: sad, output: "torch/sad.mp4"}
"""
    )
    (tmp_path / "onnx.yaml").write_text(
        defaults + 'jobs: [{name: happy, emotion: happy, output: "onnx/happy.mp4"}]\n'
    )
    common = ["--model", "demo", "--device", "cpu", "-q", "--no-report", "--no-cache"]
    result = run_cli("render", "torch.yaml", *common, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_cli(
        "render", "onnx.yaml", *common, "--engine", "onnxruntime", "--onnx-dir", str(graphs), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr

    def frames(path: Path) -> np.ndarray:
        return np.stack(list(iter_video_frames(path))).astype(np.float64)

    torch_frames, onnx_frames = frames(tmp_path / "torch/happy.mp4"), frames(tmp_path / "onnx/happy.mp4")
    assert onnx_frames.shape == torch_frames.shape == (32, 256, 256, 3)  # crop: none keeps the size
    diff = np.abs(onnx_frames - torch_frames)
    assert diff.mean() <= 0.5 and diff.max() <= 8
    other = np.abs(frames(tmp_path / "torch/sad.mp4") - torch_frames).mean()
    assert other > 5 * diff.mean()


def test_cli_render_with_a_missing_onnx_dir_fails_before_rendering(tmp_path, parity, tiny_weights):
    Image.open(parity / "source.png").save(tmp_path / "face.png")
    manifest = _write_manifest(
        tmp_path,
        f"""
version: 1
jobs:
  - {{name: a, source: {{path: face.png, crop: none}}, audio: {parity / "speech.wav"}, output: "out/a.mp4"}}
""",
    )
    result = run_cli("render", str(manifest), "--weights", str(tiny_weights), "--device", "cpu", "-q",
                      "--engine", "onnxruntime", "--onnx-dir", str(tmp_path / "missing"), cwd=tmp_path)  # fmt: skip
    assert result.returncode != 0
    assert f"ONNX directory '{tmp_path / 'missing'}' does not exist" in result.stderr
    assert "edtalk export onnx" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_engine_is_part_of_the_fingerprint_and_the_default_keeps_earlier_ones(
    tmp_path, parity, tiny_weights
):
    """A job rendered by torch is rendered again for onnxruntime (and back); torch's fingerprint
    is the one of versions without the engine component, so their outputs stay up to date."""
    from conftest import write_speech_clips

    from edtalk_cli.manifest import load_manifest
    from edtalk_cli.runner.batch import BatchRunner, RunOptions
    from edtalk_cli.runner.fingerprint import canonical_digest, read_sidecar

    Image.open(parity / "source.png").resize((64, 64)).save(tmp_path / "face.png")
    write_speech_clips(tmp_path, parity, (8,))
    manifest = _write_manifest(
        tmp_path,
        "version: 1\njobs:\n"
        '  - {name: a, source: {path: face.png, crop: none}, audio: s8.wav, output: "out/a.mp4"}\n',
    )
    jobs = list(load_manifest(manifest).jobs)
    export = export_onnx(tiny_weights, tmp_path / "graphs")
    common = {"devices": "cpu", "weights": tiny_weights, "cache": False}
    by_torch = BatchRunner(RunOptions(**common))
    by_onnx = BatchRunner(RunOptions(**common, engine="onnxruntime", onnx_dir=export.directory))

    assert [o.status for o in by_torch.run(jobs)] == ["done"]
    recorded = read_sidecar(jobs[0].output)["components"]
    assert "engine" not in recorded  # the default engine: the components of earlier versions
    earlier = {k: recorded[k] for k in ("inputs", "settings", "weights", "precision", "tool")}
    assert read_sidecar(jobs[0].output)["fingerprint"] == canonical_digest(earlier)
    assert [o.status for o in by_torch.run(jobs)] == ["skipped"]

    assert [o.status for o in by_onnx.run(jobs)] == ["done"]  # another engine: rendered again
    assert read_sidecar(jobs[0].output)["components"]["engine"] == "onnxruntime"
    assert [o.status for o in by_onnx.run(jobs)] == ["skipped"]
    assert [o.status for o in by_torch.run(jobs)] == ["done"]
