"""Pure nn.Modules of EDTalk (no I/O). State-dict layouts equal the official checkpoints.

The names below are imported on first use, so ``edtalk_cli.model.config`` (and commands that
only need a :class:`ModelConfig`) load without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edtalk_cli.model.audio2lip import Audio2Lip
    from edtalk_cli.model.config import OFFICIAL_CONFIG, ModelConfig
    from edtalk_cli.model.discriminator import Discriminator
    from edtalk_cli.model.generator import (
        EDTalkGenerator,
        LipPoseGenerator,
        SourceEncoding,
        orthonormal_bases,
    )

_HOMES = {  # name -> submodule that defines it
    "Audio2Lip": "audio2lip",
    "OFFICIAL_CONFIG": "config",
    "ModelConfig": "config",
    "Discriminator": "discriminator",
    "EDTalkGenerator": "generator",
    "LipPoseGenerator": "generator",
    "SourceEncoding": "generator",
    "orthonormal_bases": "generator",
}


def __getattr__(name: str) -> Any:
    if name == "MODEL_CLASSES":
        from edtalk_cli.model.audio2lip import Audio2Lip
        from edtalk_cli.model.generator import EDTalkGenerator, LipPoseGenerator

        value: Any = {"edtalk": EDTalkGenerator, "edtalk_lip_pose": LipPoseGenerator, "audio2lip": Audio2Lip}
    elif name in _HOMES:
        value = getattr(import_module(f"edtalk_cli.model.{_HOMES[name]}"), name)
    else:
        raise AttributeError(f"module 'edtalk_cli.model' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "MODEL_CLASSES",
    "OFFICIAL_CONFIG",
    "Audio2Lip",
    "Discriminator",
    "EDTalkGenerator",
    "LipPoseGenerator",
    "ModelConfig",
    "SourceEncoding",
    "orthonormal_bases",
]
