"""Export trained checkpoints as a weights directory (safetensors + presets), e.g. the demo model."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edtalk_cli.errors import EdtalkError
from edtalk_cli.training.trainer import checkpoint_model_config, read_training_checkpoint
from edtalk_cli.weights import save_safetensors


def _save_npy(array: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    try:
        np.save(tmp, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
