"""Training configuration: a YAML file (``yaml.safe_load``) mapped onto :class:`TrainConfig`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from edtalk_cli.errors import EdtalkError
from edtalk_cli.model import ModelConfig

STAGES: dict[int, str] = {
    0: "encoder/generator self-reconstruction",
    1: "mouth-pose decoupling (cross-reconstruction with mouth swap)",
    2: "expression decoupling (self-reconstruction complementary learning)",
    3: "Audio2Lip (mel windows -> mouth coefficients)",
}

DEFAULT_WEIGHTS: dict[str, float] = {
    "l1": 1.0,  # self-reconstruction L1 (stages 0-2)
    "l2": 0.0,  # self-reconstruction MSE over the whole frame (stages 0 and 2), what PSNR measures; 0 = off
    "cross_l1": 1.0,  # cross-reconstruction L1 (stage 1)
    "lip_space": 1.0,  # exp(-cos) on mouth latents (stage 1), summed over the batch
    "pose_space": 1.0,  # exp(-cos) on pose latents (stage 1)
    "mouth_l1": 0.0,  # extra L1 inside the mouth box (stages 0-2), 0 = off
    "eyes_l1": 0.0,  # extra L1 inside the eyes-and-brows box of synthetic drivers (stages 0-2), 0 = off
    "vgg": 0.0,  # perceptual loss: needs pretrained VGG19 weights, unavailable offline -> off
    "expr_diff": 0.0,  # stage 2, synthetic: L1 of (render - its neutral twin's render) vs the drivers' difference
    "keep_motion": 0.0,  # stage 2 with 'unfreeze': MSE of the driver's mouth+pose coefficients to the init model's
    "flow": 0.0,  # stages 0-2, synthetic: L1 (pixels) of every warp level's grid to the exact correspondence
    "flow_mask": 0.0,  # with 'flow': BCE of the finest warp mask to where the source shows the driver's pixel
    "hole_l1": 0.0,  # with 'flow': extra L1 on the pixels the source does not show (opened mouth, revealed cheek)
    "anchor": 0.0,  # stages 0-2, synthetic: MSE of the pose, 2 mouth and 7 expression coefficients to the exact factors
    "expression_anchor": 0.0,  # stage 2, synthetic: extra MSE of the 7 expression coefficients (drivers and sources)
    "expression_balanced": 0.0,  # the same, each factor's error divided by its variance (rare factors count alike)
    "keep_features": 0.0,  # stage 2 with 'unfreeze': MSE of the encoder's latent and features to the init model's
    "gan": 0.0,  # non-saturating GAN loss with the LIA discriminator (stages 0-2): off by default, slow on a CPU
    "coeff_l2": 1.0,  # MSE to the generator's mouth coefficients (stage 3)
    "smooth": 0.1,  # MSE of temporal differences (stage 3)
}


@dataclass
class TrainConfig:
    """One training stage. ``data`` is ``"synthetic"`` (render on the fly) or a dataset root."""

    stage: int
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields
    init: str | None = None  # checkpoint of the previous stage (a .pt written by edtalk train)
    data: str = "synthetic"
    iterations: int = 1000
    batch_size: int = 8
    lr: float = 0.0016  # official G learning rate 0.002 * 4/5
    betas: tuple[float, float] = (0.0, 0.99199)
    d_lr: float = 0.0018824  # discriminator (weights.gan > 0): official 0.002 * 16/17
    d_betas: tuple[float, float] = (0.0, 0.99059)  # official (0, 0.99 ** (16/17))
    lr_final: float | None = None  # cosine decay from lr to lr_final over the iterations (None: constant)
    lr_warmup: int = 0  # linear warm-up from 0 over the first N steps (fresh Adam moments on a trained init)
    seed: int = 0
    identities: int = 400  # synthetic: size of the training identity pool
    emotions: str = "neutral"  # synthetic frames: "neutral" (stages 0/1, like HDTF) or "all"
    sources: str = "random"  # stages 0/2, synthetic: "random" frames or "neutral" (official MEAD stage 0)
    near_pairs: float = 0.0  # stages 0/2, synthetic: fraction of pairs with a driver near the source
    copy_init: bool = False  # stages 0/1 from scratch: a sharp copy of the source (stages.copy_source_init)
    forced_factors: float = 0.0  # stages 0/2 with weights.anchor: share of drivers rendered from factors
    cross_drivers: float = 0.0  # stages 0/2, synthetic: share of pairs driven three-way from other identities
    log_every: int = 10
    validate_every: int | None = None  # stages 0-2: held-out PSNR every N steps into the loss log
    validate_pairs: int = 16  # held-out pairs (synthetic: unseen identities; dataset: its 'test' split)
    sample_every: int = 100
    checkpoint_every: int = 200
    max_minutes: float | None = None  # stop (and save) after this wall time
    audio_clips: int = 24  # stage 3: number of clips in the pool
    audio_frames: int = 75  # stage 3: frames per clip
    audio_window: int = 5  # stage 3: consecutive frames per sample (temporal loss)
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    trainable: list[str] | None = None  # stages 0/1: train only these name prefixes (fine-tuning: [dec.])
    unfreeze: list[str] | None = None  # stage 2: also train these prefixes, e.g. [enc., fc.]
    freeze: list[str] | None = None  # stage 2: keep these prefixes fixed, e.g. [exp_fc.]
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 1  # 1 is much faster than 2 on a shared, oversubscribed CPU (docs/training.md)
    data_workers: int | None = None  # processes making batches ahead (None: auto, see trainer.data_workers)

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, no tuples) fit for YAML, JSON and ``weights_only`` checkpoints."""
        data = asdict(self)
        data["betas"] = list(self.betas)
        data["d_betas"] = list(self.d_betas)
        data["model"] = self.model_config.to_dict()
        return data


