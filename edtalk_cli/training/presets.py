"""The 8 emotion presets a trained full model exports, and how well they render.

``edtalk train export`` builds them from the encoder (:func:`emotion_presets`), from the exact
factors of an anchored model (:func:`anchored_presets`) or fitted to the model's own rendering
(:func:`fitted_presets`); :func:`preset_render_error` checks a table on held-out identities.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from edtalk_cli.model.generator import SourceEncoding
from edtalk_cli.synthetic import EMOTIONS, Expression, Mouth, Pose, emotion_expression
from edtalk_cli.training import stages
from edtalk_cli.training.data import SyntheticWorld, factor_vector, sample_mouth, to_tensor


@torch.no_grad()
def emotion_presets(
    gen: nn.Module, size: int, identities: int = 12, frames_per_identity: int = 4, seed: int = 0
) -> dict[str, np.ndarray]:
    """Mean ``exp_fc(fc(E(frame)))`` per emotion prototype (intensity 1) over training identities.

    Frames have small random poses and random speech mouths, so only the expression is
    constant within an emotion. Returns name -> (1, exp_dim) float32.
    """
    world = SyntheticWorld(size, 400, "all")
    dev = next(gen.parameters()).device
    out: dict[str, np.ndarray] = {}
    for e_i, name in enumerate(EMOTIONS):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE30, e_i]))
        imgs = []
        for i in range(identities):
            ident = world.identity(i * 7)
            for _ in range(frames_per_identity):
                pose = Pose(yaw=float(rng.uniform(-8, 8)), pitch=float(rng.uniform(-5, 5)))
                imgs.append(world.render(ident, pose, sample_mouth(rng), emotion_expression(name, 1.0)))
        latent = gen.encode_latent(to_tensor(imgs).to(dev))
        coeffs = gen.expression_coeffs(latent)
        out[name] = coeffs.mean(0, keepdim=True).cpu().numpy().astype(np.float32)
    return out


def anchored_preset_columns(gen: nn.Module) -> list[int]:
    """Indices, within a (1, exp_dim) preset, of the 7 anchored expression coefficients."""
    return [c - gen.expression_slice.start for c in stages.expression_columns(gen)[0]]


def anchored_presets(gen: nn.Module) -> dict[str, np.ndarray]:
    """The 8 presets of a model trained with ``weights.anchor``: each emotion prototype's exact
    factors (intensity 1, no blink) in the anchored expression coefficients, zeros elsewhere.

    Such a model's expression coefficients *are* the scaled factors, so the prototypes are its
    presets directly, without reading rendered faces through the encoder.
    """
    factor_cols = stages.expression_columns(gen)[1]
    own_cols = anchored_preset_columns(gen)
    out = {}
    for name in EMOTIONS:
        factors = factor_vector(Pose(), Mouth(), emotion_expression(name, 1.0))
        vec = np.zeros((1, gen.config.exp_dim), dtype=np.float32)
        vec[0, own_cols] = factors[factor_cols]
        out[name] = vec
    return out


@torch.no_grad()
def _neutral_sources(
    gen: nn.Module, world: SyntheticWorld, people: list
) -> tuple[SourceEncoding, torch.Tensor]:
    """``people``'s neutral faces encoded as sources, and their own mouth and pose coefficients
    (N, lip+pose): what a render with a preset keeps of the source."""
    dev = next(gen.parameters()).device
    neutral = [world.renderer.render(p, Pose(), Mouth(), Expression()).image for p in people]
    source = gen.encode_source(to_tensor(neutral).to(dev))
    return source, gen.motion_coeffs(source.latent)[:, : gen.expression_slice.start]


def _prototype_faces(
    world: SyntheticWorld, people: list, name: str, dev: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The renderer's exact ``name`` prototype (intensity 1) on ``people``: images (N, 3, S, S)
    and the eyes, brows and mouth mask (N, 1, S, S), where the emotions differ."""
    frames = [world.renderer.render(p, Pose(), Mouth(), emotion_expression(name, 1.0)) for p in people]
    region = np.stack([f.masks["eyes"] | f.masks["brows"] | f.masks["mouth"] for f in frames])
    target = to_tensor([f.image for f in frames]).to(dev)
    return target, torch.from_numpy(region).to(dev, torch.float32)[:, None]


