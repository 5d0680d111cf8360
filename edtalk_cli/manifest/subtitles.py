"""Subtitle files (SRT and WebVTT) as timed cues, and the emotion/pose tags at the start of a cue.

Only what segments need is read: each cue's start and end time, its text and the line it was
written on (so problems point at the subtitle file's line). Formatting markup inside the text is
left as is; only the leading tags matter.

Tag grammar (also in docs/manifest.md): a cue's text may start with one or more tags in square
brackets, separated by spaces::

    [happy]                 a model emotion or a preset, by name
    [happy 0.6]             ... with an intensity (0 to 2)
    [emotion: happy 0.6]    the same, spelled out
    [preset: warm-presenter]   a preset (its emotion and intensity); an intensity may follow
    [pose: nod.mp4]         head pose from a clip (relative to the subtitle file), a (T, 6)
                            .npy track, or ``static``

A cue sets at most one emotion and one pose. Brackets later in the text are not tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SUBTITLE_SUFFIXES", "Cue", "CueTag", "SubtitleProblem", "parse_tags", "read_cues"]

SUBTITLE_SUFFIXES = (".srt", ".vtt")
TIMECODE_HELP = "HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm / MM:SS.mmm (WebVTT)"
TAG_KEYS = ("emotion", "preset", "pose")

_TIMING_RE = re.compile(r"^\s*(\S+)\s+-->\s+(\S+)(?:\s.*)?$")
_SRT_TIME_RE = re.compile(r"^(\d{1,3}):(\d{2}):(\d{2})[,.](\d{3})$")  # SRT players accept either mark
_VTT_TIME_RE = re.compile(r"^(?:(\d{1,3}):)?(\d{2}):(\d{2})\.(\d{3})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_NUMBER_RE = re.compile(r"^[0-9]*\.?[0-9]+$")


@dataclass(frozen=True)
class SubtitleProblem:
    """A problem in a subtitle file: 1-based line and column, what is wrong and how to fix it."""

    line: int
    col: int
    message: str
    fix: str


@dataclass(frozen=True)
class Cue:
    """One subtitle: shown from ``start`` to ``end`` seconds; ``line`` is its timing line."""

    start: float
    end: float
    text: str
    line: int
    text_line: int  # the line of the first text line (where tags are written)


@dataclass(frozen=True)
class CueTag:
    """One ``[...]`` tag: ``key`` is emotion, preset or pose; ``col`` is where its ``[`` is (1-based)."""

    key: str
    value: str
    intensity: float | None
    col: int


def _seconds(text: str, vtt: bool) -> float | None:
    match = (_VTT_TIME_RE if vtt else _SRT_TIME_RE).match(text)
    if match is None:
        return None
    hours, minutes, seconds, millis = match.groups()
    if int(minutes) >= 60 or int(seconds) >= 60:
        return None
    return int(hours or 0) * 3600.0 + int(minutes) * 60.0 + int(seconds) + int(millis) / 1000.0


def _blocks(lines: list[str]) -> list[list[tuple[int, str]]]:
    """Runs of non-blank lines, each line with its 1-based number."""
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            current.append((number, line))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def read_cues(path: Path) -> tuple[list[Cue], list[SubtitleProblem]]:
    """The cues of an ``.srt`` or ``.vtt`` file, in file order, and every problem found."""
    path = Path(path)
    vtt = path.suffix.lower() == ".vtt"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [SubtitleProblem(1, 1, f"cannot read {path}: {exc}", "Save the subtitles as UTF-8 text")]
    lines = text.splitlines()
    blocks = _blocks(lines)
    problems: list[SubtitleProblem] = []
    if vtt:
        if not blocks or not blocks[0][0][1].startswith("WEBVTT"):
            return [], [
                SubtitleProblem(1, 1, "a WebVTT file must start with 'WEBVTT'", "Add a first line 'WEBVTT'")
            ]
        blocks = blocks[1:]
    cues: list[Cue] = []
    for block in blocks:
        if vtt and block[0][1].split(" ", 1)[0].split("\t", 1)[0] in ("NOTE", "STYLE", "REGION"):
            continue
        timing = next((i for i, (_, line) in enumerate(block[:2]) if "-->" in line), None)
        if timing is None:
            number, line = block[0]
            problems.append(
                SubtitleProblem(
                    number,
                    1,
                    f"expected a cue timing line 'START --> END', got {line.strip()[:60]!r}",
                    f"Write the times as {TIMECODE_HELP}, and separate cues by a blank line",
                )
            )
            continue
        number, line = block[timing]
        match = _TIMING_RE.match(line)
        if match is None:
            problems.append(
                SubtitleProblem(
                    number,
                    1,
                    f"malformed cue timing {line.strip()!r}",
                    f"Write START --> END as {TIMECODE_HELP}",
                )
            )
            continue
        times: list[float] = []
        for group in (1, 2):
            value = _seconds(match.group(group), vtt)
            if value is None:
                problems.append(
                    SubtitleProblem(
                        number,
                        match.start(group) + 1,
                        f"malformed timecode {match.group(group)!r}",
                        f"Write it as {TIMECODE_HELP}",
                    )
                )
            else:
                times.append(value)
        if len(times) < 2:
            continue
        start, end = times
        if end <= start:
            problems.append(
                SubtitleProblem(
                    number,
                    match.start(2) + 1,
                    f"cue ends at {match.group(2)}, not after its start {match.group(1)}",
                    "Make the end time later than the start time",
                )
            )
            continue
        body = block[timing + 1 :]
        text_line = body[0][0] if body else number
        cues.append(Cue(start, end, "\n".join(line for _, line in body), number, text_line))
    return cues, problems


def _tag(inner: str, col: int) -> tuple[CueTag | None, SubtitleProblem | None]:
    """One tag's contents (between the brackets); ``col`` is the column of its ``[``."""
    inner = inner.strip()
    key = "emotion"
    if ":" in inner:
        key, _, rest = inner.partition(":")
        key, inner = key.strip().lower(), rest.strip()
        if key not in TAG_KEYS:
            return None, SubtitleProblem(
                0, col, f"unknown tag key {key!r}", f"Use one of: {', '.join(k + ':' for k in TAG_KEYS)}"
            )
    if not inner:
        return None, SubtitleProblem(
            0, col, f"empty {key} tag", "Write a name, e.g. [happy] or [pose: nod.mp4]"
        )
    if key == "pose":
        return CueTag("pose", inner, None, col), None
    parts = inner.split()
    name, intensity = parts[0], None
    if len(parts) > 2 or not _NAME_RE.match(name):
        return None, SubtitleProblem(
            0,
            col,
            f"cannot read tag [{inner}]",
            "Write [NAME] or [NAME INTENSITY], e.g. [happy 0.6], [preset: warm-presenter] or [pose: nod.mp4]",
        )
    if len(parts) == 2:
        if not _NUMBER_RE.match(parts[1]):
            return None, SubtitleProblem(
                0, col, f"intensity {parts[1]!r} of [{inner}] is not a number", "Write it as e.g. [happy 0.6]"
            )
        intensity = float(parts[1])
    return CueTag(key, name, intensity, col), None


def parse_tags(text: str) -> tuple[list[CueTag], list[SubtitleProblem]]:
    """The tags at the start of a cue's text (line numbers of the problems are 0: the caller's line)."""
    tags: list[CueTag] = []
    problems: list[SubtitleProblem] = []
    first = text.split("\n", 1)[0]
    pos = len(first) - len(first.lstrip())
    while pos < len(first) and first[pos] == "[":
        close = first.find("]", pos)
        if close < 0:
            problems.append(SubtitleProblem(0, pos + 1, "unclosed tag '['", "Close the tag with ']'"))
            break
        tag, problem = _tag(first[pos + 1 : close], pos + 1)
        if problem is not None:
            problems.append(problem)
        elif tag is not None:
            if any(t.key == "pose" for t in tags) and tag.key == "pose":
                problems.append(
                    SubtitleProblem(0, pos + 1, "a cue sets one pose", "Remove one of its pose tags")
                )
            elif tag.key != "pose" and any(t.key != "pose" for t in tags):
                problems.append(
                    SubtitleProblem(0, pos + 1, "a cue sets one emotion", "Remove one of its emotion tags")
                )
            else:
                tags.append(tag)
        pos = close + 1
        while pos < len(first) and first[pos] in " \t":
            pos += 1
    return tags, problems
