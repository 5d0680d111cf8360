"""The three official EDTalk model kinds and where their files live."""

from __future__ import annotations

from dataclasses import dataclass

from edtalk_cli.errors import WeightsError

HUB_REPO_ID = "tanshuai0219/EDTalk"
HUB_FILES_URL = "https://huggingface.co/tanshuai0219/EDTalk/tree/main/ckpts"
PRESETS_DIRNAME = "predefined_exp_weights"
# the eight emotion presets shipped with the official weights (ckpts/predefined_exp_weights/*.npy)
OFFICIAL_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")


@dataclass(frozen=True)
class KindSpec:
    """One model kind: its official file, the top-level key of its state dict and its model class."""

    kind: str
    stem: str  # official file name without suffix
    top_key: str  # top-level key of the official .pt file holding the state dict
    title: str  # human-readable name for messages
    class_name: str  # class in edtalk_cli.model

    @property
    def filename(self) -> str:
        """The official file name (``EDTalk.pt`` ...)."""
        return f"{self.stem}.pt"

    @property
    def label(self) -> str:
        """``the EDTalk full model (EDTalk.pt)``-style name for messages."""
        return f"the {self.title} ({self.filename})"


KINDS: dict[str, KindSpec] = {
    "edtalk": KindSpec("edtalk", "EDTalk", "gen", "EDTalk full model", "EDTalkGenerator"),
    "edtalk_lip_pose": KindSpec(
        "edtalk_lip_pose", "EDTalk_lip_pose", "gen", "EDTalk lip-pose model", "LipPoseGenerator"
    ),
    "audio2lip": KindSpec("audio2lip", "Audio2Lip", "audio2lip", "Audio2Lip model", "Audio2Lip"),
}


def kind_spec(kind: str) -> KindSpec:
    """The spec of ``kind``; a WeightsError listing the valid kinds otherwise."""
    try:
        return KINDS[kind]
    except KeyError:
        raise WeightsError(
            f"unknown model kind {kind!r}",
            hint=f"use one of: {', '.join(KINDS)}",
        ) from None