def _bad(field_name: str, problem: str, source: str) -> EdtalkError:
    return EdtalkError(
        f"{source}: field '{field_name}' {problem}",
        hint="see configs/train/*.yaml and docs/training.md for the fields of a training config",
    )


def config_from_dict(data: dict[str, Any], source: str = "training config") -> TrainConfig:
    """Validate a mapping and build a :class:`TrainConfig`; errors name the field at fault.

    The checks run in a fixed order (fields, model, losses, numbers, parameter prefixes, loss
    scopes, pair sampling, run settings), so a config with several faults reports the first.
    """
    _check_fields(data, source)
    values = dict(data)
    model = _checked_model(values, source)
    weights = _checked_weights(values, source)
    values["weights"] = weights
    _check_numbers(values, source)
    _check_prefix_lists(values, source)
    _check_stage2_losses(values, weights, source)
    _check_exact_factor_losses(values, weights, model, source)
    _check_pair_sampling(values, weights, source)
    _check_run_settings(values, source)
    return TrainConfig(**values)


def _is_synthetic(values: dict[str, Any]) -> bool:
    return values.get("data", "synthetic") == "synthetic"


def _check_fields(data: Any, source: str) -> None:
    """A mapping of known fields with a valid ``stage``."""
    if not isinstance(data, dict):
        raise EdtalkError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _bad(unknown[0], f"is not known (known fields: {', '.join(sorted(known))})", source)
    if "stage" not in data:
        raise _bad("stage", "is missing (0, 1, 2 or 3)", source)
    if data["stage"] not in STAGES:
        raise _bad("stage", f"must be 0, 1, 2 or 3, got {data['stage']!r}", source)


def _checked_model(values: dict[str, Any], source: str) -> dict[str, Any]:
    """The ``model`` mapping (empty when unset), checked to build a ModelConfig."""
    model = values.get("model") or {}
    if not isinstance(model, dict):
        raise _bad("model", "must be a mapping of ModelConfig fields", source)
    try:
        ModelConfig.from_dict(model)
    except (ValueError, TypeError) as exc:
        raise _bad("model", f"is invalid: {exc}", source) from None
    return model


def _checked_weights(values: dict[str, Any], source: str) -> dict[str, float]:
    """:data:`DEFAULT_WEIGHTS` updated with the config's ``weights`` (known names, numbers >= 0)."""
    weights = dict(DEFAULT_WEIGHTS)
    for key, value in (values.get("weights") or {}).items():
        if key not in DEFAULT_WEIGHTS:
            raise _bad(f"weights.{key}", f"is not a known loss (known: {', '.join(DEFAULT_WEIGHTS)})", source)
        if not isinstance(value, (int, float)) or value < 0:
            raise _bad(f"weights.{key}", f"must be a number >= 0, got {value!r}", source)
        weights[key] = float(value)
    if weights["vgg"] > 0:
        raise _bad(
            "weights.vgg", "needs pretrained VGG19 weights, which this offline build does not ship", source
        )
    if weights["gan"] > 0 and values["stage"] == 3:
        raise _bad(
            "weights.gan",
            "applies to stages 0-2 (stage 3 renders no images in this build); set it to 0",
            source,
        )
    return weights


