"""The training loop shared by all stages: checkpoints, resume, loss log, sample grids."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn

from edtalk_cli.atomic import atomic_write
from edtalk_cli.errors import EdtalkError
from edtalk_cli.model import Discriminator, EDTalkGenerator, LipPoseGenerator, ModelConfig
from edtalk_cli.training import stages
from edtalk_cli.training.config import STAGES, TrainConfig
from edtalk_cli.training.data import CROSS_DRIVERS, AudioPool, DatasetFrames, SyntheticWorld, to_uint8

LATEST = "latest.pt"
LOG_NAME = "losses.jsonl"


@dataclass
class TrainResult:
    """Where a stage's output went and how it ended."""

    checkpoint: Path  # the final file in the official layout (EDTalk*.pt / Audio2Lip.pt)
    step: int  # iterations done in total
    seconds: float  # wall time of this run (not counting earlier runs of a resumed stage)
    last_terms: dict[str, float]
    stopped_early: bool  # max_minutes ran out before ``iterations``


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The learning rate of ``step`` (0-based): constant, or cosine from ``lr`` to ``lr_final`` over the
    iterations, scaled by a linear warm-up ``(step + 1) / lr_warmup`` over the first ``lr_warmup`` steps."""
    warm = min((step + 1) / cfg.lr_warmup, 1.0) if cfg.lr_warmup > 0 else 1.0
    if cfg.lr_final is None:
        return cfg.lr * warm
    progress = min(step / max(cfg.iterations, 1), 1.0)
    return warm * (cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * progress)))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EdtalkError(
            "device 'cuda' was asked for but no CUDA GPU is available", hint="use device: auto or cpu"
        )
    return torch.device(name)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_write(path, "wb") as fh:
        torch.save(obj, fh)


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a checkpoint written by ``edtalk train``."""
    path = Path(path)
    if not path.is_file():
        raise EdtalkError(
            f"checkpoint {path} does not exist", hint="give the .pt written by the previous stage"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EdtalkError(f"checkpoint {path} could not be read: {exc}") from None
    if not isinstance(obj, dict) or not ({"gen", "audio2lip"} & set(obj)):
        raise EdtalkError(
            f"checkpoint {path} has no 'gen' or 'audio2lip' entry", hint="is it an EDTalk checkpoint?"
        )
    return obj


def checkpoint_model_config(ckpt: dict[str, Any], fallback: ModelConfig) -> ModelConfig:
    """The ModelConfig stored in a checkpoint's ``args`` (or ``fallback``)."""
    args = ckpt.get("args")
    if isinstance(args, dict) and isinstance(args.get("model"), dict):
        return ModelConfig.from_dict(args["model"])
    return fallback


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A generator (lip+pose or full, from the keys) from a training checkpoint, in eval mode."""
    ckpt = read_training_checkpoint(path)
    if "gen" not in ckpt:
        raise EdtalkError(f"checkpoint {path} holds no generator ('gen')")
    config = checkpoint_model_config(ckpt, ModelConfig())
    full = any(k.startswith("direction_exp") for k in ckpt["gen"])
    gen = (EDTalkGenerator if full else LipPoseGenerator)(config)
    gen.load_state_dict(ckpt["gen"], strict=True)
    return gen.to(device).eval()


def load_any_generator(path: str | Path) -> nn.Module:
    """A generator in eval mode from a training checkpoint (``.pt``), a weights directory (its
    full model) or a weights file."""
    from edtalk_cli.weights import load_model

    path = Path(path)
    if path.is_dir():
        return load_model(path, "edtalk")[0]
    if path.suffix == ".pt":
        return load_generator(path)
    return load_model(path)[0]


def load_any_audio2lip(path: str | Path) -> nn.Module:
    """Audio2Lip in eval mode from a stage-3 training checkpoint (``.pt``), a weights directory or
    a weights file."""
    from edtalk_cli.model import Audio2Lip
    from edtalk_cli.weights import load_model

    path = Path(path)
    if path.suffix != ".pt":
        return load_model(path, "audio2lip")[0]
    ckpt = read_training_checkpoint(path)
    model = Audio2Lip(checkpoint_model_config(ckpt, None))
    model.load_state_dict(ckpt["audio2lip"], strict=True)
    return model.eval()


def read_init(path: str | Path, model_cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Generator state to start from: a ``.pt`` of ``edtalk train`` (its model config must match)
    or any generator file that ``edtalk_cli.weights`` reads (official ``.pt``, safetensors)."""
    from edtalk_cli.weights import read_checkpoint

    p = Path(path)
    if not p.is_file():
        raise EdtalkError(
            f"init checkpoint {p} does not exist", hint="give the file written by the previous stage"
        )
    ckpt = None
    if p.suffix == ".pt":
        try:
            ckpt = read_training_checkpoint(p)
        except EdtalkError:
            ckpt = None
    if ckpt is not None and isinstance(ckpt.get("args"), dict):
        if "gen" not in ckpt:
            raise EdtalkError(
                f"init checkpoint {p} holds no generator", hint="give the stage 1 or 2 .pt file"
            )
        init_cfg = checkpoint_model_config(ckpt, model_cfg)
        # the same weights may start an ablation without the QR (same tensors, other bases)
        if replace(init_cfg, orthogonal_bases=model_cfg.orthogonal_bases) != model_cfg:
            raise EdtalkError(
                f"init checkpoint {p} was trained with a different model config",
                hint=f"set model: to {init_cfg.to_dict()}",
            )
        return ckpt["gen"]
    kind, state, _ = read_checkpoint(p)
    if kind == "audio2lip":
        raise EdtalkError(f"init checkpoint {p} is an Audio2Lip file, not a generator")
    return dict(state)


def _load_init_discriminator(path: str | Path, dis: Discriminator) -> bool:
    """Start the discriminator from the init checkpoint's ``dis`` entry, when it has one.

    Official training checkpoints (and person-specific fine-tuning, spec 5.7) carry ``dis``
    next to ``gen``; files without it (released inference weights, safetensors) leave D fresh.
    """
    p = Path(path)
    if p.suffix != ".pt":
        return False
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # not a plain-tensor checkpoint: read_init already judged the generator
        return False
    state = obj.get("dis") if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        return False
    try:
        dis.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise EdtalkError(
            f"the discriminator ('dis') in {p} does not fit this model config: {str(exc).splitlines()[0][:200]}",
            hint="the 'model' fields of the config must match the checkpoint",
        ) from None
    return True


def save_grid(rows: dict[str, torch.Tensor], path: Path, max_cols: int = 4) -> None:
    """One row per entry (first ``max_cols`` samples side by side), PNG written atomically."""
    strips = [np.concatenate(list(to_uint8(t[:max_cols])), axis=1) for t in rows.values()]
    grid = np.concatenate(strips, axis=0)
    with atomic_write(path, "wb", suffix=".tmp.png") as fh:
        Image.fromarray(grid).save(fh, format="PNG")


def _data_source(cfg: TrainConfig, size: int):
    if cfg.data == "synthetic":
        return SyntheticWorld(size, cfg.identities, cfg.emotions)
    return DatasetFrames(cfg.data, size)


def validation_batch(cfg: TrainConfig, size: int) -> dict[str, torch.Tensor]:
    """A fixed held-out batch: unseen synthetic identities, or the dataset's 'test' split."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x7E57]))
    if cfg.data == "synthetic":
        held_out = SyntheticWorld(size, max(cfg.validate_pairs, 4), cfg.emotions, held_out=True)
    else:
        held_out = DatasetFrames(cfg.data, size, split="test")
    if cfg.stage == 1:
        return held_out.swaps(rng, cfg.validate_pairs, **_swap_options(cfg))
    return held_out.pairs(rng, cfg.validate_pairs, **_pair_options(cfg, validation=True))


def _pair_options(cfg: TrainConfig, validation: bool = False) -> dict[str, Any]:
    """Keyword options of ``SyntheticWorld.pairs`` (none by default: datasets take none).

    Validation uses the training sources but always full motions (no near pairs) and, with
    ``cross_drivers``, three-way cross drivers for every pair (``val_cross_psnr``).
    """
    options: dict[str, Any] = {}
    if cfg.near_pairs > 0 and not validation:
        options["near"] = cfg.near_pairs
    if cfg.sources == "neutral":
        options["neutral_source"] = True
    if cfg.weights.get("expr_diff", 0) > 0:
        options["expression_twins"] = True
    if cfg.weights.get("flow", 0) > 0:
        options["flows"] = True
    if cfg.forced_factors > 0 and not validation:
        options["forced"] = cfg.forced_factors
    if cfg.cross_drivers > 0:
        options["crosses"] = 1.0 if validation else cfg.cross_drivers
    return options


def _swap_options(cfg: TrainConfig) -> dict[str, Any]:
    """Keyword options of ``SyntheticWorld.swaps`` (none for datasets)."""
    return {"flows": True} if cfg.weights.get("flow", 0) > 0 else {}


@torch.no_grad()
def validate(stage: int, model: nn.Module, batch: dict[str, torch.Tensor], weights: dict[str, float]):
    """Held-out reconstruction PSNR (dB): ``val_psnr``, and ``val_cross_psnr`` for stage 1 and for
    a stage 0/2 batch with three-way cross drivers (the same targets, each group read from another
    identity's frame)."""
    was_training = model.training
    model.eval()
    try:
        if stage == 1:
            rows = stages.cross_reconstruction(model, batch, weights).rows
            return {
                "val_psnr": float(stages.psnr(rows["self_a"], rows["a"]).mean()),
                "val_cross_psnr": float(stages.psnr(rows["cross_a"], rows["a"]).mean()),
            }
        plain = {k: v for k, v in batch.items() if k not in CROSS_DRIVERS}
        rows = stages.self_reconstruction(model, plain, weights, render=True).rows
        scores = {"val_psnr": float(stages.psnr(rows["reconstruction"], rows["driver"]).mean())}
        if CROSS_DRIVERS[0] in batch:
            rows = stages.self_reconstruction(model, batch, weights, render=True).rows
            scores["val_cross_psnr"] = float(stages.psnr(rows["reconstruction"], rows["driver"]).mean())
        return scores
    finally:
        model.train(was_training)


class _AudioBatches:
    """Stage 3: a pool of clips with the frozen generator's mouth coefficients as targets."""

    def __init__(self, pool: AudioPool, targets: list[torch.Tensor], window: int) -> None:
        self.pool, self.targets, self.window = pool, targets, window

    def batch(self, rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
        mels, targets = [], []
        for _ in range(size):
            c = int(rng.integers(len(self.pool.mels)))
            t = int(rng.integers(len(self.pool.mels[c]) - self.window + 1))
            mels.append(torch.from_numpy(self.pool.mels[c][t : t + self.window]))
            targets.append(self.targets[c][t : t + self.window])
        return {"mel": torch.stack(mels)[:, :, None], "target": torch.stack(targets)}


class StepBatches(torch.utils.data.Dataset):
    """Training batch number ``step``: a pure function of (seed, step), so any process can make it.

    Indexing by step keeps a run bit for bit the same whether its batches are made inline or
    ahead of the model by DataLoader workers, and a resumed run continues the same sequence.
    """

    def __init__(self, cfg: TrainConfig, source: Any, audio: _AudioBatches | None) -> None:
        self.stage, self.seed, self.batch_size = cfg.stage, cfg.seed, cfg.batch_size
        self.source, self.audio = source, audio
        self.options = _swap_options(cfg) if cfg.stage == 1 else _pair_options(cfg)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = stages.np_seed(self.seed, step)
        if self.stage == 3:
            assert self.audio is not None
            return self.audio.batch(rng, self.batch_size)
        if self.stage == 1:
            return self.source.swaps(rng, self.batch_size, **self.options)
        return self.source.pairs(rng, self.batch_size, **self.options)


def data_workers(cfg: TrainConfig, device: torch.device) -> int:
    """``cfg.data_workers``, or by default: on a GPU up to 8 (one core kept for the loop); on a
    CPU one, if a core is left over by the model's ``threads``, else none.

    Making a batch (the synthetic world's renders) takes 0.1-0.2 s on one core: on a GPU that
    is the whole step, and on a 2-core CPU one worker makes a 64 px stage-2 leg about 1.4x faster
    (measurement in docs/training.md).
    """
    if cfg.data_workers is not None:
        return cfg.data_workers
    cores = os.cpu_count() or 1
    if device.type == "cpu":
        return 1 if cores > cfg.threads else 0
    return min(8, max(1, cores - 1))


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)


def iter_batches(
    dataset: StepBatches, steps: range, workers: int, pin_memory: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """The batches of ``steps`` in order: inline, or made ahead by ``workers`` processes."""
    if workers == 0:
        return (dataset[step] for step in steps)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,  # each item is already a batch
        sampler=steps,
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_one_thread,
        prefetch_factor=2,
    )
    return iter(loader)


@torch.no_grad()
def mouth_targets(
    gen: nn.Module, frames: list[np.ndarray], device: torch.device, chunk: int = 32
) -> list[torch.Tensor]:
    """``lip_fc(fc(E(frame)))`` of every frame of every clip: list of (T, lip_dim)."""
    from edtalk_cli.training.data import to_tensor

    out = []
    for clip in frames:
        parts = [
            gen.mouth_coeffs(gen.encode_latent(to_tensor(clip[i : i + chunk]).to(device)))
            for i in range(0, len(clip), chunk)
        ]
        out.append(torch.cat(parts).cpu())
    return out


ProgressCallback = Callable[[int, int, dict[str, float]], None]
"""``progress(step, iterations, terms)``: once before the first step (empty terms), then after each."""


@dataclass
class _StageModels:
    """The model a stage trains, its optimizer, and the models around it."""

    model: nn.Module
    opt: torch.optim.Optimizer
    frozen_gen: nn.Module | None  # stage 3: the trained generator whose mouth coefficients are the targets
    teacher: nn.Module | None  # stage 2 with keep_motion/keep_features: the frozen init model
    dis: Discriminator | None  # weights.gan > 0
    d_opt: torch.optim.Optimizer | None


def _load_init(cfg: TrainConfig, model: nn.Module, device: torch.device, fresh: bool) -> nn.Module | None:
    """Start ``model`` from ``cfg.init`` (a fresh run of stages 0-2), or, for stage 3, return the
    frozen generator read from it (also on resume)."""
    stage, model_cfg = cfg.stage, cfg.model_config
    if stage == 3 and not cfg.init:
        raise EdtalkError("stage 3 needs 'init': the trained generator checkpoint")
    if not (stage == 3 or (cfg.init and fresh)):
        return None
    state = read_init(cfg.init, model_cfg)
    try:
        if stage != 3:
            stages.load_previous(stage, model, state)
            return None
        full = any(k.startswith("direction_exp") for k in state)
        frozen_gen = (EDTalkGenerator if full else LipPoseGenerator)(model_cfg)
        frozen_gen.load_state_dict(state, strict=True)
        return frozen_gen.to(device).eval().requires_grad_(False)
    except (KeyError, RuntimeError) as exc:
        raise EdtalkError(
            f"init checkpoint {cfg.init} does not fit stage {stage} with this model config: "
            f"{str(exc).splitlines()[0][:300]}",
            hint="the 'model' fields of the config must match the checkpoint",
        ) from None


def _build_models(cfg: TrainConfig, device: torch.device, fresh: bool) -> _StageModels:
    """The stage's models and optimizers, seeded by ``cfg.seed``; ``fresh``: not resuming a run."""
    stage, model_cfg = cfg.stage, cfg.model_config
    torch.manual_seed(cfg.seed)
    model = stages.build_generator(stage, model_cfg, copy_source=cfg.copy_init)
    frozen_gen = _load_init(cfg, model, device, fresh)
    model.to(device)
    model.train()
    params = stages.trainable_parameters(stage, model, cfg.trainable, cfg.unfreeze, cfg.freeze)
    teacher = None
    if stage == 2 and (cfg.weights.get("keep_motion", 0) > 0 or cfg.weights.get("keep_features", 0) > 0):
        # frozen stage-1 model, always read from 'init' (also on resume, when the unfrozen
        # encoder of the resumed state has already moved away from it)
        teacher = stages.build_generator(stage, model_cfg)
        stages.load_previous(stage, teacher, read_init(cfg.init, model_cfg))
        teacher.to(device).eval().requires_grad_(False)
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)
    dis = d_opt = None
    if cfg.weights.get("gan", 0) > 0:
        dis = Discriminator(model_cfg)
        if cfg.init and fresh:
            _load_init_discriminator(cfg.init, dis)
        dis.to(device).train()
        d_opt = torch.optim.Adam(dis.parameters(), lr=cfg.d_lr, betas=cfg.d_betas)
    return _StageModels(model, opt, frozen_gen, teacher, dis, d_opt)


def _resume(latest: Path, stage: int, models: _StageModels) -> int:
    """Load the run's state from ``latest``; returns the step it had reached."""
    ckpt = read_training_checkpoint(latest)
    if ckpt.get("args", {}).get("stage") != stage:
        raise EdtalkError(f"{latest} is a checkpoint of another stage", hint="use a fresh --out directory")
    models.model.load_state_dict(ckpt[stages.CHECKPOINT_ENTRY[stage]], strict=True)
    if "g_optim" in ckpt:
        models.opt.load_state_dict(ckpt["g_optim"])
    if models.dis is not None and "dis" in ckpt:
        models.dis.load_state_dict(ckpt["dis"], strict=True)
        if "d_optim" in ckpt:
            models.d_opt.load_state_dict(ckpt["d_optim"])
    return int(ckpt.get("step", 0))


def _save_checkpoint(path: Path, models: _StageModels, stage: int, args: dict[str, Any], step: int) -> None:
    """The model, optimizer, config and step (official layout: 'dis' and 'd_optim' next to 'gen')."""
    state = {k: v.detach().cpu() for k, v in models.model.state_dict().items()}
    ckpt = {
        stages.CHECKPOINT_ENTRY[stage]: state,
        "args": args,
        "step": step,
        "g_optim": models.opt.state_dict(),
    }
    if models.dis is not None:
        ckpt["dis"] = {k: v.detach().cpu() for k, v in models.dis.state_dict().items()}
        ckpt["d_optim"] = models.d_opt.state_dict()
    _atomic_torch_save(ckpt, path)


def _step_batches(cfg: TrainConfig, models: _StageModels, device: torch.device) -> StepBatches:
    """The stage's batch maker: the image source, or stage 3's audio clips with their mouth targets."""
    size = cfg.model_config.size
    if cfg.stage != 3:
        return StepBatches(cfg, _data_source(cfg, size), None)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0xA0D]))
    pool = _data_source(cfg, size).audio_pool(rng, cfg.audio_clips, cfg.audio_frames)
    audio = _AudioBatches(pool, mouth_targets(models.frozen_gen, pool.frames, device), cfg.audio_window)
    return StepBatches(cfg, None, audio)