def _render_preset(
    gen: nn.Module, source: SourceEncoding, own_motion: torch.Tensor, preset: torch.Tensor
) -> torch.Tensor:
    """The sources with their own mouth and pose and the (1, exp_dim) ``preset`` expression."""
    return gen.synthesize(source, torch.cat([own_motion, preset.expand(len(own_motion), -1)], dim=1))


def _region_l1(error: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean of |error| (N, 3, S, S) inside ``region`` (N, 1, S, S)."""
    return (error * region).sum() / (3 * region.sum())


def fitted_presets(
    gen: nn.Module,
    size: int,
    start: dict[str, np.ndarray],
    columns: list[int],
    identities: int = 16,
    steps: int = 100,
    lr: float = 0.05,
    progress: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Presets fitted to the model's own rendering of the emotion prototypes.

    Each preset starts at ``start[name]`` ((1, exp_dim), e.g. :func:`anchored_presets`) and only
    its ``columns`` (indices within the preset) move: Adam on the L1 error between the model
    animating neutral training identities (their own mouth and pose, the preset's expression, as
    a render with the preset does) and the renderer's exact prototype face, over the whole frame
    plus, once more, over the eyes, brows and mouth, where the emotions differ. A decoder that
    under- or mis-renders an expression thus gets the coefficients that show it; the
    evaluation's held-out identities (:func:`preset_render_error`) say whether that carries over
    to new faces. Returns name -> (1, exp_dim) float32.
    """
    world = SyntheticWorld(size, 400, "all")
    dev = next(gen.parameters()).device
    people = [world.identity(i * 7) for i in range(identities)]
    grads = [p.requires_grad for p in gen.parameters()]
    gen.requires_grad_(False)
    try:
        source, own_motion = _neutral_sources(gen, world, people)
        out: dict[str, np.ndarray] = {}
        for name in EMOTIONS:
            target, region = _prototype_faces(world, people, name, dev)
            base = torch.as_tensor(start[name], dtype=torch.float32, device=dev)  # (1, exp_dim)
            movable = torch.zeros_like(base)
            movable[:, columns] = 1.0
            delta = torch.zeros_like(base, requires_grad=True)
            optim = torch.optim.Adam([delta], lr=lr)
            for _ in range(steps):
                error = (_render_preset(gen, source, own_motion, base + delta * movable) - target).abs()
                loss = error.mean() + _region_l1(error, region)
                optim.zero_grad()
                loss.backward()
                optim.step()
            out[name] = (base + delta.detach() * movable).cpu().numpy().astype(np.float32)
            if progress is not None:
                progress(name)
        return out
    finally:
        for param, flag in zip(gen.parameters(), grads):
            param.requires_grad_(flag)


@torch.no_grad()
def preset_render_error(
    gen: nn.Module, size: int, presets: dict[str, np.ndarray], identities: int = 8
) -> dict[str, float]:
    """Per preset, the L1 error in the eyes, brows and mouth between its render of ``identities``
    *held-out* neutral faces and the renderer's exact prototype face (what :func:`fitted_presets`
    lowers on training identities)."""
    world = SyntheticWorld(size, identities, "all", held_out=True)
    dev = next(gen.parameters()).device
    people = [world.identity(i) for i in range(identities)]
    source, own_motion = _neutral_sources(gen, world, people)
    out = {}
    for name in EMOTIONS:
        target, region = _prototype_faces(world, people, name, dev)
        preset = torch.as_tensor(presets[name], dtype=torch.float32, device=dev)
        out[name] = float(
            _region_l1((_render_preset(gen, source, own_motion, preset) - target).abs(), region)
        )
    return out