_INTEGER_MINIMUMS: tuple[tuple[str, int], ...] = (
    ("iterations", 1),
    ("batch_size", 1),
    ("log_every", 1),
    ("sample_every", 1),
    ("checkpoint_every", 1),
    ("threads", 1),
    ("validate_every", 1),
    ("validate_pairs", 1),
    ("lr_warmup", 0),
    ("data_workers", 0),
)
_OPTIONAL_INTEGERS = ("validate_every", "data_workers")  # None means off / automatic


def _check_numbers(values: dict[str, Any], source: str) -> None:
    """Integer fields within their minimums, ``validate_every`` only for image stages; betas as tuples."""
    if values.get("validate_every") is not None and values["stage"] == 3:
        raise _bad("validate_every", "applies to stages 0-2 (image reconstruction) only", source)
    for name, minimum in _INTEGER_MINIMUMS:
        if values.get(name) is None and name in _OPTIONAL_INTEGERS:
            continue
        value = values.get(name, minimum)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise _bad(name, f"must be an integer >= {minimum}, got {value!r}", source)
    for name in ("betas", "d_betas"):
        if name in values:
            betas = values[name]
            if not isinstance(betas, (list, tuple)) or len(betas) != 2:
                raise _bad(name, "must be a list of two numbers", source)
            values[name] = (float(betas[0]), float(betas[1]))


_PREFIX_LISTS: tuple[tuple[str, tuple[int, ...], str, str], ...] = (  # (field, stages, scope, example)
    ("trainable", (0, 1), "stages 0 and 1 only (stage 2 has its own frozen set)", "[dec.]"),
    ("unfreeze", (2,), "stage 2 only (stages 0/1 use 'trainable')", "[enc., fc.]"),
    ("freeze", (2,), "stage 2 only (stages 0/1 use 'trainable')", "[exp_fc.]"),
)


def _check_prefix_lists(values: dict[str, Any], source: str) -> None:
    """Parameter-name prefix lists, each for its own stages."""
    for name, stages, where, example in _PREFIX_LISTS:
        prefixes = values.get(name)
        if prefixes is None:
            continue
        if values["stage"] not in stages:
            raise _bad(name, f"applies to {where}", source)
        if not isinstance(prefixes, list) or not prefixes or not all(isinstance(t, str) for t in prefixes):
            raise _bad(name, f"must be a non-empty list of parameter-name prefixes, e.g. {example}", source)


def _check_stage2_losses(values: dict[str, Any], weights: dict[str, float], source: str) -> None:
    """Losses of stage 2 only: the teacher pins (with 'unfreeze' and 'init') and the expression terms."""
    for name, pinned in (
        ("keep_motion", "mouth and pose coefficients"),
        ("keep_features", "encoder outputs"),
    ):
        if weights[name] > 0 and (
            values["stage"] != 2 or not values.get("unfreeze") or not values.get("init")
        ):
            raise _bad(
                f"weights.{name}",
                f"applies to stage 2 with 'unfreeze' and 'init' only (it pins the {pinned} "
                "to the init model's while the unfrozen encoder learns expression); "
                "set it to 0, or add 'unfreeze' and 'init'",
                source,
            )
    stage2_synthetic = values["stage"] == 2 and _is_synthetic(values)
    for name in ("expression_anchor", "expression_balanced"):
        if weights[name] > 0 and not stage2_synthetic:
            raise _bad(
                f"weights.{name}",
                "applies to stage 2 on data 'synthetic' only (it needs each frame's exact expression); set it to 0",
                source,
            )
    if weights["expr_diff"] > 0 and not stage2_synthetic:
        raise _bad(
            "weights.expr_diff",
            "applies to stage 2 on data 'synthetic' only (it needs each driver re-rendered without "
            "its emotion); set it to 0",
            source,
        )


