"""Safe YAML loading that remembers where every value came from.

Manifests are parsed with a :class:`yaml.SafeLoader` subclass (safe_load semantics: plain
mappings, lists, strings, numbers, booleans; any ``!!python/...`` tag is refused). Mappings and
lists are built as :class:`MDict` / :class:`MList`, which carry an :class:`Origin` (file, line,
column, field path) for themselves, for each value and for each mapping key, so that a problem
found later (by pydantic or by a semantic check) can be reported at the exact line of the file.

Two YAML 1.1 quirks are switched off because they corrupt timecodes: sexagesimal numbers
(``1:02.5`` would become the float 62.5 and ``00:00:01:12`` the int 72) are read as strings.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MDict",
    "MList",
    "Origin",
    "YamlProblem",
    "display_path",
    "load_yaml",
    "load_yaml_text",
    "mark_plain",
]

# Values a document may hold once its aliases are expanded: far above any real manifest, far
# below what a "billion laughs" document (a few aliases nested a few levels deep) expands to.
MAX_EXPANDED_NODES = 100_000
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if rel.startswith("..") else rel


@dataclass(frozen=True)
class Origin:
    """Where a YAML node starts: file, 1-based line and column, and its field path in that file."""

    file: Path
    line: int
    col: int
    path: str

    def where(self) -> str:
        """``file:line:col``; just ``file`` for data that has no lines (a dict given to the API)."""
        if self.line <= 0:
            return display_path(self.file)
        return f"{display_path(self.file)}:{self.line}:{self.col}"

    def child(self, key: str | int, line: int, col: int) -> Origin:
        return Origin(self.file, line, col, join_path(self.path, key))


def join_path(parent: str, key: str | int) -> str:
    """Field-path syntax: ``jobs[1].emotion.intensity``."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


class MDict(dict):
    """A YAML mapping with origins: ``origin`` (the mapping), ``origins[k]`` (values), ``key_origins[k]``."""

    origin: Origin
    origins: dict[Any, Origin]
    key_origins: dict[Any, Origin]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origins = {}
        self.key_origins = {}

    def set(self, key: Any, value: Any, origin: Origin, key_origin: Origin | None = None) -> None:
        """Set ``key`` with the origin of its value (and of the key itself)."""
        self[key] = value
        self.origins[key] = origin
        self.key_origins[key] = key_origin or origin

    def origin_of(self, key: Any) -> Origin:
        """Origin of the value at ``key``; the mapping's own origin (with the key's path) when absent."""
        if key in self.origins:
            return self.origins[key]
        return Origin(self.origin.file, self.origin.line, self.origin.col, join_path(self.origin.path, key))


class MList(list):
    """A YAML sequence with origins: ``origin`` (the list) and ``origins[i]`` (items)."""

    origin: Origin
    origins: list[Origin]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.origins = []

    def origin_of(self, index: int) -> Origin:
        if 0 <= index < len(self.origins):
            return self.origins[index]
        return Origin(self.origin.file, self.origin.line, self.origin.col, join_path(self.origin.path, index))


@dataclass(frozen=True)
class YamlProblem:
    """A problem found while reading the YAML itself (syntax, unsafe tag, duplicate key)."""

    origin: Origin
    message: str
    fix: str


_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_INT_RE = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.X,
)


class _MarkedLoader(yaml.SafeLoader):
    """SafeLoader that builds MDict/MList with raw marks and reads sexagesimal numbers as strings."""

    def __init__(self, stream: str, file: Path) -> None:
        super().__init__(stream)
        self.file = file
        self.duplicates: list[tuple[MDict, Any, yaml.Mark]] = []


# Own copy of the implicit resolvers, minus YAML 1.1 sexagesimal ints/floats.
_MarkedLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_MarkedLoader.add_implicit_resolver(_INT_TAG, _INT_RE, list("-+0123456789"))
_MarkedLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _construct_map(loader: _MarkedLoader, node: yaml.MappingNode):
    data = MDict()
    data._marks = {}  # type: ignore[attr-defined]  # key -> ((line, col) of key, (line, col) of value)
    data._self_mark = _mark(node)  # type: ignore[attr-defined]
    yield data
    loader.flatten_mapping(node)  # resolves '<<' merge keys
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            ) from None
        if key in data:
            loader.duplicates.append((data, key, key_node.start_mark))
        data[key] = loader.construct_object(value_node, deep=True)
        data._marks[key] = (_mark(key_node), _mark(value_node))  # type: ignore[attr-defined]


def _construct_seq(loader: _MarkedLoader, node: yaml.SequenceNode):
    data = MList()
    data._self_mark = _mark(node)  # type: ignore[attr-defined]
    yield data
    data.extend(loader.construct_object(child, deep=True) for child in node.value)
    data._item_marks = [_mark(child) for child in node.value]  # type: ignore[attr-defined]