def _to_device(
    batch: dict[str, torch.Tensor], device: torch.device, non_blocking: bool = False
) -> dict[str, torch.Tensor]:
    """The batch's tensors on ``device`` (the ``*_box`` entries stay where they are)."""
    return {k: v if k.endswith("_box") else v.to(device, non_blocking=non_blocking) for k, v in batch.items()}


def _optimize(
    cfg: TrainConfig, models: _StageModels, batch: dict[str, torch.Tensor]
) -> tuple[stages.StepResult, dict[str, float]]:
    """One optimizer step of the generator (and of the discriminator with weights.gan);
    returns the stage's ``StepResult`` and the loss terms."""
    model, dis = models.model, models.dis
    if cfg.stage == 3:
        result = stages.audio_to_lip(model, batch, cfg.weights)
    elif cfg.stage == 1:
        result = stages.cross_reconstruction(model, batch, cfg.weights)
    else:
        result = stages.self_reconstruction(model, batch, cfg.weights, models.teacher)
    loss, terms = result.loss, result.terms
    if dis is not None:
        dis.requires_grad_(False)
        gan_g = stages.generator_adversarial(dis, result.adv_fake)
        loss = loss + cfg.weights["gan"] * gan_g
        terms = {**terms, "gan_g": float(gan_g.detach()), "loss": float(loss.detach())}
    models.opt.zero_grad(set_to_none=True)
    loss.backward()
    models.opt.step()
    if dis is not None:
        dis.requires_grad_(True)
        gan_d = stages.discriminator_loss(dis, result.d_real, result.d_fake)
        models.d_opt.zero_grad(set_to_none=True)
        gan_d.backward()
        models.d_opt.step()
        terms["gan_d"] = float(gan_d.detach())
    return result, terms


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Run (or resume) one stage into ``out_dir``; see docs/training.md for the layout.

    ``progress`` is told the step and loss terms as the stage runs (e.g. to draw a progress bar).
    """
    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    out = Path(out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    latest = out / LATEST
    stage = cfg.stage
    resuming = resume and latest.is_file()
    models = _build_models(cfg, device, fresh=not resuming)
    step = _resume(latest, stage, models) if resuming else 0
    args = cfg.to_dict()
    _write_yaml(out / "config.yaml", args)
    dataset = _step_batches(cfg, models, device)
    val_batch = None
    if cfg.validate_every:
        val_batch = _to_device(validation_batch(cfg, cfg.model_config.size), device)
    workers = data_workers(cfg, device)
    batches = iter_batches(dataset, range(step, cfg.iterations), workers, pin_memory=device.type == "cuda")
    log = (out / LOG_NAME).open("a", encoding="utf-8")
    start = time.monotonic()
    terms: dict[str, float] = {}
    stopped = False
    if progress is not None:
        progress(step, cfg.iterations, terms)
    try:
        while step < cfg.iterations:
            if cfg.max_minutes is not None and time.monotonic() - start > cfg.max_minutes * 60:
                stopped = True
                break
            for group in models.opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            result, terms = _optimize(cfg, models, _to_device(next(batches), device, non_blocking=True))
            step += 1
            if progress is not None:
                progress(step, cfg.iterations, terms)
            if val_batch is not None and (step % cfg.validate_every == 0 or step == cfg.iterations):
                terms = {**terms, **validate(stage, models.model, val_batch, cfg.weights)}
            if step % cfg.log_every == 0 or step == cfg.iterations or "val_psnr" in terms:
                record = {"step": step, "time_s": round(time.monotonic() - start, 2), **terms}
                log.write(json.dumps(record) + "\n")
                log.flush()
            if result.rows and (step % cfg.sample_every == 0 or step == 1):
                save_grid(result.rows, out / "samples" / f"{step:06d}.png")
            if step % cfg.checkpoint_every == 0:
                _save_checkpoint(latest, models, stage, args, step)
    finally:
        log.close()
        del batches  # stops the data workers
    _save_checkpoint(latest, models, stage, args, step)
    final = out / stages.FILE_NAME[stage]
    _save_checkpoint(final, models, stage, args, step)
    return TrainResult(final, step, time.monotonic() - start, terms, stopped)


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    with atomic_write(path) as fh:
        fh.write(yaml.safe_dump(data, sort_keys=False))


def describe(cfg: TrainConfig) -> str:
    return f"stage {cfg.stage}: {STAGES[cfg.stage]}"
