"""Export trained checkpoints as a weights directory (safetensors + presets), e.g. the demo model.

:func:`export_trained_model` is ``edtalk train export``: it decides where the emotion presets come
from (``PRESET_SOURCES``), optionally calibrates the expression readout, and writes the files with
:func:`export_weights`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from torch import nn

from edtalk_cli.atomic import atomic_write
from edtalk_cli.errors import EdtalkError
from edtalk_cli.training.trainer import checkpoint_model_config, load_generator, read_training_checkpoint
from edtalk_cli.weights import save_safetensors

PRESET_SOURCES = ("auto", "encoder", "factors", "fitted")


def _save_npy(array: np.ndarray, path: Path) -> None:
    with atomic_write(path, "wb", suffix=".tmp.npy") as fh:
        np.save(fh, array)


def export_weights(
    generator_ckpt: str | Path,
    audio2lip_ckpt: str | Path | None,
    out_dir: str | Path,
    presets: dict[str, np.ndarray] | None = None,
    source: str = "edtalk train",
    transform: Callable[[dict], dict] | None = None,
) -> list[Path]:
    """Write ``EDTalk.safetensors`` (or ``EDTalk_lip_pose``), ``Audio2Lip.safetensors`` and
    ``predefined_exp_weights/<name>.npy`` (each (1, exp_dim) float32) into ``out_dir``.

    ``transform`` maps the generator's state dict before it is saved (e.g. the expression
    calibration of :mod:`edtalk_cli.training.calibration`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    gen = read_training_checkpoint(generator_ckpt)
    if "gen" not in gen:
        raise EdtalkError(f"{generator_ckpt} holds no generator ('gen')")
    config = checkpoint_model_config(gen, None)  # type: ignore[arg-type]
    if config is None:
        raise EdtalkError(
            f"{generator_ckpt} has no model config in 'args'",
            hint="export checkpoints written by edtalk train",
        )
    full = any(k.startswith("direction_exp") for k in gen["gen"])
    kind, name = ("edtalk", "EDTalk") if full else ("edtalk_lip_pose", "EDTalk_lip_pose")
    state = transform(gen["gen"]) if transform is not None else gen["gen"]
    written.append(
        save_safetensors(state, out / f"{name}.safetensors", kind=kind, config=config, source=source)
    )
    if audio2lip_ckpt is not None:
        a2l = read_training_checkpoint(audio2lip_ckpt)
        if "audio2lip" not in a2l:
            raise EdtalkError(f"{audio2lip_ckpt} holds no Audio2Lip ('audio2lip')")
        a_cfg = checkpoint_model_config(a2l, config)
        written.append(
            save_safetensors(
                a2l["audio2lip"], out / "Audio2Lip.safetensors", kind="audio2lip", config=a_cfg, source=source
            )
        )
    if presets:
        pdir = out / "predefined_exp_weights"
        pdir.mkdir(exist_ok=True)
        for emo, vec in presets.items():
            path = pdir / f"{emo}.npy"
            _save_npy(np.asarray(vec, dtype=np.float32).reshape(1, -1), path)
            written.append(path)
    return written


def check_preset_source(preset_source: str) -> None:
    """Refuse a preset source that is not one of :data:`PRESET_SOURCES`."""
    if preset_source not in PRESET_SOURCES:
        raise EdtalkError(
            f"--preset-source must be auto, encoder, factors or fitted, got {preset_source!r}",
            hint="auto picks factors for models trained with weights.anchor",
        )


def trained_with_anchor(checkpoint: str | Path) -> bool:
    """Whether a training checkpoint was trained with ``weights.anchor`` > 0 (its expression
    coefficients are then the synthetic world's factors)."""
    args = read_training_checkpoint(checkpoint).get("args") or {}
    return float((args.get("weights") or {}).get("anchor", 0.0)) > 0


