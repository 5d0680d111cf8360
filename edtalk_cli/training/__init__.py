"""Training of EDTalk in the paper's stages (spec section 5), on the synthetic world or a dataset."""

from edtalk_cli.training.config import STAGES, TrainConfig, config_from_dict, load_config
from edtalk_cli.training.trainer import TrainResult, load_generator, read_training_checkpoint, train

__all__ = [
    "STAGES",
    "TrainConfig",
    "TrainResult",
    "config_from_dict",
    "load_config",
    "load_generator",
    "read_training_checkpoint",
    "train",
]
