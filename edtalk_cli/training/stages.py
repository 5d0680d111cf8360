"""The four training stages: which model, which parameters train, and the loss of one batch.

Stage 0 and 1 train the lip+pose generator (``EDTalk_lip_pose.pt`` layout), stage 2 grows it
into the full generator (``EDTalk.pt``) and trains only the expression parts, stage 3 trains
Audio2Lip against the frozen generator's mouth coefficients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edtalk_cli.model import Audio2Lip, EDTalkGenerator, LipPoseGenerator, ModelConfig
from edtalk_cli.training.data import CROSS_DRIVERS, expression_factor_std

# Parameters trained in stage 2 (ELN = exp_fc, the exp bank and the EEM blocks); all else is frozen.
STAGE2_TRAINABLE = ("exp_fc.", "direction_exp.", "dec.fineadainresblock.")

# top-level checkpoint key and weights kind per stage
CHECKPOINT_ENTRY = {0: "gen", 1: "gen", 2: "gen", 3: "audio2lip"}
KIND = {0: "edtalk_lip_pose", 1: "edtalk_lip_pose", 2: "edtalk", 3: "audio2lip"}
FILE_NAME = {0: "EDTalk_lip_pose.pt", 1: "EDTalk_lip_pose.pt", 2: "EDTalk.pt", 3: "Audio2Lip.pt"}


@dataclass
class StepResult:
    """Loss of one batch, its named terms, and images for the sample grid (rows of (B, 3, S, S))."""

    loss: torch.Tensor
    terms: dict[str, float]
    rows: dict[str, torch.Tensor] = field(default_factory=dict)
    # adversarial training (weights.gan > 0): what the generator's GAN term scores, and the
    # real/fake images of the discriminator step (official: stage 1 shows D only the crosses)
    adv_fake: torch.Tensor | None = None
    d_real: torch.Tensor | None = None
    d_fake: torch.Tensor | None = None


def build_generator(stage: int, config: ModelConfig, copy_source: bool = False) -> nn.Module:
    """The network a stage trains (stage 3: Audio2Lip); ``copy_source``: :func:`copy_source_init`."""
    if stage in (0, 1):
        gen = LipPoseGenerator(config)
        calm_flow_init(gen)
        if copy_source:
            copy_source_init(gen)
        return gen
    if stage == 2:
        gen = EDTalkGenerator(config)
        calm_flow_init(gen)
        neutral_expression_init(gen)
        return gen
    return Audio2Lip(config)


def copy_source_init(gen: nn.Module, samples: int = 4096, mask_logit: float = 4.0) -> None:
    """Start training from scratch as a sharp copy of the (warped) source.

    In the LIA decoder the image is the sum of every level's ``ToRGB(warped features * mask)``.
    From a random init the coarse levels learn the blurry mean face first, and the finest
    level, which only sees its own pixel's warped feature, cannot learn the remaining detail
    (``pixel - blur``) pointwise: its mask decays and the output stays blurry (measured: the
    finest mask fell to 0.15 in 1000 steps). Here instead the finest ``ToRGB`` is fitted (least
    squares over random colours; the encoder's first layer is a 1x1 conv, so the finest
    features are a function of each pixel's colour) to turn the finest features back into
    the colour, its mask starts open (``sigmoid(mask_logit)``) and the coarser ``ToRGB``
    start silent. With the near-identity warps of :func:`calm_flow_init` the model starts
    by rendering the source itself; training then moves the warp and fills in what the
    source does not show. Only for models trained from scratch: loaded weights overwrite it.
    """
    stem = gen.enc.net_app.convs[0]  # ConvLayer(3, C, 1): the finest encoder features
    finest = gen.dec.to_rgbs[-1]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        colours = torch.rand(samples, 3, 1, 1, generator=generator) * 2 - 1  # (N, 3, 1, 1)
        mask = torch.sigmoid(torch.tensor(mask_logit))
        feats = (stem(colours) * mask).flatten(1)  # (N, C), as the finest ToRGB will see them
        conv, act = finest.conv[0], finest.conv[1]  # EqualConv2d (no bias), FusedLeakyReLU
        # keep the pre-activation positive (LReLU linear): out = sqrt2 * (scale W f + 2) - 2 sqrt2
        design = feats * conv.scale * math.sqrt(2.0)
        solution = torch.linalg.lstsq(design.double(), colours.flatten(1).double()).solution  # (C, 3)
        conv.weight.copy_(solution.T.float()[:, :, None, None])
        act.bias.fill_(2.0)
        finest.bias.fill_(-2.0 * math.sqrt(2.0))
        for coarse in gen.dec.to_rgbs[:-1]:
            coarse.conv[0].weight.mul_(0.01)
            coarse.bias.zero_()
        gen.dec.to_flows[-1].bias[:, 2].fill_(mask_logit)


def calm_flow_init(gen: nn.Module, scale: float = 0.01) -> None:
    """Start training from scratch with (almost) identity warps.

    With the default N(0, 1) init the flow heads predict offsets of about 0.35-0.4 (a fifth
    of the image) that scramble the source features, so the decoder learns to ignore them
    (its finest-level mask fell to 0.19 after 300 steps) and renders blurry faces. Scaling
    the flow convs down makes every level start as ``0.5 * feat`` warped by ~0 offsets, so
    the sharp source features are usable from step 1. Loaded checkpoints overwrite this.
    """
    with torch.no_grad():
        for head in gen.dec.to_flows:
            head.conv.weight.mul_(scale)


def neutral_expression_init(gen: EDTalkGenerator) -> None:
    """Start stage 2 exactly at the stage-1 model: a_exp = 0 and every EEM block = identity.

    ``exp_fc``'s last layer is zeroed (a_exp = 0, so Q_exp a_exp adds nothing to the latent)
    and each EEM's ``norm2`` gets gamma = -1, beta = 0, so ``IN(conv2 x)(1+gamma)+beta = 0``.
    Gradients still flow into all of them, so training moves away from this point.
    """
    with torch.no_grad():
        last = gen.exp_fc[-1]
        last.weight.zero_()
        last.bias.zero_()
        for block in gen.dec.fineadainresblock:
            for norm in (block.norm1, block.norm2):
                norm.mlp_gamma.weight.zero_()
                norm.mlp_gamma.bias.fill_(-1.0)
                norm.mlp_beta.weight.zero_()
                norm.mlp_beta.bias.zero_()
        gen.exp_fc[-1].weight.normal_(0.0, 1e-3)  # break the symmetry of the 10 outputs


def load_previous(stage: int, model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load the previous stage's state into ``model``; returns the keys that stay freshly initialised.

    Stage 2 takes a lip+pose state (all keys but the expression parts) or a full one; other
    stages need every key.
    """
    if stage == 2 and not any(k.startswith("direction_exp") for k in state):
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith(STAGE2_TRAINABLE) for k in missing):
            bad = unexpected or [k for k in missing if not k.startswith(STAGE2_TRAINABLE)]
            raise KeyError(f"the stage-1 checkpoint does not fit the full model: {bad[:5]}")
        return list(missing)
    model.load_state_dict(state, strict=True)
    return []


