"""Problems found in manifests and preset files, and how they are reported.

Every problem names the file, the line and column of the offending YAML node, the field path
(``jobs[1].emotion.intensity``), what is wrong, and how to fix it::

    manifest.yaml:12:18: jobs[1].emotion.intensity: 3.0 is too large (at most 2). Use a value from 0 to 2.

Pydantic error locations are mapped back to YAML nodes through the origins kept by
:mod:`edtalk_cli.manifest.yaml_marks`.
"""

from __future__ import annotations

import difflib
import inspect
import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError

from edtalk_cli.errors import ManifestError
from edtalk_cli.manifest.timecode import TIME_HELP
from edtalk_cli.manifest.yaml_marks import MDict, MList, Origin, YamlProblem, join_path

__all__ = ["ManifestValidationError", "Problem", "dedupe", "did_you_mean", "pydantic_problems"]


@dataclass(frozen=True)
class Problem:
    """One problem: where (origin), which field (path), what (message) and how to fix it."""

    origin: Origin
    path: str
    message: str
    fix: str

    def format(self) -> str:
        message = self.message.rstrip(". ")
        fix = self.fix.strip()
        if fix and not fix.endswith((".", "?", "!")):
            fix += "."
        field = f" {self.path}:" if self.path else ""
        return f"{self.origin.where()}:{field} {message}. {fix}".rstrip()

    @classmethod
    def at(cls, origin: Origin, message: str, fix: str) -> Problem:
        return cls(origin, origin.path, message, fix)

    @classmethod
    def from_yaml(cls, problem: YamlProblem) -> Problem:
        return cls(problem.origin, problem.origin.path, problem.message, problem.fix)


class ManifestValidationError(ManifestError):
    """A :class:`ManifestError` carrying the list of problems (its message: one per line)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(
            "\n".join(p.format() for p in self.problems),
            hint=f"{count} problem{'s' if count != 1 else ''}; fix them and run `edtalk validate` again",
        )


def dedupe(problems: Iterable[Problem]) -> list[Problem]:
    """Drop repeats (a bad default reported once per job) and sort by file and line."""
    seen: dict[str, Problem] = {}
    for problem in problems:
        seen.setdefault(problem.format(), problem)
    return sorted(seen.values(), key=lambda p: (str(p.origin.file), p.origin.line, p.origin.col))


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``word`` (difflib), if any is close enough."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return matches[0] if matches else None


# --- walking pydantic types along an error location -------------------------------------------


def _strip(tp: Any) -> Any:
    """Remove Annotated wrappers and a ``| None``."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _tagged_member(tp: Any, tag: str) -> Any:
    """The member of a tagged union whose pydantic Tag is ``tag``."""
    for arg in get_args(_strip(tp)):
        if get_origin(arg) is Annotated and any(
            isinstance(m, Tag) and m.tag == tag for m in get_args(arg)[1:]
        ):
            return arg
    return None


def _type_at(root: Any, loc: Sequence[Any]) -> Any:
    """The declared type at ``loc`` under ``root`` (None when it cannot be followed)."""
    tp = root
    for elem in loc:
        if tp is None:
            return None
        if isinstance(elem, str) and elem.startswith("<"):
            tp = _tagged_member(tp, elem)
            continue
        tp = _strip(tp)
        origin = get_origin(tp)
        if inspect.isclass(tp) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(elem))
            tp = None if field is None else field.annotation
        elif origin is list and isinstance(elem, int):
            tp = get_args(tp)[0]
        elif origin is dict:
            tp = get_args(tp)[1]
        else:
            return None
    return tp


def _field_description(root: Any, loc: Sequence[Any]) -> str | None:
    keys = [e for e in loc if not (isinstance(e, str) and e.startswith("<"))]
    if not keys or not isinstance(keys[-1], str):
        return None
    parent = _strip(_type_at(root, loc[:-1])) if loc else None
    if inspect.isclass(parent) and issubclass(parent, BaseModel):
        field = parent.model_fields.get(str(loc[-1]))
        if field is not None:
            return field.description
    return None


def _allowed_keys(root: Any, loc: Sequence[Any]) -> list[str]:
    parent = _strip(_type_at(root, loc))
    if inspect.isclass(parent) and issubclass(parent, BaseModel):
        return list(parent.model_fields)
    return []


# --- mapping errors to problems -----------------------------------------------------------------


