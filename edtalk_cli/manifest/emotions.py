"""Can a job's emotions be shown with the weights it will render with? Checked before rendering.

The model side (which names a weights directory offers, whether its generator has an expression
bank) is chosen by :meth:`edtalk_cli.weights.bundle.ModelFiles.from_dir`, without loading a model;
this module compares it with the job and words the problems at the job's manifest fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edtalk_cli.errors import EdtalkError
from edtalk_cli.manifest.model import EmotionSpec, Job
from edtalk_cli.manifest.problems import Problem, dedupe
from edtalk_cli.weights.bundle import ModelFiles

__all__ = ["AvailableEmotions", "check_emotions", "emotion_problems", "emotions_checker", "job_emotions"]


@dataclass(frozen=True)
class AvailableEmotions:
    """What a model offers: its emotion preset names, and whether it can show an emotion at all."""

    description: str  # e.g. "EDTalk.pt from /weights", for messages
    names: frozenset[str]
    has_expression: bool  # False for the lip+pose model (no expression bank)

    @classmethod
    def of(cls, files: ModelFiles) -> AvailableEmotions:
        """What the bundle of ``files`` offers."""
        return cls(files.generator_description, files.emotion_names, files.has_expression)


def emotions_checker(weights: str | Path | None, model: str | None) -> Callable[[Job], AvailableEmotions]:
    """What each job's model offers, for :func:`check_emotions`; no model is loaded.

    ``weights``/``model`` (the command line's) override the job's; computed once per pair.
    """
    seen: dict[tuple[str, str], AvailableEmotions] = {}

    def check(job: Job) -> AvailableEmotions:
        job_weights, job_model = job.model_choice(weights, model)
        key = (str(job_weights), job_model)
        if key not in seen:
            seen[key] = AvailableEmotions.of(ModelFiles.from_dir(job_weights, job_model))
        return seen[key]

    return check


def _names(spec: EmotionSpec) -> Iterator[str]:
    if spec.kind == "name" and spec.name is not None:
        yield spec.name
    for _, component in spec.components or ():
        yield from _names(component)


def job_emotions(job: Job) -> list[tuple[str, EmotionSpec]]:
    """The emotions ``job`` asks for, by manifest field (``emotion``, ``segments[i].emotion``)."""
    found = [("emotion", job.emotion)] if job.emotion_explicit else []
    found += [(f"segments[{i}].emotion", s.emotion) for i, s in enumerate(job.segments) if s.emotion]
    return found


def emotion_problems(job: Job, available: AvailableEmotions) -> list[Problem]:
    """One problem per emotion field of ``job`` that ``available`` cannot show."""
    problems: list[Problem] = []
    for field, spec in job_emotions(job):
        origin = job.origin_of(field)
        if not available.has_expression:
            problems.append(
                Problem.at(
                    origin,
                    f"job '{job.name}': {available.description} is the lip+pose model, which has no "
                    "expression bank, so it cannot show this emotion",
                    "Use the full model (EDTalk.pt, model: edtalk) or remove the emotion",
                )
            )
            continue
        missing = [name for name in dict.fromkeys(_names(spec)) if name not in available.names]
        for name in missing:
            known = ", ".join(sorted(available.names)) or "none"
            problems.append(
                Problem.at(
                    origin,
                    f"job '{job.name}': emotion '{name}' is not available with {available.description} "
                    f"(available: {known})",
                    "Add predefined_exp_weights/*.npy to the weights directory, or give the emotion as "
                    "an image, video or 10 coeffs",
                )
            )
    return problems


def check_emotions(jobs: Iterable[Job], emotions_for: Callable[[Job], AvailableEmotions]) -> list[Problem]:
    """:func:`emotion_problems` of every job that asks for an emotion, sorted by file and line.

    ``emotions_for(job)`` gives what the job's model offers; when it fails (weights missing), the
    job's first emotion field gets that error.
    """
    problems: list[Problem] = []
    for job in jobs:
        fields = job_emotions(job)
        if not fields:
            continue
        try:
            available = emotions_for(job)
        except EdtalkError as exc:
            problems.append(
                Problem.at(
                    job.origin_of(fields[0][0]),
                    f"job '{job.name}': its emotion cannot be checked: {exc.message}",
                    exc.hint or "Install the weights (`edtalk weights download`) or pass --weights DIR",
                )
            )
            continue
        problems.extend(emotion_problems(job, available))
    return dedupe(problems)