def trainable_parameters(
    stage: int,
    model: nn.Module,
    prefixes: list[str] | None = None,
    unfreeze: list[str] | None = None,
    freeze: list[str] | None = None,
) -> list[nn.Parameter]:
    """Set ``requires_grad`` per stage and return the trained parameters.

    Stage 2 trains only :data:`STAGE2_TRAINABLE`, plus the ``unfreeze`` prefixes if given,
    minus the ``freeze`` prefixes (e.g. ``["exp_fc."]``: keep a calibrated expression readout
    fixed while the decoder adapts to it); ``prefixes`` (e.g. ``["dec."]`` for person-specific
    fine-tuning) restricts the other stages to parameters with those names.
    """
    stage2 = STAGE2_TRAINABLE + tuple(unfreeze or ())
    frozen = tuple(freeze or ())
    params = []
    for name, p in model.named_parameters():
        if stage == 2:
            train = name.startswith(stage2) and not name.startswith(frozen)
        else:
            train = prefixes is None or name.startswith(tuple(prefixes))
        p.requires_grad_(train)
        if train:
            params.append(p)
    if not params:
        raise ValueError(f"no parameter matches trainable prefixes {prefixes}")
    return params


def _f(x: torch.Tensor) -> float:
    return float(x.detach())


def _masked_l1(pred: torch.Tensor, target: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor:
    """Mean L1 inside per-sample boxes (x0, y0, x1, y1)."""
    if boxes is None:
        return pred.new_zeros(())
    total = pred.new_zeros(())
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        total = total + (pred[i, :, y0:y1, x0:x1] - target[i, :, y0:y1, x0:x1]).abs().mean()
    return total / len(boxes)


def _encode_pair(gen: nn.Module, source: torch.Tensor, driver: torch.Tensor):
    """One encoder pass over both images: (w_src, feats_src, w_drv)."""
    b = source.shape[0]
    latent, feats = gen.enc(torch.cat([source, driver]))
    return latent[:b], [f[:b] for f in feats], latent[b:]


# loss terms that need the rendered image; with all of them at 0 a stage 0/2 step skips the decoder
IMAGE_TERMS = ("l1", "l2", "mouth_l1", "eyes_l1", "flow", "flow_mask", "hole_l1", "expr_diff", "gan")


def self_reconstruction(
    gen: nn.Module,
    batch: dict[str, torch.Tensor],
    weights: dict[str, float],
    teacher: nn.Module | None = None,
    render: bool | None = None,
) -> StepResult:
    """Stages 0 and 2: render the driver from the source with all motion from the driver.

    ``teacher`` (stage 2 with an unfrozen encoder): a frozen copy of the stage-1 model; the
    driver's mouth and pose coefficients are pulled towards its (``weights.keep_motion``), so
    the encoder can learn expression without moving the factors stage 1 decoupled.

    ``weights.expr_diff`` (synthetic stage 2, with ``driver_neutral`` twins in the batch): the
    same source is also driven by the neutral twin, and the *difference* of the two renders must
    equal the difference of the two drivers. Blur and misalignment are common to both renders
    and cancel, so what is left is the expression itself, which plain L1 drowns at low
    resolution (an emotion changes ~1-2 % of a 64 px frame's pixels).

    Three-way cross drivers in the batch (``mouth_driver``, ``pose_driver``, ``expression_driver``,
    see ``SyntheticWorld.pairs(crosses=...)``): each coefficient group is read from its own
    driver, as at inference, so whatever a group's reading carries of the other factors or of
    the driver's identity shows up as error against the exact target.

    ``weights.expression_anchor`` and ``weights.keep_features`` (see :func:`encoder_terms`)
    teach the encoder to read expression. ``render`` (default: only when an :data:`IMAGE_TERMS`
    weight is set) skips the decoder, so an encoder-only step costs a fraction of a full one.
    """
    source, driver = batch["source"], batch["driver"]
    w_src, feats, w_drv = _encode_pair(gen, source, driver)
    coeffs = gen.motion_coeffs(w_drv)
    loss, terms = encoder_terms(gen, batch, weights, w_src, feats, w_drv, coeffs, teacher)
    if render is None:
        render = any(weights.get(name, 0) > 0 for name in IMAGE_TERMS)
    if not render:
        terms["loss"] = _f(loss)
        return StepResult(loss, terms)
    bases = gen.motion_bases()  # one QR per step, shared with the neutral twin's render
    direction, exp_latent = gen.motion_latents(render_coefficients(gen, batch, coeffs), bases)
    flows: list | None = [] if weights.get("flow", 0) > 0 and "flow" in batch else None
    pred = gen.dec(w_src + direction, feats, exp_latent, flows)
    l1 = F.l1_loss(pred, driver)
    loss = loss + weights["l1"] * l1
    terms["l1"] = _f(l1)
    if weights.get("l2", 0) > 0:  # squared error: weighs the few large (edge) errors PSNR is made of
        l2 = F.mse_loss(pred, driver)
        loss = loss + weights["l2"] * l2
        terms["l2"] = _f(l2)
    if flows is not None:
        flow, flow_px, flow_mask = flow_supervision(flows, batch["flow"], batch["flow_valid"])
        loss = loss + weights["flow"] * flow + weights.get("flow_mask", 0.0) * flow_mask
        terms.update(flow=_f(flow), flow_px=_f(flow_px), flow_mask=_f(flow_mask))
    if weights.get("hole_l1", 0) > 0 and "flow_valid" in batch:
        holes = hole_l1(pred, driver, batch["flow_valid"])
        loss = loss + weights["hole_l1"] * holes
        terms["hole_l1"] = _f(holes)
    if weights.get("expr_diff", 0) > 0 and "driver_neutral" in batch:
        twin = batch["driver_neutral"]
        twin_coeffs = gen.motion_coeffs(gen.encode_latent(twin))
        twin_direction, twin_exp = gen.motion_latents(twin_coeffs, bases)
        twin_pred = gen.dec(w_src + twin_direction, feats, twin_exp)
        expr_diff = expression_difference_l1(pred - twin_pred, driver - twin)
        loss = loss + weights["expr_diff"] * expr_diff
        terms["expr_diff"] = _f(expr_diff)
    for region in ("mouth", "eyes"):  # extra L1 inside the driver's region boxes, when weighted
        if weights.get(f"{region}_l1", 0) > 0 and f"{region}_box" in batch:
            region_l1 = _masked_l1(pred, driver, batch[f"{region}_box"])
            loss = loss + weights[f"{region}_l1"] * region_l1
            terms[f"{region}_l1"] = _f(region_l1)
    terms["loss"] = _f(loss)
    rows = {"source": source, "driver": driver, "reconstruction": pred}
    return StepResult(loss, terms, rows, adv_fake=pred, d_real=driver, d_fake=pred)


def render_coefficients(gen: nn.Module, batch: dict[str, torch.Tensor], coeffs: torch.Tensor) -> torch.Tensor:
    """(B, K) coefficients a stage 0/2 step renders with: the driver's reading ``coeffs``, each
    group read from its own cross driver when the batch has them (:func:`cross_coefficients`),
    then the anchored columns of the ``forced`` samples replaced by their exact factors."""
    rendered = cross_coefficients(gen, batch, coeffs) if CROSS_DRIVERS[0] in batch else coeffs
    if "forced" in batch:  # teacher forcing: some drivers rendered from their exact factors
        rendered = force_factors(gen, rendered, batch["driver_factors"], batch["forced"])
    return rendered


def cross_coefficients(gen: nn.Module, batch: dict[str, torch.Tensor], coeffs: torch.Tensor) -> torch.Tensor:
    """(B, K) motion coefficients with the mouth, pose and expression groups read from the
    batch's ``mouth_driver``, ``pose_driver`` and ``expression_driver`` (one encoder pass).

    Only the rows whose cross driver differs from the target frame are encoded: a pair that is
    not crossed carries its own target as all three drivers, and its reading is ``coeffs`` already.
    """
    groups = [gen.mouth_slice, gen.pose_slice]
    if gen.has_expression:
        groups.append(gen.expression_slice)
    driver = batch["driver"]
    rows = [  # per group: indices of the crossed samples
        (batch[name] != driver).flatten(1).any(dim=1).nonzero().squeeze(1)
        for name in CROSS_DRIVERS[: len(groups)]
    ]
    out = coeffs.clone()
    if sum(len(r) for r in rows) == 0:
        return out
    drivers = torch.cat([batch[name][r] for name, r in zip(CROSS_DRIVERS, rows)])
    read = gen.motion_coeffs(gen.encode_latent(drivers)).split([len(r) for r in rows])
    for cols, r, values in zip(groups, rows, read):
        out[r, cols] = values[:, cols]
    return out


def encoder_terms(
    gen: nn.Module,
    batch: dict[str, torch.Tensor],
    weights: dict[str, float],
    w_src: torch.Tensor,
    feats: list[torch.Tensor],
    w_drv: torch.Tensor,
    coeffs: torch.Tensor,
    teacher: nn.Module | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The stage 0/2 terms that need no rendered image: (weighted sum, named terms).

    * ``anchor``: :func:`factor_anchor` on the drivers;
    * ``expression_anchor``: MSE of the 7 anchored expression coefficients to the exact
      expression, on the drivers and (with ``source_factors``) the sources. The plain anchor
      averages them with 8 pose and mouth columns that are already right, and most of an
      expression is a few pixels, so on its own it never taught the encoder to read one;
    * ``expression_balanced``: the same with each factor's error divided by its variance
      (:func:`~edtalk_cli.training.data.expression_factor_std`), so the smirk, whose spread is
      half the others', is not left with a quarter of their weight;
    * ``keep_motion``: the driver's mouth and pose coefficients stay the ``teacher``'s;
    * ``keep_features``: the encoder's latent and feature maps (source and driver) stay the
      ``teacher``'s, so the decoder, which reads them, keeps working while the encoder learns.
    """
    loss = coeffs.new_zeros(())
    terms: dict[str, float] = {}
    if weights.get("anchor", 0) > 0 and "driver_factors" in batch:
        anchor = factor_anchor(gen, coeffs, batch["driver_factors"])
        loss = loss + weights["anchor"] * anchor
        terms["anchor"] = _f(anchor)
    anchor_weight, balanced_weight = (
        weights.get("expression_anchor", 0),
        weights.get("expression_balanced", 0),
    )
    if (anchor_weight > 0 or balanced_weight > 0) and "driver_factors" in batch:
        read, exact = [coeffs], [batch["driver_factors"]]
        if "source_factors" in batch:
            read.append(gen.motion_coeffs(w_src))
            exact.append(batch["source_factors"])
        read_all, exact_all = torch.cat(read), torch.cat(exact)
        if anchor_weight > 0:
            expression = expression_anchor(gen, read_all, exact_all)
            loss = loss + anchor_weight * expression
            terms["expression_anchor"] = _f(expression)
        if balanced_weight > 0:
            per_factor = 1.0 / torch.from_numpy(expression_factor_std()).to(read_all) ** 2
            balanced = expression_anchor(gen, read_all, exact_all, per_factor)
            loss = loss + balanced_weight * balanced
            terms["expression_balanced"] = _f(balanced)
    keep_motion, keep_features = weights.get("keep_motion", 0), weights.get("keep_features", 0)
    if teacher is not None and (keep_motion > 0 or keep_features > 0):
        b = w_src.shape[0]
        with torch.no_grad():  # the teacher's source pass only when its features are kept
            images = torch.cat([batch["source"], batch["driver"]]) if keep_features > 0 else batch["driver"]
            t_latent, t_feats = teacher.enc(images)
        if keep_motion > 0:
            kept = slice(0, gen.pose_slice.stop)  # [mouth | pose] coefficients
            with torch.no_grad():
                target = teacher.motion_coeffs(t_latent[-b:])[:, kept]
            keep = F.mse_loss(coeffs[:, kept], target)
            loss = loss + keep_motion * keep
            terms["keep_motion"] = _f(keep)
        if keep_features > 0:  # the source's features feed the decoder; the driver's only its latent
            kept_feats = torch.stack(
                [F.mse_loss(f, t[:b]) / t[:b].pow(2).mean().clamp_min(1e-6) for f, t in zip(feats, t_feats)]
            ).mean()
            latent = torch.cat([w_src, w_drv])
            kept_latent = F.mse_loss(latent, t_latent) / t_latent.pow(2).mean().clamp_min(1e-6)
            keep = kept_feats + kept_latent
            loss = loss + keep_features * keep
            terms["keep_features"] = _f(keep)
    return loss, terms


def expression_anchor(
    gen: nn.Module, coeffs: torch.Tensor, factors: torch.Tensor, per_factor: torch.Tensor | None = None
) -> torch.Tensor:
    """MSE of the 7 anchored expression coefficients (of (B, K)) to the factors' expression (B, 15).

    ``per_factor`` (7,) weighs each factor's squared error (``expression_balanced``: the inverse of
    the factor's variance, so the loss is about the sum of 1 - r² and a factor with a small spread,
    such as the smirk, counts as much as the others).
    """
    coeff_cols, factor_cols = expression_columns(gen)
    error = (coeffs[:, coeff_cols] - factors[:, factor_cols].to(coeffs.dtype)) ** 2  # (B, 7)
    if per_factor is not None:
        error = error * per_factor
    return error.mean()


def hole_l1(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean L1 over the pixels the source does not show (``valid`` (B, S, S) == 0).

    What the warp cannot copy (the inside of a mouth that opens, the cheek a head turn
    reveals) must be generated by the decoder's coarse levels; these pixels are a few percent
    of the frame, so plain L1 barely sees them.
    """
    holes = (1.0 - valid)[:, None]  # (B, 1, S, S)
    return ((pred - target).abs() * holes).sum() / (3 * holes.sum()).clamp_min(1.0)


def anchored_columns(gen: nn.Module) -> tuple[list[int], list[int]]:
    """(coefficient columns, factor columns) the anchor ties together.

    The 6 pose coefficients read (yaw, pitch, roll, tx, ty, scale), the first 2 mouth
    coefficients (jaw, lip) and, in the full model, the first 7 expression coefficients the
    expression (brow raise, furrow, smile, smirk, eye opening, wrinkle, blink); factor columns
    follow ``factor_vector``. The other mouth and expression coefficients stay free.
    """
    ms, ps = gen.mouth_slice, gen.pose_slice
    coeff_cols = [*range(ps.start, ps.stop), ms.start, ms.start + 1]
    factor_cols = list(range(8))
    if gen.has_expression:
        expression_coeffs, expression_factors = expression_columns(gen)
        coeff_cols += expression_coeffs
        factor_cols += expression_factors
    return coeff_cols, factor_cols


def expression_columns(gen: nn.Module) -> tuple[list[int], list[int]]:
    """The expression part of :func:`anchored_columns` (full model): the first 7 expression
    coefficients and the 7 expression factors of ``factor_vector`` (brow raise ... blink)."""
    start = gen.expression_slice.start
    return list(range(start, start + 7)), list(range(8, 15))


def factor_anchor(gen: nn.Module, coeffs: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """MSE of the anchored coefficients (B, K) to exact synthetic factors (B, 15) of ``factor_vector``,
    all scaled to about [-1, 1] (see :func:`anchored_columns`)."""
    coeff_cols, factor_cols = anchored_columns(gen)
    return F.mse_loss(coeffs[:, coeff_cols], factors[:, factor_cols].to(coeffs.dtype))


def force_factors(
    gen: nn.Module, coeffs: torch.Tensor, factors: torch.Tensor, forced: torch.Tensor
) -> torch.Tensor:
    """The coefficients to render with: for samples with ``forced`` (B,) = 1 the anchored columns
    hold the exact factors instead of the encoder's reading (teacher forcing), so the decoder
    learns to render a factor before the encoder has learnt to read it."""
    coeff_cols, factor_cols = anchored_columns(gen)
    out = coeffs.clone()
    exact = factors[:, factor_cols].to(coeffs.dtype)
    out[:, coeff_cols] = torch.where(forced[:, None] > 0, exact, coeffs[:, coeff_cols])
    return out


def flow_supervision(
    flows: list[tuple[torch.Tensor, torch.Tensor]], grid: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distance of every warp level's sampling grid to the exact correspondence, in image pixels.

    flows: per level (grid (B, r, r, 2), mask (B, 1, r, r)) from ``Synthesis.render``; grid
    (B, S, S, 2) the exact driver-to-source grid (``grid_sample`` coordinates, the same at every
    resolution) and valid (B, S, S) where it holds. A level's target is the mean of the valid
    fine grid points inside each of its cells; cells less than 3/4 valid are not scored. The
    L1 distance |dx| + |dy| is measured in pixels of the S-pixel image.

    Returns (mean distance over levels, the finest level's distance, the finest mask's binary
    cross-entropy to ``valid``: open where the source shows the pixel, shut where it does not).
    """
    size = grid.shape[1]
    exact = grid.permute(0, 3, 1, 2) * valid[:, None]  # (B, 2, S, S), zero where invalid
    per_level = []
    for level_grid, _mask in flows:
        factor = size // level_grid.shape[1]
        cover = F.avg_pool2d(valid[:, None], factor) if factor > 1 else valid[:, None]
        target = F.avg_pool2d(exact, factor) / cover.clamp_min(1e-6) if factor > 1 else exact
        scored = (cover >= 0.75).to(target.dtype)  # (B, 1, r, r)
        distance = (level_grid.permute(0, 3, 1, 2) - target).abs().sum(1, keepdim=True) * (size / 2)
        per_level.append((distance * scored).sum() / scored.sum().clamp_min(1.0))
    finest_mask = flows[-1][1]
    if finest_mask.shape[-1] == size:
        mask_bce = F.binary_cross_entropy(finest_mask.clamp(1e-6, 1 - 1e-6), valid[:, None])
    else:
        mask_bce = finest_mask.new_zeros(())
    return torch.stack(per_level).mean(), per_level[-1], mask_bce


def expression_difference_l1(pred_delta: torch.Tensor, target_delta: torch.Tensor) -> torch.Tensor:
    """Summed |pred_delta - target_delta| per image over the count of pixels the expression moves.

    (B, 3, S, S) each, in [-1, 1] units. Normalising by the changed pixels rather than
    by the whole frame keeps the term's size independent of how small the expression is
    (a pixel counts as changed when a channel moved by more than one intensity level).
    """
    changed = (target_delta.abs() > 2.0 / 255).any(1).flatten(1).sum(1).clamp(min=16)  # (B,)
    return ((pred_delta - target_delta).abs().sum((1, 2, 3)) / (3 * changed)).mean()


def _space_latents(
    gen: nn.Module, coeffs: torch.Tensor, bases: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mouth latent sum_k a_k q_k over the mouth bank, and the same over the pose bank (B, style)."""
    ms, ps = gen.mouth_slice, gen.pose_slice
    return coeffs[:, ms] @ bases[:, ms].T, coeffs[:, ps] @ bases[:, ps].T


def _exp_neg_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum over the batch of exp(-cos(a, b)) (the official feature loss is summed, not averaged)."""
    return torch.exp(-F.cosine_similarity(a, b, dim=1)).sum()


def cross_reconstruction(
    gen: nn.Module, batch: dict[str, torch.Tensor], weights: dict[str, float]
) -> StepResult:
    """Stage 1: self-reconstruction of A and B plus cross-reconstruction through mouth swaps.

    A's mouth is read from ``b_with_a_mouth`` (B's face wearing A's mouth) and A's pose from
    ``a_with_b_mouth`` (A's face and pose wearing B's mouth); decoded from A's identity frame
    they must give A's target frame. Symmetric for B.
    """
    b = batch["a"].shape[0]
    images = torch.cat([batch[k] for k in ("a_id", "b_id", "a", "b", "a_with_b_mouth", "b_with_a_mouth")])
    latent, feats = gen.enc(images)
    w = latent.split(b)
    src_feats = [f[: 2 * b] for f in feats]
    w_src = torch.cat([w[0], w[1]])
    bases = gen.motion_bases()
    c_a, c_b, c_ab, c_ba = (gen.motion_coeffs(x) for x in w[2:])
    ms, ps = gen.mouth_slice, gen.pose_slice
    # cross coefficients: mouth from the other composite, pose from the own composite
    cross_a = torch.cat([c_ba[:, ms], c_ab[:, ps]], dim=1)
    cross_b = torch.cat([c_ab[:, ms], c_ba[:, ps]], dim=1)
    coeffs = torch.cat([torch.cat([c_a, c_b]), torch.cat([cross_a, cross_b])])  # (4b, K)
    direction, _ = gen.motion_latents(coeffs, bases)
    feats4 = [torch.cat([f, f]) for f in src_feats]
    flows: list | None = [] if weights.get("flow", 0) > 0 and "flow_a" in batch else None
    pred = gen.dec.render(torch.cat([w_src, w_src]) + direction, feats4, flows)
    target = torch.cat([batch["a"], batch["b"]])
    self_pred, cross_pred = pred[: 2 * b], pred[2 * b :]
    l1 = F.l1_loss(self_pred, target)
    cross_l1 = F.l1_loss(cross_pred, target)
    lip_a, pose_a = _space_latents(gen, c_a, bases)
    lip_b, pose_b = _space_latents(gen, c_b, bases)
    lip_ax, pose_ax = _space_latents(gen, cross_a, bases)
    lip_bx, pose_bx = _space_latents(gen, cross_b, bases)
    lip_space = _exp_neg_cos(lip_ax, lip_a) + _exp_neg_cos(lip_bx, lip_b)
    pose_space = _exp_neg_cos(pose_ax, pose_a) + _exp_neg_cos(pose_bx, pose_b)
    loss = (
        weights["l1"] * l1
        + weights["cross_l1"] * cross_l1
        + weights["lip_space"] * lip_space
        + weights["pose_space"] * pose_space
    )
    terms = {
        "l1": _f(l1),
        "cross_l1": _f(cross_l1),
        "lip_space": _f(lip_space),
        "pose_space": _f(pose_space),
    }
    if weights.get("anchor", 0) > 0 and "a_factors" in batch:
        names = ("a", "b", "a_with_b_mouth", "b_with_a_mouth")
        anchor = factor_anchor(
            gen, torch.cat([c_a, c_b, c_ab, c_ba]), torch.cat([batch[f"{n}_factors"] for n in names])
        )
        loss = loss + weights["anchor"] * anchor
        terms["anchor"] = _f(anchor)
    if flows is not None:  # self and cross renders of A (and of B) share one exact flow
        grid = torch.cat([batch["flow_a"], batch["flow_b"]] * 2)
        valid = torch.cat([batch["flow_a_valid"], batch["flow_b_valid"]] * 2)
        flow, flow_px, flow_mask = flow_supervision(flows, grid, valid)
        loss = loss + weights["flow"] * flow + weights.get("flow_mask", 0.0) * flow_mask
        terms.update(flow=_f(flow), flow_px=_f(flow_px), flow_mask=_f(flow_mask))
    if weights.get("hole_l1", 0) > 0 and "flow_a_valid" in batch:
        valid = torch.cat([batch["flow_a_valid"], batch["flow_b_valid"]])
        holes = hole_l1(self_pred, target, valid) + hole_l1(cross_pred, target, valid)
        loss = loss + weights["hole_l1"] * holes
        terms["hole_l1"] = _f(holes)
    terms = {"loss": _f(loss), **terms}
    rows = {
        "a_id": batch["a_id"],
        "b_with_a_mouth": batch["b_with_a_mouth"],
        "a_with_b_mouth": batch["a_with_b_mouth"],
        "a": batch["a"],
        "self_a": self_pred[:b],
        "cross_a": cross_pred[:b],
    }
    return StepResult(loss, terms, rows, adv_fake=pred, d_real=target, d_fake=cross_pred)


def generator_adversarial(dis: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``softplus(-D(fake)).mean()``."""
    return F.softplus(-dis(fake)).mean()


def discriminator_loss(dis: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Logistic D loss ``softplus(-D(real)) + softplus(D(fake))`` (no R1, as in the official code)."""
    return F.softplus(-dis(real)).mean() + F.softplus(dis(fake.detach())).mean()


def audio_to_lip(a2l: Audio2Lip, batch: dict[str, torch.Tensor], weights: dict[str, float]) -> StepResult:
    """Stage 3: MSE to the target mouth coefficients + weighted MSE of their temporal differences.

    batch: ``mel`` (B, T, 1, 80, 16), ``target`` (B, T, lip_dim).
    """
    pred = a2l(batch["mel"])  # (B, T, lip)
    target = batch["target"]
    l2 = F.mse_loss(pred, target)
    smooth = (
        F.mse_loss(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1])
        if pred.shape[1] > 1
        else pred.new_zeros(())
    )
    loss = weights["coeff_l2"] * l2 + weights["smooth"] * smooth
    return StepResult(loss, {"loss": _f(loss), "coeff_l2": _f(l2), "smooth": _f(smooth)})


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [-1, 1], on the [0, 1] scale: (B,)."""
    mse = ((pred.clamp(-1, 1) - target) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def np_seed(seed: int, step: int) -> np.random.Generator:
    """The data generator of one step (resume draws the same batches)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(step), 0x7A1]))