def _check_exact_factor_losses(
    values: dict[str, Any], weights: dict[str, float], model: dict[str, Any], source: str
) -> None:
    """``anchor``, ``l2`` and the flow losses: their stages, synthetic data and model dimensions."""
    image_synthetic = values["stage"] != 3 and _is_synthetic(values)
    if weights["anchor"] > 0 and not image_synthetic:
        raise _bad(
            "weights.anchor",
            "applies to stages 0-2 on data 'synthetic' only (it needs each frame's exact factors); set it to 0",
            source,
        )
    if weights["anchor"] > 0:
        dims = ModelConfig.from_dict(model)
        if dims.pose_dim < 6 or dims.lip_dim < 2 or dims.exp_dim < 7:
            raise _bad("weights.anchor", "needs pose_dim >= 6, lip_dim >= 2 and exp_dim >= 7", source)
    if weights["l2"] > 0 and values["stage"] not in (0, 2):
        raise _bad(
            "weights.l2",
            "applies to the self-reconstruction of stages 0 and 2 only; set it to 0",
            source,
        )
    for name in ("flow_mask", "hole_l1"):
        if weights[name] > 0 and weights["flow"] <= 0:
            raise _bad(f"weights.{name}", "needs weights.flow > 0 (both come from the exact flow)", source)
    if weights["flow"] > 0 and not image_synthetic:
        raise _bad(
            "weights.flow",
            "applies to stages 0-2 on data 'synthetic' only (it needs the renderer's exact "
            "pixel correspondences); set it to 0",
            source,
        )


_SYNTHETIC_PAIRS_ONLY = {  # share fields that need the synthetic world, and why
    "near_pairs": "a dataset's pairs are real frames",
    "cross_drivers": "it needs the exact three-way target",
}


def _check_pair_sampling(values: dict[str, Any], weights: dict[str, float], source: str) -> None:
    """How training pairs are drawn: emotions, sources and the shares of special pairs."""
    if values.get("emotions", "neutral") not in ("neutral", "all"):
        raise _bad("emotions", f"must be 'neutral' or 'all', got {values['emotions']!r}", source)
    if values.get("sources", "random") not in ("random", "neutral"):
        raise _bad("sources", f"must be 'random' or 'neutral', got {values['sources']!r}", source)
    pairs_synthetic = values["stage"] in (0, 2) and _is_synthetic(values)
    if values.get("sources", "random") != "random" and not pairs_synthetic:
        raise _bad("sources", "applies to stages 0 and 2 on data 'synthetic' only", source)
    for name in ("near_pairs", "forced_factors", "cross_drivers"):
        share = values.get(name, 0.0)
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share <= 1:
            raise _bad(name, f"must be a fraction between 0 and 1, got {share!r}", source)
    for name, why in _SYNTHETIC_PAIRS_ONLY.items():
        if values.get(name, 0.0) > 0 and not pairs_synthetic:
            raise _bad(name, f"applies to stages 0 and 2 on data 'synthetic' only ({why})", source)
    if values.get("forced_factors", 0.0) > 0 and (values["stage"] not in (0, 2) or weights["anchor"] <= 0):
        raise _bad(
            "forced_factors",
            "applies to stages 0 and 2 with weights.anchor > 0 (the forced coefficients are the anchored ones)",
            source,
        )


def _check_run_settings(values: dict[str, Any], source: str) -> None:
    """``copy_init``, ``device`` and the ``init`` that stages 2 and 3 need."""
    if not isinstance(values.get("copy_init", False), bool):
        raise _bad("copy_init", f"must be true or false, got {values['copy_init']!r}", source)
    if values.get("copy_init") and (values["stage"] not in (0, 1) or values.get("init")):
        raise _bad(
            "copy_init",
            "applies to stages 0 and 1 trained from scratch (without 'init'): loaded weights replace it",
            source,
        )
    if values.get("device", "auto") not in ("auto", "cpu", "cuda"):
        raise _bad("device", f"must be auto, cpu or cuda, got {values['device']!r}", source)
    if values["stage"] in (2, 3) and not values.get("init"):
        raise _bad(
            "init", f"is required for stage {values['stage']}: the checkpoint of the previous stage", source
        )


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config (safe_load) and apply ``overrides`` (None values ignored)."""
    path = Path(path)
    if not path.is_file():
        raise EdtalkError(f"training config {path} does not exist", hint="see configs/train/ for examples")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise EdtalkError(f"training config {path} is not valid YAML: {exc}") from None
    data = dict(data or {})
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    if isinstance(data.get("init"), str) and not Path(data["init"]).is_absolute():
        # relative to the working directory, as typed on the command line
        data["init"] = str(Path(data["init"]))
    return config_from_dict(data, source=str(path))
