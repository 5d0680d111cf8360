"""Pure nn.Modules of EDTalk (no I/O). State-dict layouts equal the official checkpoints.

The names below are imported on first use, so ``edtalk_cli.model.config`` (and commands that
only need a :class:`ModelConfig`) load without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edtalk_cli.lazy import lazy_getattr

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
    "MODEL_CLASSES": "registry",
}


__getattr__ = lazy_getattr(__name__, _HOMES)


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
