"""A procedural talking-face world with exact ground truth.

Identity, head pose, mouth articulation and expression are independent factors
(:mod:`~edtalk_cli.synthetic.factors`); :class:`Renderer` draws them (plus 68 landmarks and
region masks); :func:`synthesize` makes speech whose formants follow the mouth; clips and
datasets in the generic layout are written by :mod:`~edtalk_cli.synthetic.dataset`.
:mod:`~edtalk_cli.synthetic.judges` (torch) and :mod:`~edtalk_cli.synthetic.metrics` judge
generated frames against the exact ground truth; import them explicitly.
"""

from edtalk_cli.synthetic.dataset import (
    Clip,
    ClipEntry,
    ClipSpec,
    DatasetIndex,
    load_factors,
    make_clip,
    read_index,
    split_seeds,
    write_clip,
    write_dataset,
)
from edtalk_cli.synthetic.factors import (
    EMOTION_PROTOTYPES,
    EMOTIONS,
    EXPRESSION_FIELDS,
    HAIR_STYLES,
    MOUTH_FIELDS,
    POSE_FIELDS,
    Expression,
    Identity,
    Mouth,
    Pose,
    emotion_expression,
    emotion_matrix,
)
from edtalk_cli.synthetic.render import LANDMARK_GROUPS, MASK_NAMES, N_LANDMARKS, Frame, Renderer, render
from edtalk_cli.synthetic.speech import MAX_JAW_STEP, MAX_LIP_STEP, Speech, Voice, formants, synthesize

__all__ = [
    "EMOTIONS",
    "EMOTION_PROTOTYPES",
    "EXPRESSION_FIELDS",
    "HAIR_STYLES",
    "LANDMARK_GROUPS",
    "MASK_NAMES",
    "MAX_JAW_STEP",
    "MAX_LIP_STEP",
    "MOUTH_FIELDS",
    "N_LANDMARKS",
    "POSE_FIELDS",
    "Clip",
    "ClipEntry",
    "ClipSpec",
    "DatasetIndex",
    "Expression",
    "Frame",
    "Identity",
    "Mouth",
    "Pose",
    "Renderer",
    "Speech",
    "Voice",
    "emotion_expression",
    "emotion_matrix",
    "formants",
    "load_factors",
    "make_clip",
    "read_index",
    "render",
    "split_seeds",
    "synthesize",
    "write_clip",
    "write_dataset",
]
