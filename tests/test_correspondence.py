"""Exact correspondences of the synthetic world and the flow supervision built on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion

from edtalk_cli.errors import EdtalkError
from edtalk_cli.synthetic import Expression, Identity, Mouth, Pose, Renderer
from edtalk_cli.synthetic.correspondence import backward_flow, pixels_to_grid, warp_image
from edtalk_cli.synthetic.render import SURFACE_BACKGROUND, SURFACE_BODY, SURFACE_FACE, SURFACE_HEAD
from edtalk_cli.training import config_from_dict, stages
from edtalk_cli.training.data import SyntheticWorld

SIZE = 64
IDENT = Identity.from_seed(1_000_003)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(SIZE)


def _identity_grid(size: int = SIZE) -> np.ndarray:
    jj, ii = np.meshgrid(np.arange(size), np.arange(size))
    return pixels_to_grid(np.stack([jj, ii], -1).astype(np.float32), size)


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2)[where].mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def test_surface_record_leaves_the_image_unchanged_and_names_every_part(renderer) -> None:
    pose, mouth = Pose(yaw=12, pitch=-4), Mouth(0.4, 0.2)
    plain = renderer.render(IDENT, pose, mouth)
    traced = renderer.render(IDENT, pose, mouth, surface=True)
    assert plain.surface is None and plain.surface_kind is None
    assert np.array_equal(plain.image, traced.image)
    kind = traced.surface_kind
    assert traced.surface.shape == (SIZE, SIZE, 3) and kind.shape == (SIZE, SIZE)
    # corners are backdrop, the image centre is the painted face, the bottom centre is the shirt
    assert kind[0, 0] == kind[0, -1] == SURFACE_BACKGROUND
    assert kind[SIZE // 2 + 2, SIZE // 2 + 6] == SURFACE_FACE
    assert (kind == SURFACE_HEAD).sum() > 100  # hair, ears and nose
    assert kind[-1, SIZE // 2] == SURFACE_BODY
    assert np.all(traced.surface[kind == SURFACE_BACKGROUND] == 0)
    # the face points lie on the front of the head (head-local z > 0 near the centre)
    assert traced.surface[SIZE // 2, SIZE // 2, 2] > 0.5


def test_same_factors_give_the_identity_grid_and_all_valid(renderer) -> None:
    factors = (Pose(yaw=-8, roll=3), Mouth(0.3, 0.0), Expression())
    frame = renderer.render(IDENT, *factors, surface=True)
    grid, valid = backward_flow(renderer, frame, factors[0], frame)
    assert valid.all()
    assert np.abs(grid - _identity_grid()).max() < 1e-4


def test_a_whole_pixel_shift_is_recovered_exactly(renderer) -> None:
    # tx = 4/32 of the half-size moves head and body by exactly 4 pixels; the backdrop stays
    src_pose, drv_pose = Pose(), Pose(tx=4 / 32)
    src = renderer.render(IDENT, src_pose, surface=True)
    drv = renderer.render(IDENT, drv_pose, surface=True)
    grid, valid = backward_flow(renderer, src, src_pose, drv)
    moving = drv.surface_kind != SURFACE_BACKGROUND
    shift_px = (grid - _identity_grid())[..., 0] * SIZE / 2
    assert np.abs(shift_px[moving & valid] + 4).max() < 1e-3  # driver pixel x <- source x - 4
    assert np.abs(shift_px[~moving & valid]).max() < 1e-6
    # the strip the head uncovers is not in the source: invalid
    assert (~valid & ~moving).sum() > 20
    inner = binary_erosion(valid & moving, iterations=1)  # away from the silhouette over the backdrop
    assert _psnr(warp_image(src.image, grid), drv.image, inner) > 50


def test_a_head_turn_warps_the_source_onto_the_driver(renderer) -> None:
    src_pose, drv_pose = Pose(yaw=-15, pitch=5), Pose(yaw=15, pitch=-5, roll=4)
    src = renderer.render(IDENT, src_pose, surface=True)
    drv = renderer.render(IDENT, drv_pose, surface=True)
    grid, valid = backward_flow(renderer, src, src_pose, drv)
    head = drv.surface_kind >= SURFACE_HEAD
    inner = binary_erosion(valid & head, iterations=1)
    warped = warp_image(src.image, grid)
    unwarped = warp_image(src.image, _identity_grid())
    # the exact flow lines the face up (the light stays put, so the shading differs: 24.8 dB
    # for this 30-degree swing, 32-34 dB for a 10-degree one); no warp leaves it misaligned
    assert _psnr(warped, drv.image, inner) > 23.5
    assert _psnr(warped, drv.image, inner) > _psnr(unwarped, drv.image, inner) + 4
    # the cheek the turn brings into view is hidden in the source: part of the head is invalid
    assert 0.05 < (head & ~valid).sum() / head.sum() < 0.6


def test_a_texture_twin_invalidates_the_moving_mouth_only(renderer) -> None:
    pose = Pose(yaw=5)
    src_f = (pose, Mouth(0.0, 0.0), Expression())
    drv_f = (pose, Mouth(0.9, 0.0), Expression())
    src = renderer.render(IDENT, *src_f, surface=True)
    drv = renderer.render(IDENT, *drv_f, surface=True)
    twin = renderer.render(IDENT, drv_f[0], src_f[1], src_f[2]).image
    _, rigid_valid = backward_flow(renderer, src, pose, drv)
    _, valid = backward_flow(renderer, src, pose, drv, texture_twin=twin)
    assert rigid_valid.all()  # same pose: every point is visible in both
    invalid = ~valid
    ys, xs = np.nonzero(invalid)
    mouth = drv.masks["mouth"]
    my, mx = np.nonzero(mouth)
    # the invalid pixels are the opened mouth (and a pixel of margin), nothing else
    assert invalid.sum() >= mouth.sum() * 0.8
    assert ys.min() >= my.min() - 2 and ys.max() <= my.max() + 2
    assert xs.min() >= mx.min() - 2 and xs.max() <= mx.max() + 2


@pytest.mark.parametrize(
    ("region", "src_face", "drv_face", "share"),
    [
        ("mouth", (Mouth(0.5, 0.0), Expression()), (Mouth(0.05, 0.6), Expression(smile=0.8)), 0.6),
        ("brows", (Mouth(), Expression()), (Mouth(), Expression(brow_raise=0.9, brow_furrow=-0.5)), 0.6),
        # a squint: the lid moves over a still eyeball whose lid shadow moves with it
        ("eyes", (Mouth(), Expression()), (Mouth(), Expression(eye_open=-0.8)), 0.5),
    ],
)
def test_following_the_features_maps_moved_lips_lids_and_brows(
    renderer, region, src_face, drv_face, share
) -> None:
    """Same pose, moved feature: the rigid flow gives the feature up, the feature flow warps it in place."""
    pose = Pose(yaw=6, pitch=3)
    src = renderer.render(IDENT, pose, *src_face, surface=True)
    drv = renderer.render(IDENT, pose, *drv_face, surface=True)
    twin = renderer.render(IDENT, pose, *src_face).image
    rigid_grid, rigid_valid = backward_flow(renderer, src, pose, drv, twin)
    grid, valid = backward_flow(renderer, src, pose, drv, twin, (IDENT, pose, drv_face, src_face))
    feature = drv.masks[region]
    changed = (np.abs(src.image.astype(int) - drv.image.astype(int)).max(-1) > 10) & feature
    assert changed.sum() >= 5
    # most of the moved feature gets a valid correspondence, which the rigid flow refuses
    assert (valid & changed).sum() >= share * changed.sum(), (valid & changed).sum()
    assert (rigid_valid & changed).sum() <= 0.2 * changed.sum()
    warped = warp_image(src.image, grid)
    assert _psnr(warped, drv.image, valid & changed) > 24
    assert _psnr(warped, drv.image, valid & changed) > _psnr(src.image, drv.image, valid & changed) + 6
    # away from the features the two flows agree
    far = ~binary_dilation_mask(drv.masks["mouth"] | drv.masks["eyes"] | drv.masks["brows"], 6)
    assert np.abs(grid - rigid_grid)[far].max() < 1e-6


def binary_dilation_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, iterations=pixels)


def test_backward_flow_needs_surface_records(renderer) -> None:
    frame = renderer.render(IDENT)
    with pytest.raises(ValueError, match="surface=True"):
        backward_flow(renderer, frame, Pose(), frame)


def test_training_pairs_and_swaps_carry_flows_and_draw_the_same_images() -> None:
    world = SyntheticWorld(SIZE, 4, "all")
    plain = world.pairs(np.random.default_rng(5), 3)
    with_flow = world.pairs(np.random.default_rng(5), 3, flows=True)
    assert torch.equal(plain["source"], with_flow["source"])
    assert torch.equal(plain["driver"], with_flow["driver"])
    assert with_flow["flow"].shape == (3, SIZE, SIZE, 2)
    assert set(with_flow["flow_valid"].unique().tolist()) <= {0.0, 1.0}
    assert 0.5 < float(with_flow["flow_valid"].mean()) < 1.0
    # warping each source by its flow reproduces the driver where the flow is valid
    for k in range(3):
        src = ((with_flow["source"][k].permute(1, 2, 0) + 1) * 127.5).numpy()
        drv = ((with_flow["driver"][k].permute(1, 2, 0) + 1) * 127.5).numpy()
        valid = binary_erosion(with_flow["flow_valid"][k].numpy() > 0, iterations=1)
        warped = _psnr(warp_image(src, with_flow["flow"][k].numpy()), drv, valid)
        assert warped > 22 and warped > _psnr(src, drv, valid) + 2
    swaps = world.swaps(np.random.default_rng(6), 2, flows=True)
    assert torch.equal(swaps["a"], world.swaps(np.random.default_rng(6), 2)["a"])
    for name in ("a", "b"):
        assert swaps[f"flow_{name}"].shape == (2, SIZE, SIZE, 2)
        assert swaps[f"flow_{name}_valid"].shape == (2, SIZE, SIZE)


def test_flow_supervision_measures_pixels_on_valid_cells_only() -> None:
    exact = torch.from_numpy(_identity_grid()).expand(2, -1, -1, -1).clone()
    valid = torch.ones(2, SIZE, SIZE)
    levels = [8, 16, 32, 64]

    def pooled(grid: torch.Tensor, shift_px: float = 0.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for r in levels:
            g = torch.nn.functional.avg_pool2d(grid.permute(0, 3, 1, 2), SIZE // r).permute(0, 2, 3, 1)
            g = g.clone()
            g[..., 0] += shift_px * 2 / SIZE
            out.append((g, torch.ones(2, 1, r, r)))
        return out

    mean, finest, mask_bce = stages.flow_supervision(pooled(exact), exact, valid)
    assert float(mean) < 1e-5 and float(finest) < 1e-5
    assert float(mask_bce) < 1e-4  # open masks where every pixel is valid
    mean, finest, _ = stages.flow_supervision(pooled(exact, 1.5), exact, valid)
    assert float(mean) == pytest.approx(1.5, abs=1e-4) and float(finest) == pytest.approx(1.5, abs=1e-4)
    # an error where the flow is invalid costs nothing
    wrong = pooled(exact)
    wrong[-1][0][:, :, :32, 0] += 0.5
    partly_valid = valid.clone()
    partly_valid[:, :, :32] = 0
    _, finest, mask_bce = stages.flow_supervision(wrong, exact, partly_valid)
    assert float(finest) < 1e-5
    assert float(mask_bce) > 5  # the finest mask is open where the source does not show the pixel
    _, finest, _ = stages.flow_supervision(wrong, exact, valid)
    assert float(finest) == pytest.approx(0.5 * SIZE / 2 / 2, rel=1e-4)  # half the pixels off by 16 px


@pytest.mark.slow
def test_flow_supervision_teaches_the_decoder_the_warp() -> None:
    """A few steps with ``weights.flow`` bring the finest warp closer to the exact one than L1 alone."""
    tiny = {"size": 64, "style_dim": 64, "channel_base": 512, "channel_max": 32, "eem_hidden": 16}
    world = SyntheticWorld(SIZE, 6, "neutral")
    rng = np.random.default_rng(0)
    batches = [world.pairs(rng, 4, flows=True) for _ in range(4)]
    finest = {}
    for weight in (0.0, 0.1):
        torch.manual_seed(0)
        cfg = config_from_dict({"stage": 0, "model": tiny, "weights": {"flow": weight}})
        gen = stages.build_generator(0, cfg.model_config)
        opt = torch.optim.Adam(gen.parameters(), lr=3e-3, betas=(0.9, 0.99))
        for step in range(24):
            result = stages.self_reconstruction(gen, batches[step % 4], cfg.weights)
            assert ("flow_px" in result.terms) == (weight > 0)
            opt.zero_grad()
            result.loss.backward()
            opt.step()
        with torch.no_grad():  # measured the same way for both runs
            scored = stages.self_reconstruction(gen, batches[0], {**cfg.weights, "flow": 1.0})
        finest[weight] = scored.terms["flow_px"]
    assert finest[0.1] < 0.7 * finest[0.0], finest


def test_hole_l1_scores_only_what_the_source_does_not_show() -> None:
    target = torch.zeros(2, 3, 8, 8)
    valid = torch.ones(2, 8, 8)
    valid[:, 2:4, 2:4] = 0  # 4 holes per image
    pred = target.clone()
    pred[:, :, 5:, 5:] = 1.0  # errors where the warp copies: not scored
    assert float(stages.hole_l1(pred, target, valid)) == 0.0
    pred[:, :, 2:4, 2:4] = 0.5  # every hole off by 0.5
    assert float(stages.hole_l1(pred, target, valid)) == pytest.approx(0.5)
    assert float(stages.hole_l1(pred, target, torch.ones(2, 8, 8))) == 0.0  # no holes, no loss


def test_copy_init_starts_as_a_sharp_copy_of_the_source() -> None:
    """From scratch with ``copy_init`` the untrained model renders the source itself, sharply."""
    tiny = {"size": 64, "style_dim": 64, "channel_base": 512, "channel_max": 32, "eem_hidden": 16}
    cfg = config_from_dict({"stage": 0, "model": tiny, "copy_init": True})
    batch = SyntheticWorld(SIZE, 6, "neutral", held_out=True).pairs(np.random.default_rng(2), 4)
    with torch.no_grad():
        torch.manual_seed(0)
        copied = stages.build_generator(0, cfg.model_config, copy_source=True).reconstruct(
            batch["source"], batch["driver"]
        )
        torch.manual_seed(0)
        plain = stages.build_generator(0, cfg.model_config).reconstruct(batch["source"], batch["driver"])
    assert float(stages.psnr(copied, batch["source"]).min()) > 24  # 30 dB at the demo widths
    assert float(stages.psnr(plain, batch["source"]).max()) < 12
    with pytest.raises(EdtalkError, match=r"copy_init.*from scratch"):
        config_from_dict({"stage": 0, "model": tiny, "copy_init": True, "init": "x.pt"})
    with pytest.raises(EdtalkError, match=r"copy_init.*true or false"):
        config_from_dict({"stage": 0, "copy_init": "yes"})


def test_flow_weight_is_refused_where_there_is_no_exact_flow() -> None:
    with pytest.raises(EdtalkError, match=r"weights\.flow.*stages 0-2 on data 'synthetic'"):
        config_from_dict({"stage": 3, "init": "x.pt", "weights": {"flow": 0.1}})
    with pytest.raises(EdtalkError, match=r"weights\.flow.*stages 0-2 on data 'synthetic'"):
        config_from_dict({"stage": 0, "data": "/some/dataset", "weights": {"flow": 0.1}})
    for name in ("flow_mask", "hole_l1"):
        with pytest.raises(EdtalkError, match=rf"weights\.{name}.*needs weights\.flow"):
            config_from_dict({"stage": 0, "weights": {name: 0.1}})