def _locate(data: Any, loc: Sequence[Any], *, key_node: bool) -> tuple[Origin, str]:
    """Follow ``loc`` through the YAML tree: the origin of the deepest node reached and the field path."""
    node = data
    origin: Origin = data.origin
    path = origin.path
    missing = False
    for i, elem in enumerate(loc):
        if isinstance(elem, str) and elem.startswith("<"):
            continue
        last = i == len(loc) - 1
        if not missing and isinstance(node, MDict) and elem in node:
            origin = node.key_origins[elem] if (last and key_node) else node.origins[elem]
            path = node.origins[elem].path
            node = node[elem]
        elif not missing and isinstance(node, MList) and isinstance(elem, int) and 0 <= elem < len(node):
            origin = node.origins[elem]
            path = origin.path
            node = node[elem]
        else:
            missing = True
            path = join_path(path, elem if isinstance(elem, int) else str(elem))
    return origin, path


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _literal_choices(ctx: dict[str, Any] | None) -> list[str]:
    expected = str((ctx or {}).get("expected", ""))
    return re.findall(r"'([^']*)'", expected) or [
        c.strip() for c in re.split(r",| or ", expected) if c.strip()
    ]


_TYPE_WORDS = {
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "list_type": "a list",
    "string_type": "a string",
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "finite_number": "a finite number",
}


def _describe(
    error: dict[str, Any], key: Any, description: str | None, allowed: list[str]
) -> tuple[str, str]:
    """(message, fix) for one pydantic error."""
    etype = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    about = f" ({description})" if description else ""
    if etype == "missing":
        return f"missing required key '{key}'", f"Add '{key}: ...'{about}"
    if etype == "extra_forbidden":
        guess = did_you_mean(str(key), allowed)
        if guess:
            return f"unknown key '{key}'", f"Did you mean '{guess}'?"
        listing = ", ".join(allowed) if allowed else "see docs/manifest.md"
        return f"unknown key '{key}'", f"Remove it; allowed keys here: {listing}"
    if etype == "literal_error":
        choices = _literal_choices(ctx)
        guess = did_you_mean(str(value), choices) if isinstance(value, str) else None
        fix = f"Did you mean '{guess}'?" if guess else f"Use one of: {', '.join(choices)}"
        return f"invalid value {_short(value)}; {error['msg'][0].lower()}{error['msg'][1:]}", fix
    if etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = {
            "greater_than": "more than",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "less_than_equal": "at most",
        }[etype]
        limit = next(iter(ctx.values()), "?")
        return f"{_short(value)} is out of range (must be {bound} {limit})", f"Use a value in range{about}"
    if etype in ("too_short", "too_long"):
        if isinstance(value, (list, tuple, dict)):
            count = len(value)
            if key == "coeffs":
                return f"coeffs has {count} numbers, needs exactly 10", "Give exactly 10 numbers"
            return f"has {count} items; {error['msg']}", f"Fix the number of items{about}"
        return error["msg"], f"Fix the number of items{about}"
    if etype in ("time_value",):
        return error["msg"], f"Write a time as {TIME_HELP}"
    if etype in ("duration_value",):
        return error["msg"], 'Write a duration as seconds (0.4), "0.4s" or "400ms"'
    if etype in _TYPE_WORDS:
        fix = f"Write {_TYPE_WORDS[etype]} here{about}"
        return f"expected {_TYPE_WORDS[etype]}, got {_short(value)}", fix
    if etype == "segment_empty":
        return error["msg"], "Give it an emotion and/or a pose"
    if etype.endswith("_form"):
        return f"{error['msg']}, got {_short(value)}", "See docs/manifest.md for the accepted forms"
    return f"{error['msg']}, got {_short(value)}", f"Change the value{about}" if about else "Change the value"


def pydantic_problems(exc: ValidationError, data: MDict, root_type: Any) -> list[Problem]:
    """Turn a pydantic ValidationError on ``data`` (validated as ``root_type``) into problems."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        keys = [e for e in loc if not (isinstance(e, str) and e.startswith("<"))]
        key = keys[-1] if keys else ""
        extra = error["type"] == "extra_forbidden"
        origin, path = _locate(data, loc, key_node=extra)
        allowed = _allowed_keys(root_type, loc[:-1]) if extra else []
        message, fix = _describe(error, key, _field_description(root_type, loc), allowed)
        problems.append(Problem(origin, path, message, fix))
    return problems
