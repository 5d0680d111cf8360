"""What ``edtalk eval`` measures: a *system* turns a source face and mouth/pose/expression drivers
into frames.

:class:`ModelSystem` is a loaded model bundle through the render engine; :class:`GroundTruthSystem`
is the synthetic renderer itself, driven by the drivers' true factors (the ceiling that the
judges' own noise allows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edtalk_cli.audio import audio_features
from edtalk_cli.defaults import GPU_BATCH_SIZE, PRECISION
from edtalk_cli.pipeline.options import RenderOptions
from edtalk_cli.pipeline.render import JobRenderer
from edtalk_cli.synthetic.dataset import Clip, check_size
from edtalk_cli.synthetic.factors import Expression, Identity, Mouth, Pose, emotion_expression
from edtalk_cli.synthetic.metrics import cross_reenactment_target
from edtalk_cli.synthetic.render import Frame, Renderer
from edtalk_cli.weights.bundle import ModelBundle


@dataclass
class Driver:
    """A driving clip: its ground-truth factors and its rendered frames (T, S, S, 3) uint8."""

    clip: Clip
    frames: list[Frame]

    @property
    def images(self) -> np.ndarray:
        return np.stack([f.image for f in self.frames])


class EvalSystem(Protocol):
    """What the evaluation drives: a source face plus mouth/pose/expression drivers -> frames."""

    name: str
    size: int
    has_expression: bool

    def set_source(self, image: np.ndarray, identity: Identity) -> None: ...

    def drive(self, mouth: Driver, pose: Driver, expression: Driver) -> np.ndarray: ...

    def drive_audio(self, speech: Driver) -> np.ndarray: ...

    def preset(self, name: str) -> np.ndarray | None: ...


class ModelSystem:
    """A model bundle: coefficients are read from the driver frames, the mouth from audio."""

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        device: str = "cpu",
        precision: str = PRECISION,
        batch_size: int = GPU_BATCH_SIZE,
    ):
        self.bundle = bundle
        options = RenderOptions(precision=precision, batch_size=batch_size)
        self.renderer = JobRenderer(bundle, device=device, options=options)
        self.engine = self.renderer.engine
        self.name = bundle.description
        self.size = bundle.size
        self.has_expression = bundle.has_expression
        self._source_mouth: np.ndarray | None = None
        self._source_pose: np.ndarray | None = None
        self._source_expression: np.ndarray | None = None

    def set_source(self, image: np.ndarray, identity: Identity) -> None:
        self.engine.clear_cache()
        self.engine.set_source(image)
        own = self.engine.extract_coefficients([image])
        self._source_mouth = own.mouth[0]
        self._source_pose = own.pose[0]
        self._source_expression = None if own.expression is None else own.expression[0]

    def _render(self, mouth: np.ndarray, pose: np.ndarray, expression: np.ndarray | None) -> np.ndarray:
        n = len(mouth)
        return np.stack(list(self.engine.render(n, mouth, pose, expression if self.has_expression else None)))

    def drive(self, mouth: Driver, pose: Driver, expression: Driver) -> np.ndarray:
        tracks = [self.engine.extract_coefficients(d.images) for d in (mouth, pose, expression)]
        return self._render(tracks[0].mouth, tracks[1].pose, tracks[2].expression)

    def drive_audio(self, speech: Driver) -> np.ndarray:
        features = audio_features(speech.clip.speech.audio.astype(np.float32))
        n = min(features.num_frames, speech.clip.n_frames)
        mouth = self.renderer.audio_mouth(features.mel, features.num_frames, 25)[:n]
        return self._render(mouth, self._source_pose, self._source_expression)

    def preset(self, name: str) -> np.ndarray | None:
        if not self.has_expression or name not in self.bundle.emotions:
            return None
        return self._render(self._source_mouth[None], self._source_pose, self.bundle.emotions[name])[0]


class GroundTruthSystem:
    """The renderer itself, driven by the drivers' true factors (the evaluation's ceiling)."""

    has_expression = True

    def __init__(self, size: int) -> None:
        size = check_size(size)
        self.name = f"ground truth (synthetic renderer, {size} px)"
        self.size = size
        self.renderer = Renderer(size)
        self.identity: Identity | None = None

    def set_source(self, image: np.ndarray, identity: Identity) -> None:
        self.identity = identity

    def drive(self, mouth: Driver, pose: Driver, expression: Driver) -> np.ndarray:
        frames = cross_reenactment_target(
            self.identity, mouth.clip.mouth, pose.clip.pose, expression.clip.expression, self.size
        )
        return np.stack([f.image for f in frames])

    def drive_audio(self, speech: Driver) -> np.ndarray:
        return np.stack(
            [
                self.renderer.render(self.identity, Pose(), Mouth.from_vector(m), Expression()).image
                for m in speech.clip.mouth
            ]
        )

    def preset(self, name: str) -> np.ndarray | None:
        return self.renderer.render(self.identity, Pose(), Mouth(), emotion_expression(name, 1.0)).image
