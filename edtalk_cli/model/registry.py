"""The model class of each checkpoint kind."""

from edtalk_cli.model.audio2lip import Audio2Lip
from edtalk_cli.model.generator import EDTalkGenerator, LipPoseGenerator

MODEL_CLASSES = {
    "edtalk": EDTalkGenerator,
    "edtalk_lip_pose": LipPoseGenerator,
    "audio2lip": Audio2Lip,
}
