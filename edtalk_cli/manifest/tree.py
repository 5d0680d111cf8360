"""Operations on YAML trees with origins: deep merge and path resolution."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edtalk_cli.manifest.spec import EMOTION_FORMS, POSE_FORMS
from edtalk_cli.manifest.yaml_marks import MDict, Origin

__all__ = ["deep_merge", "empty_mdict", "resolve_path"]

_FORM_KEYS = frozenset((*EMOTION_FORMS, *POSE_FORMS, "path"))


def empty_mdict(origin: Origin) -> MDict:
    """A new empty mapping located at ``origin``."""
    out = MDict()
    out.origin = origin
    return out


def _forms(mapping: MDict) -> set[str]:
    return {key for key in mapping if key in _FORM_KEYS}


def _promote(key: Any, base: Any, base_origin: Origin, over: Any) -> Any:
    """``emotion: happy`` below ``emotion: {intensity: 0.5}`` becomes ``{preset: happy}`` so both merge."""
    if key == "emotion" and isinstance(base, str) and isinstance(over, MDict) and not _forms(over):
        promoted = empty_mdict(base_origin)
        promoted.set("preset", base, base_origin)
        return promoted
    return base


def deep_merge(base: MDict | None, over: MDict) -> MDict:
    """Merge ``over`` onto ``base`` (``over`` wins); each value keeps the origin of where it was written.

    Mappings merge key by key, except when ``over`` names a different form (``{image: ...}``
    over ``{preset: ...}``), which replaces the whole mapping. Lists and scalars replace.
    """
    out = empty_mdict(over.origin)
    if base is not None:
        for key, value in base.items():
            out.set(key, value, base.origins[key], base.key_origins[key])
    for key, value in over.items():
        current = out.get(key)
        if current is not None and key in out.origins:
            current = _promote(key, current, out.origins[key], value)
        if isinstance(current, MDict) and isinstance(value, MDict):
            over_forms, base_forms = _forms(value), _forms(current)
            if not over_forms or over_forms == base_forms:
                out.set(key, deep_merge(current, value), over.origins[key], over.key_origins[key])
                continue
        out.set(key, value, over.origins[key], over.key_origins[key])
    return out


def resolve_path(value: str, origin: Origin) -> Path:
    """``value`` (``~`` expanded) made absolute against the directory of the file it was written in."""
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        path = origin.file.parent / path
    return Path(os.path.abspath(path))
