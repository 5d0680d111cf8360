"""The model's layout, configurability, dtypes, and the engine's exact shortcuts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edtalk_cli.model import Audio2Lip, EDTalkGenerator, LipPoseGenerator, ModelConfig, orthonormal_bases
from edtalk_cli.pipeline.engine import RenderEngine, images_to_tensor, tensor_to_images

SMALL = ModelConfig(size=64, style_dim=64, channel_base=1024, channel_max=64, eem_hidden=16)


@pytest.mark.parametrize(
    "name, cls",
    [("edtalk", EDTalkGenerator), ("edtalk_lip_pose", LipPoseGenerator), ("audio2lip", Audio2Lip)],
)
def test_state_dict_layout_equals_official(parity, name, cls):
    """Keys, shapes, dtypes and order equal the official checkpoints (shared/parity/keys.json)."""
    official = json.loads((parity / "keys.json").read_text())[name]
    ours = [
        [k, list(v.shape), str(v.dtype).removeprefix("torch.")]
        for k, v in cls(ModelConfig()).state_dict().items()
    ]
    assert ours == official


def test_official_parameter_counts():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(EDTalkGenerator(ModelConfig())) == 64_228_397
    assert count(LipPoseGenerator(ModelConfig())) == 46_173_091
    assert count(Audio2Lip(ModelConfig())) == 2_822_932


@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_configurable_sizes_render_their_size(size):
    cfg = ModelConfig(size=size, style_dim=48, channel_base=size * 4, channel_max=32, eem_hidden=8)
    torch.manual_seed(0)
    model = EDTalkGenerator(cfg).eval()
    image = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        latent, feats = model.encode(image)
        out = model.reconstruct(image, image.flip(0))
    assert latent.shape == (2, 48)
    assert [f.shape[-1] for f in feats] == [2**i for i in range(3, cfg.log_size + 1)]
    assert out.shape == (2, 3, size, size) and torch.isfinite(out).all()


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        ModelConfig(size=100)
    with pytest.raises(ValueError, match="channel_multiplier"):
        ModelConfig(channel_multiplier=2)


def test_bases_are_orthonormal_and_lip_pose_columns_do_not_depend_on_the_expression_bank():
    torch.manual_seed(0)
    model = EDTalkGenerator(SMALL)
    q36 = model.motion_bases()
    assert q36.shape == (64, 36)
    assert torch.allclose(q36.T @ q36, torch.eye(36), atol=1e-5)
    q26 = orthonormal_bases(model.direction_lipnonlip.weight)
    assert torch.allclose(q36[:, :26], q26, atol=1e-6)
    # Householder (LAPACK) signs, not a positive-diagonal convention: R's diagonal has mixed signs
    _, r = torch.linalg.qr(model.direction_lipnonlip.weight.double() + 1e-8)
    assert (torch.diagonal(r) < 0).any() and (torch.diagonal(r) > 0).any()


def test_qr_ablation_uses_unit_directions_that_overlap(tmp_path):
    """``orthogonal_bases=False`` (the paper's stage-1 ablation): unit columns, not orthogonal, and
    the setting survives a safetensors round trip, so an ablated model is evaluated as trained."""
    from dataclasses import replace

    from edtalk_cli.weights import load_model
    from edtalk_cli.weights.checkpoint import save_safetensors

    torch.manual_seed(0)
    model = EDTalkGenerator(replace(SMALL, orthogonal_bases=False))
    q = model.motion_bases()
    assert torch.allclose(q.norm(dim=0), torch.ones(36), atol=1e-6)
    overlap = (q.T @ q - torch.eye(36)).abs().max()
    assert overlap > 0.1  # random directions in 64 dimensions are far from orthogonal
    raw = torch.cat([model.direction_lipnonlip.weight, model.direction_exp.weight], 1)
    assert torch.allclose(q, raw / raw.norm(dim=0))
    path = tmp_path / "EDTalk.safetensors"
    save_safetensors(model.state_dict(), path, kind="edtalk", config=model.config)
    loaded, config = load_model(path, "edtalk")
    assert config.orthogonal_bases is False
    assert torch.allclose(loaded.motion_bases(), q)


def test_float16_and_bfloat16_autocast_track_float32():
    torch.manual_seed(0)
    model = EDTalkGenerator(SMALL).eval()
    face = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    coeffs = torch.randn(3, 36) * 0.5
    outputs = {}
    for precision in ("fp64", "fp32", "bf16", "fp16"):
        engine = RenderEngine(model, precision=precision, batch_size=3)
        engine.set_source(face)
        outputs[precision] = next(engine.render_batches(coeffs.to(engine.dtype))).double()
    # random-init weights are chaotic, so compare means (the parity tests hold the real bounds)
    assert (outputs["fp32"] - outputs["fp64"]).abs().mean() < 1e-4  # the float32 parity bound
    # Half precision really runs (the output differs) and computes the same function. Random-init
    # generators amplify rounding chaotically (spec 1.10), so on these weights bf16 (8-bit mantissa)
    # reaches a correlation of ~0.83 and fp16 ~0.95 with float32; trained weights are far calmer.
    for half, min_corr in (("bf16", 0.75), ("fp16", 0.9)):
        assert torch.isfinite(outputs[half]).all()
        assert (outputs[half] - outputs["fp32"]).abs().mean() > 0
        corr = np.corrcoef(outputs[half].flatten(), outputs["fp32"].flatten())[0, 1]
        assert corr > min_corr, (half, corr)


@pytest.mark.parametrize("precision, allowed", [("fp32", False), ("tf32", True), ("bf16", False)])
def test_engine_precision_sets_tf32_only_while_it_computes(precision: str, allowed: bool):
    """fp32 forbids TensorFloat-32 inside every engine call, tf32 allows it, and the caller's flags return.

    On an H200 (benchmarks/RESULTS.md) TF32 convolutions, PyTorch's default, put 9-12 % of the
    parity pixels more than 2/255 off the official float64 outputs; strict fp32 passes.
    """
    torch.manual_seed(0)
    model = EDTalkGenerator(SMALL).eval()
    seen: dict[str, set[tuple[bool, bool]]] = {"enc": set(), "dec": set()}

    def recorder(part: str):
        def record(*_):
            seen[part].add((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))

        return record

    for part in seen:
        for module in getattr(model, part).modules():  # every layer: dec's pieces are called directly
            module.register_forward_pre_hook(recorder(part))
    caller = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = not allowed, not allowed
        engine = RenderEngine(model, precision=precision, batch_size=2)
        face = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
        engine.set_source(face)
        engine.extract_coefficients([face, face[::-1]])
        next(engine.render_batches(torch.zeros(2, 36)))
        relipsync = engine.render_with_sources(np.stack([face] * 4), torch.zeros(4, 36))
        next(relipsync)  # suspended at its yield: the caller's flags must be back
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (not allowed,) * 2
        next(relipsync)
        assert seen == {"enc": {(allowed, allowed)}, "dec": {(allowed, allowed)}}
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (not allowed,) * 2
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = caller


def test_engine_batches_equal_single_frames_and_the_reference_path():
    """Caching the source and bases, and batching, are exact (float64)."""
    torch.manual_seed(1)
    model = EDTalkGenerator(SMALL).double().eval()
    rng = np.random.default_rng(1)
    source = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    drivers = (rng.random((5, 64, 64, 3)) * 255).astype(np.uint8)
    engine = RenderEngine(model, precision="fp64", batch_size=4)
    engine.set_source(source)
    track = engine.extract_coefficients(drivers)
    coeffs = engine.coefficient_matrix(5, track.mouth, track.pose, track.expression)
    batched = torch.cat(list(engine.render_batches(coeffs)))
    engine.batch_size = 1
    single = torch.cat(list(engine.render_batches(coeffs)))
    assert (batched - single).abs().max() < 1e-10
    with torch.no_grad():  # the uncached training path: everything from the driver image
        src = images_to_tensor(source, torch.float64, "cpu")
        reference = model.reconstruct(
            src.expand(5, -1, -1, -1), images_to_tensor(drivers, torch.float64, "cpu")
        )
    assert (batched - reference).abs().max() < 1e-9


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_batched_modulated_conv_equals_per_sample_weights(upsample: bool, demodulate: bool):
    """Batches above 1 scale activations instead of building B weight sets: same values and gradients."""
    from edtalk_cli.model.layers import ModulatedConv2d

    torch.manual_seed(3)
    layer = ModulatedConv2d(6, 5, 3, 16, demodulate=demodulate, upsample=upsample).double()
    x = torch.randn(3, 6, 8, 8, dtype=torch.float64, requires_grad=True)
    style = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    batched = layer(x, style)  # the shared-convolution path
    single = torch.cat([layer(x[i : i + 1], style[i : i + 1]) for i in range(3)])  # the grouped path
    assert batched.shape == single.shape == (3, 5, 16 if upsample else 8, 16 if upsample else 8)
    assert (batched - single).abs().max() < 1e-12
    grads = torch.autograd.grad(batched.square().sum(), (x, style, layer.weight))
    grads_single = torch.autograd.grad(single.square().sum(), (x, style, layer.weight))
    for got, want in zip(grads, grads_single):
        assert (got - want).abs().max() < 1e-10 * (1 + want.abs().max())


def test_constant_expression_reuses_one_eem_output():
    """With one expression for the whole batch (a preset), EEM runs once per source and expression."""
    torch.manual_seed(2)
    model = EDTalkGenerator(SMALL).double().eval()
    rng = np.random.default_rng(2)
    source = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    engine = RenderEngine(model, precision="fp64", batch_size=4)
    engine.set_source(source)
    mouth = rng.normal(size=(6, SMALL.lip_dim))
    pose = rng.normal(size=(6, SMALL.pose_dim))
    preset = rng.normal(size=SMALL.exp_dim)
    coeffs = engine.coefficient_matrix(6, mouth, pose, preset)
    cached = torch.cat(list(engine.render_batches(coeffs)))
    assert engine._eem_cache is not None and torch.equal(engine._eem_cache[0], coeffs[0, -SMALL.exp_dim :])
    with torch.no_grad():
        direct = model.synthesize(engine.source, coeffs, engine.bases)  # EEM per frame
    assert (cached - direct).abs().max() < 1e-9  # batch 4 + 2 against one batch of 6: rounding only
    # a varying expression is never served from the cache
    varying = engine.coefficient_matrix(6, mouth, pose, rng.normal(size=(6, SMALL.exp_dim)))
    with torch.no_grad():
        direct = model.synthesize(engine.source, varying, engine.bases)
    assert (torch.cat(list(engine.render_batches(varying))) - direct).abs().max() < 1e-9


def test_identical_driver_frames_are_encoded_once():
    torch.manual_seed(2)
    model = EDTalkGenerator(SMALL).eval()
    engine = RenderEngine(model, batch_size=4)
    rng = np.random.default_rng(2)
    clip = [(rng.random((64, 64, 3)) * 255).astype(np.uint8) for _ in range(3)]
    looped = [clip[i % 3] for i in range(30)]
    calls = []
    original = model.encode_latent
    model.encode_latent = lambda x: (calls.append(x.shape[0]), original(x))[1]
    track = engine.extract_coefficients(looped)
    assert sum(calls) == 3  # 3 distinct frames, 30 requested
    assert np.array_equal(track.pose[0], track.pose[3]) and not np.array_equal(track.pose[0], track.pose[1])


def test_extracted_tracks_round_trip_through_npy(tmp_path):
    torch.manual_seed(3)
    engine = RenderEngine(EDTalkGenerator(SMALL).eval(), batch_size=2)
    frames = (np.random.default_rng(3).random((3, 64, 64, 3)) * 255).astype(np.uint8)
    track = engine.extract_coefficients(frames)
    paths = track.save_components(tmp_path, "clip")
    assert np.load(paths["mouth"]).shape == (3, 20)
    assert np.load(paths["pose"]).shape == (3, 6)
    assert np.allclose(np.load(paths["expression"]), track.expression)
    npz = np.load(track.save(tmp_path / "clip.npz"))
    assert np.allclose(npz["pose"], track.pose)


def test_uint8_conversion_is_clamped_and_rounded():
    x = torch.tensor([[-2.0, -1.0, 0.0, 0.999, 1.0, 3.0]]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    out = tensor_to_images(x)[0, 0, :, 0]
    assert out.tolist() == [0, 0, 128, 255, 255, 255]


def test_layer_reprs_show_their_shapes():
    """Printing the model shows each custom layer's channels, kernel, stride and padding."""
    modules = dict(EDTalkGenerator(ModelConfig()).named_modules())
    assert repr(modules["enc.net_app.convs.0.0"]) == "EqualConv2d(3, 64, 1, stride=1, padding=0, bias=False)"
    assert (
        repr(modules["enc.net_app.convs.1.conv2.1"])
        == "EqualConv2d(64, 128, 3, stride=2, padding=0, bias=False)"
    )
    assert repr(modules["enc.net_app.convs.1.conv2.0"]) == "Blur(pad=(2, 2))"
    assert repr(modules["enc.net_app.convs.1.conv2.2"]) == "FusedLeakyReLU(128)"
    assert repr(modules["lip_fc.2"]) == "EqualLinear(512, 20)"
    assert repr(modules["direction_exp"]) == "Direction(512, 10)"
    assert repr(modules["dec.input"]) == "ConstantInput(512, size=4)"
    assert repr(modules["dec.convs.0.conv"]).splitlines()[:3] == [
        "ModulatedConv2d(",
        "  512, 512, 3, style_dim=512, demodulate=True, upsample=True",
        "  (blur): Blur(pad=(1, 1), upsample_factor=2)",
    ]
    assert repr(modules["enc.net_app.convs.1"]).splitlines()[1] == "  64, 128"  # ResBlock(in, out)
