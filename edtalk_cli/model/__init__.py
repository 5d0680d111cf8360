"""Pure nn.Modules of EDTalk (no I/O). State-dict layouts equal the official checkpoints."""

from edtalk_cli.model.audio2lip import Audio2Lip
from edtalk_cli.model.config import OFFICIAL_CONFIG, ModelConfig
from edtalk_cli.model.discriminator import Discriminator
from edtalk_cli.model.generator import (
    EDTalkGenerator,
    LipPoseGenerator,
    SourceEncoding,
    orthonormal_bases,
)

MODEL_CLASSES = {
    "edtalk": EDTalkGenerator,
    "edtalk_lip_pose": LipPoseGenerator,
    "audio2lip": Audio2Lip,
}

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