def choose_presets(
    gen: nn.Module,
    checkpoint: str | Path,
    anchored: bool,
    preset_source: str,
    identities: int,
    on_preset_fitted: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """The 8 emotion presets of a full generator, each (1, exp_dim), from ``preset_source``.

    ``factors`` (and ``auto``/``fitted`` for anchored models) take the prototypes' exact factors;
    otherwise the encoder reads rendered prototype faces of ``identities`` identities. ``fitted``
    then fits the table to ``gen``'s rendering (``on_preset_fitted(done, total)`` after each preset).
    """
    from edtalk_cli.training.presets import anchored_presets, emotion_presets

    check_preset_source(preset_source)
    if preset_source == "factors" and not anchored:
        raise EdtalkError(
            f"{checkpoint} was not trained with weights.anchor, so its expression coefficients are not the factors",
            hint="use --preset-source encoder",
        )
    if preset_source == "factors" or (preset_source in ("auto", "fitted") and anchored):
        table = anchored_presets(gen)
    else:
        table = emotion_presets(gen, gen.config.size, identities=identities)
    if preset_source == "fitted":
        table = _fit_presets(gen, table, anchored, identities, on_preset_fitted)
    return table


def _fit_presets(
    gen: nn.Module,
    table: dict[str, np.ndarray],
    anchored: bool,
    identities: int,
    on_preset_fitted: Callable[[int, int], None] | None,
) -> dict[str, np.ndarray]:
    """``table`` fitted to ``gen``'s rendering (anchored models: only the 7 anchored coefficients move)."""
    from edtalk_cli.training.presets import anchored_preset_columns, fitted_presets

    columns = anchored_preset_columns(gen) if anchored else list(range(gen.config.exp_dim))
    fitted: list[str] = []

    def done(name: str) -> None:
        fitted.append(name)
        if on_preset_fitted is not None:
            on_preset_fitted(len(fitted), len(table))

    return fitted_presets(gen, gen.config.size, table, columns, identities=identities, progress=done)


def export_trained_model(
    generator: str | Path,
    out_dir: str | Path,
    audio2lip: str | Path | None = None,
    *,
    presets: bool = True,
    identities: int = 12,
    preset_source: str = "auto",
    calibrate_expression: bool = False,
    on_calibrated: Callable[[str], None] | None = None,
    on_preset_fitted: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """``edtalk train export``: the weights directory of trained checkpoints; returns the files written.

    ``presets``: compute the emotion presets of a full model (see :func:`choose_presets`).
    ``calibrate_expression``: fold the expression calibration of an anchored full model into
    ``exp_fc`` first (``on_calibrated`` gets its description).
    """
    check_preset_source(preset_source)
    generator = Path(generator)
    table = None
    transform = None
    source = f"edtalk train export {generator.name}"
    if presets or calibrate_expression:
        gen = load_generator(generator)
        anchored = trained_with_anchor(generator)
    if calibrate_expression:
        transform, description = _expression_calibration(gen, generator, anchored)
        gen.load_state_dict(transform(gen.state_dict()))  # encoder-read presets see the calibrated model
        source = f"{source}; {description}"
        if on_calibrated is not None:
            on_calibrated(description)
    if presets and hasattr(gen, "exp_fc"):
        table = choose_presets(gen, generator, anchored, preset_source, identities, on_preset_fitted)
    return export_weights(generator, audio2lip, out_dir, table, source=source, transform=transform)


def _expression_calibration(
    gen: nn.Module, generator: Path, anchored: bool
) -> tuple[Callable[[dict], dict], str]:
    """The state-dict transform that calibrates ``gen``'s expression readout, and its description."""
    from edtalk_cli.training.calibration import fold_expression_calibration, measure_expression_calibration

    if not (hasattr(gen, "exp_fc") and anchored):
        raise EdtalkError(
            f"--calibrate-expression needs a full model trained with weights.anchor; {generator} is not one",
            hint="drop --calibrate-expression",
        )
    calibration = measure_expression_calibration(gen, gen.config.size)
    return partial(fold_expression_calibration, gen=gen, calibration=calibration), calibration.describe()