_MarkedLoader.add_constructor(_MAP_TAG, _construct_map)
_MarkedLoader.add_constructor(_SEQ_TAG, _construct_seq)


def _finish(value: Any, origin: Origin, seen: set[int]) -> None:
    """Turn the raw marks collected during construction into Origins with field paths."""
    if id(value) in seen:  # a YAML alias: the first path wins
        return
    if isinstance(value, MDict):
        seen.add(id(value))
        value.origin = origin
        for key, (kmark, vmark) in value.__dict__.pop("_marks", {}).items():
            value.key_origins[key] = origin.child(str(key), *kmark)
            value.origins[key] = origin.child(str(key), *vmark)
            _finish(value[key], value.origins[key], seen)
        value.__dict__.pop("_self_mark", None)
    elif isinstance(value, MList):
        seen.add(id(value))
        value.origin = origin
        marks = value.__dict__.pop("_item_marks", [])
        value.__dict__.pop("_self_mark", None)
        value.origins = [origin.child(i, *m) for i, m in enumerate(marks)]
        for item, item_origin in zip(value, value.origins, strict=True):
            _finish(item, item_origin, seen)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes in the tree under ``root`` with every alias copied out (counting stops past ``limit``).

    Each distinct node is sized once (memoised), so this is linear in the composed document.
    """
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a recursive alias counts once
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total = min(total + size(child), limit + 1)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                total = min(total + size(key) + size(value), limit + 1)
        sizes[id(node)] = total
        return total

    return size(root)


def _yaml_error_problem(file: Path, exc: yaml.YAMLError) -> YamlProblem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    origin = Origin(file, line, col, "")
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, yaml.constructor.ConstructorError) and "constructor for the tag" in str(problem):
        tag = re.search(r"'([^']*)'", str(problem))
        name = tag.group(1).replace("tag:yaml.org,2002:", "!!") if tag else "?"
        return YamlProblem(
            origin,
            f"unsafe or unknown YAML tag {name!r} refused",
            "Remove the tag: manifests hold only plain YAML (mappings, lists, strings, numbers, booleans)",
        )
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    return YamlProblem(origin, message, "Fix the YAML syntax at this position (check indentation and quotes)")


def load_yaml(file: Path) -> tuple[Any, list[YamlProblem]]:
    """Parse ``file`` safely; return (data with origins, problems). Data is None when unreadable."""
    file = Path(file).resolve()
    top = Origin(file, 1, 1, "")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [YamlProblem(top, f"file not found: {file}", "Check the path")]
    except IsADirectoryError:
        return None, [YamlProblem(top, f"{file} is a directory, not a YAML file", "Name a .yaml file")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [YamlProblem(top, f"cannot read {file}: {exc}", "Save the file as UTF-8 text")]
    return load_yaml_text(text, file)


def load_yaml_text(text: str, file: Path) -> tuple[Any, list[YamlProblem]]:
    """Parse YAML (or JSON) ``text`` safely as if read from ``file`` (which need not exist)."""
    top = Origin(file, 1, 1, "")
    loader = _MarkedLoader(text, file)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES:
            return None, [
                YamlProblem(
                    top,
                    "manifest uses too many YAML aliases (billion-laughs?): expanded, it would hold "
                    f"more than {MAX_EXPANDED_NODES} values",
                    "Write the repeated parts out, or use fewer nested aliases (*name)",
                )
            ]
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        return None, [_yaml_error_problem(file, exc)]
    finally:
        loader.dispose()
    _finish(data, top, set())
    problems = [
        YamlProblem(
            Origin(file, mark.line + 1, mark.column + 1, join_path(mapping.origin.path, str(key))),
            f"duplicate key {key!r}",
            "Keep one of them: YAML keeps only the last value",
        )
        for mapping, key, mark in loader.duplicates
    ]
    return data, problems


def mark_plain(value: Any, origin: Origin) -> Any:
    """Plain data (dicts, lists, scalars, e.g. from JSON) as MDict/MList whose every node sits at ``origin``.

    Field paths are built as usual; file, line and column are those of ``origin`` (line 0: no lines).
    """
    if isinstance(value, dict):
        out = MDict()
        out.origin = origin
        for key, item in value.items():
            child = Origin(origin.file, origin.line, origin.col, join_path(origin.path, str(key)))
            out.set(key, mark_plain(item, child), child)
        return out
    if isinstance(value, (list, tuple)):
        seq = MList()
        seq.origin = origin
        for index, item in enumerate(value):
            child = Origin(origin.file, origin.line, origin.col, join_path(origin.path, index))
            seq.append(mark_plain(item, child))
            seq.origins.append(child)
        return seq
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
