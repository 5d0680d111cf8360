"""Presets: named bundles of emotion, intensity, pose style and transition.

Bundled presets ship with the package (``edtalk_cli/presets`` when installed, the repository's
top-level ``presets/`` otherwise). A user directory overrides bundled presets of the same name:
``$EDTALK_PRESETS`` if set, else ``<user config dir>/edtalk/presets``. A manifest can add
presets of its own with ``include: [my_preset.yaml]``; the preset's name is the file stem.
"""

from __future__ import annotations

import importlib.resources
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from edtalk_cli.manifest.problems import Problem, pydantic_problems
from edtalk_cli.manifest.spec import PresetSpec
from edtalk_cli.manifest.timecode import parse_duration
from edtalk_cli.manifest.yaml_marks import MDict, Origin, load_yaml

__all__ = [
    "PRESET_NAME_RE",
    "Preset",
    "bundled_presets_dir",
    "discover_presets",
    "load_preset",
    "user_presets_dir",
]

PRESET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
PresetSource = Literal["bundled", "user", "include"]
_REPO_PRESETS = Path(__file__).resolve().parents[2] / "presets"


@dataclass(frozen=True)
class Preset:
    """A preset file: its raw YAML (with origins), its validated spec, or its problems."""

    name: str
    path: Path
    source: PresetSource
    data: MDict | None
    spec: PresetSpec | None
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.problems

    @property
    def description(self) -> str:
        return self.spec.description if self.spec else ""

    @property
    def transition_s(self) -> float | None:
        if self.spec is None or self.spec.transition is None:
            return None
        return parse_duration(self.spec.transition)

    def emotion_text(self) -> str:
        """A short human description of the emotion (for tables)."""
        if self.spec is None:
            return "?"
        emotion = self.spec.emotion
        if isinstance(emotion, str):
            return emotion
        data = emotion.model_dump(exclude_none=True)
        data.pop("intensity", None)
        ((form, value),) = [(k, v) for k, v in data.items() if k != "mode"][:1] or [("?", "?")]
        if form == "blend":
            return " + ".join(f"{w:g} {n}" for n, w in value.items())
        if form == "preset":
            return str(value)
        if form == "coeffs":
            return "coeffs"
        return f"{form}: {Path(str(value)).name}"

    def intensity_value(self) -> float | None:
        """The intensity a render applies with this preset (:func:`preset_intensity`)."""
        if self.spec is None:
            return None
        emotion = self.spec.emotion
        own = None if isinstance(emotion, str) else emotion.intensity
        return preset_intensity(self.spec.intensity, own)


def preset_intensity(preset_level: float | None, emotion_level: float | None) -> float | None:
    """A preset's effective intensity: the emotion's own ``intensity`` wins over the preset's top-level one."""
    return emotion_level if emotion_level is not None else preset_level


def bundled_presets_dir() -> Path | None:
    """The presets shipped with edtalk: package data if installed, else the repo's ``presets/``."""
    try:
        packaged = importlib.resources.files("edtalk_cli") / "presets"
        if packaged.is_dir():
            return Path(str(packaged))
    except (ModuleNotFoundError, TypeError, OSError):
        pass
    return _REPO_PRESETS if _REPO_PRESETS.is_dir() else None


def user_presets_dir() -> Path:
    """``$EDTALK_PRESETS``, else ``platformdirs.user_config_dir("edtalk")/presets``."""
    env = os.environ.get("EDTALK_PRESETS")
    if env:
        return Path(os.path.expanduser(env)).resolve()
    try:
        import platformdirs

        base = Path(platformdirs.user_config_dir("edtalk"))
    except ImportError:  # platformdirs is optional: fall back to the XDG default
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "edtalk"
    return base / "presets"


def load_preset(path: Path, source: PresetSource = "user") -> Preset:
    """Read and validate one preset file (problems are kept on the Preset, not raised)."""
    path = Path(path).resolve()
    name = path.stem
    data, yaml_problems = load_yaml(path)
    problems = [Problem.from_yaml(p) for p in yaml_problems]
    top = Origin(path, 1, 1, "")
    if not PRESET_NAME_RE.match(name):
        problems.append(
            Problem.at(
                top, f"preset name {name!r} is not filesystem-safe", "Rename the file to [A-Za-z0-9._-]"
            )
        )
    spec = None
    if data is None and not yaml_problems:
        problems.append(Problem.at(top, "the preset file is empty", "Add at least 'emotion: NAME'"))
    elif data is not None and not isinstance(data, MDict):
        problems.append(
            Problem.at(
                top,
                "a preset must be a mapping",
                "Write keys: description, emotion, intensity, pose, transition",
            )
        )
    elif isinstance(data, MDict):
        try:
            spec = PresetSpec.model_validate(data)
        except ValidationError as exc:
            problems.extend(pydantic_problems(exc, data, PresetSpec))
    return Preset(name, path, source, data if isinstance(data, MDict) else None, spec, tuple(problems))


def _scan(directory: Path | None, source: PresetSource) -> dict[str, Preset]:
    if directory is None or not directory.is_dir():
        return {}
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return {p.stem: load_preset(p, source) for p in files}


def discover_presets(extra: Iterable[Path] = ()) -> dict[str, Preset]:
    """All presets by name: bundled, overridden by the user directory, then by ``extra`` files."""
    presets = _scan(bundled_presets_dir(), "bundled")
    presets.update(_scan(user_presets_dir(), "user"))
    for path in extra:
        preset = load_preset(path, "include")
        presets[preset.name] = preset
    return presets
