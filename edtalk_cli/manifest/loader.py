"""Loading manifests: includes, defaults, presets, validation and resolution into Jobs.

Every problem in a manifest (and in the files it includes) is collected before anything is
raised, so one run of ``edtalk validate`` reports them all.
"""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from edtalk_cli.manifest.model import (
    EmotionSpec,
    Encode,
    Enhance,
    Job,
    Manifest,
    Mouth,
    PasteBack,
    PoseSpec,
    Segment,
    Source,
)
from edtalk_cli.manifest.presets import Preset, discover_presets, load_preset
from edtalk_cli.manifest.problems import (
    ManifestValidationError,
    Problem,
    dedupe,
    did_you_mean,
    pydantic_problems,
)
from edtalk_cli.manifest.spec import (
    DEFAULT_TRANSITION,
    INTENSITY_MAX,
    JOB_NAME_PATTERN,
    MODEL_EMOTIONS,
    JobDefaults,
    JobSpec,
    ManifestSpec,
    SegmentSpec,
    TopLevelSpec,
    parse_feather,
    segments_field,
)
from edtalk_cli.manifest.subtitles import SUBTITLE_SUFFIXES, parse_tags, read_cues
from edtalk_cli.manifest.timecode import TIME_HELP, TimecodeError, parse_duration, parse_time
from edtalk_cli.manifest.tree import deep_merge, empty_mdict, resolve_path
from edtalk_cli.manifest.yaml_marks import MDict, MList, Origin, load_yaml

__all__ = [
    "ManifestCheck",
    "ManifestDocument",
    "check_manifests",
    "load_manifest",
    "load_manifests",
    "manifest_json_schema",
    "output_problems",
    "resolve_document",
]
JOB_NAME_RE = re.compile(JOB_NAME_PATTERN)
TEMPLATE_FIELDS = ("name", "manifest", "preset", "fps")
_MANIFEST_KEYS = frozenset({"version", "jobs", "defaults", "include"})


MAX_PATH_BYTES = 4096  # an output path, in bytes of its file-system encoding (Linux PATH_MAX)
MAX_NAME_BYTES = 255  # one component of it (NAME_MAX of common file systems)


def _path_too_long(path: Path) -> str | None:
    """Why ``path`` is too long for an output (None when it is not)."""
    size = len(os.fsencode(path))
    if size > MAX_PATH_BYTES:
        return f"{size} bytes (at most {MAX_PATH_BYTES})"
    for part in path.parts:
        part_size = len(os.fsencode(part))
        if part_size > MAX_NAME_BYTES:
            return f"the name {part[:40]!r}... has {part_size} bytes (at most {MAX_NAME_BYTES} per name)"
    return None


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the manifest input format."""
    schema = ManifestSpec.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


@dataclass
class _File:
    """A manifest file after its includes: effective defaults and jobs (each with its own file)."""

    path: Path
    defaults: MDict
    jobs: list[tuple[Any, Origin, _File]] = field(default_factory=list)


@dataclass
class _Loader:
    problems: list[Problem] = field(default_factory=list)
    preset_files: list[Path] = field(default_factory=list)
    includes: list[Path] = field(default_factory=list)
    _cache: dict[Path, Any] = field(default_factory=dict)

    def add(self, origin: Origin, message: str, fix: str) -> None:
        self.problems.append(Problem.at(origin, message, fix))

    def read(self, path: Path) -> Any:
        if path not in self._cache:
            data, yaml_problems = load_yaml(path)
            self.problems.extend(Problem.from_yaml(p) for p in yaml_problems)
            self._cache[path] = data
        return self._cache[path]

    # --- files and includes ----------------------------------------------------------------

    def read_manifest(self, path: Path, stack: tuple[Path, ...]) -> _File | None:
        data = self.read(path)
        top = Origin(path, 1, 1, "")
        if data is None:
            if not any(p.origin.file == path for p in self.problems):
                self.add(top, "the manifest is empty", "Add 'version: 1' and a 'jobs:' list")
            return None
        if not isinstance(data, MDict):
            self.add(
                top, "a manifest must be a mapping", "Write top-level keys: version, defaults, jobs, include"
            )
            return None
        try:
            TopLevelSpec.model_validate(data)
        except ValidationError as exc:
            self.problems.extend(pydantic_problems(exc, data, TopLevelSpec))
        if len(stack) == 1 and "version" not in data:
            self.add(top, "missing 'version'", "Add 'version: 1' at the top of the file")
        result = _File(path, empty_mdict(data.origin))
        includes = data.get("include")
        if isinstance(includes, MList):
            for index, item in enumerate(includes):
                if isinstance(item, str):
                    self._include(
                        result, resolve_path(item, includes.origins[index]), includes.origins[index], stack
                    )
        defaults = data.get("defaults")
        if isinstance(defaults, MDict):
            if "name" in defaults:
                self.add(
                    defaults.key_origins["name"],
                    "defaults cannot set 'name'",
                    "Give each job its own unique name",
                )
            result.defaults = deep_merge(result.defaults, defaults)
        jobs = data.get("jobs")
        if isinstance(jobs, MList):
            for index, job in enumerate(jobs):
                result.jobs.append((job, jobs.origins[index], result))
        return result

    def _include(self, into: _File, path: Path, origin: Origin, stack: tuple[Path, ...]) -> None:
        if path in stack:
            chain = " -> ".join(p.name for p in (*stack[stack.index(path) :], path))
            self.add(origin, f"include cycle: {chain}", "Remove one of the includes that close the cycle")
            return
        if not path.is_file():
            self.add(
                origin,
                f"included file not found: {path}",
                f"Check the path (relative to {origin.file.parent})",
            )
            return
        data = self.read(path)
        if isinstance(data, MDict) and not (_MANIFEST_KEYS & set(data)):  # a preset file
            self.preset_files.append(path)
            self.includes.append(path)
            return
        self.includes.append(path)
        sub = self.read_manifest(path, (*stack, path))
        if sub is None:
            return
        into.defaults = deep_merge(into.defaults, sub.defaults)
        into.jobs.extend(sub.jobs)


def _preset_layer(preset: Preset, at: Origin) -> MDict:
    """The job keys a preset supplies: emotion (with intensity), pose (static) and transition."""
    assert preset.data is not None
    data = preset.data
    layer = empty_mdict(at)
    if "emotion" in data:
        emotion = _emotion_with_intensity(data)
        layer.set("emotion", emotion, data.origins["emotion"], data.key_origins["emotion"])
    if data.get("pose", "static") == "static" and "pose" in data:
        layer.set("pose", "static", data.origins["pose"], data.key_origins["pose"])
    if "transition" in data:
        layer.set(
            "transition", data["transition"], data.origins["transition"], data.key_origins["transition"]
        )
    return layer


def _emotion_with_intensity(preset_data: MDict) -> Any:
    """A preset's emotion with its top-level ``intensity`` folded in (unless the emotion sets one)."""
    emotion = preset_data["emotion"]
    if "intensity" not in preset_data:
        return emotion
    origin = preset_data.origins["emotion"]
    if isinstance(emotion, str):
        out = empty_mdict(origin)
        out.set("preset", emotion, origin)
    elif isinstance(emotion, MDict):
        if emotion.get("intensity") is not None:
            return emotion  # the emotion's own intensity wins (see preset_intensity)
        out = deep_merge(None, emotion)
    else:
        return emotion
    out.set("intensity", preset_data["intensity"], preset_data.origins["intensity"])
    return out


@dataclass
class _JobResolver:
    """Semantic checks and resolution of one merged, pydantic-valid job."""

    spec: JobSpec | _PartialJob
    raw: MDict
    file: _File
    presets: dict[str, Preset]
    problems: list[Problem] = field(default_factory=list)
    file_problems: list[Problem] = field(default_factory=list)  # missing inputs: fail only this job
    segment_origins: list[Origin] = field(default_factory=list)  # of job.segments, in time order

    def add(self, origin: Origin, message: str, fix: str) -> None:
        self.problems.append(Problem.at(origin, message, fix))

    # --- paths -------------------------------------------------------------------------------

    def existing(self, container: MDict, key: str, *, directory: bool = False) -> Path:
        origin = container.origin_of(key)
        path = resolve_path(str(container[key]), origin)
        ok = path.is_dir() if directory else path.is_file()
        if not ok:
            what = "directory" if directory else "file"
            if path.exists():
                message = (
                    f"expected a {what}, found {'a directory' if path.is_dir() else 'something else'}: {path}"
                )
            else:
                message = f"{what} not found: {path}"
            fix = f"Fix the path; relative paths are resolved from {origin.file.parent}"
            self.file_problems.append(Problem.at(origin, message, fix))  # this job's failure only
        return path

    # --- emotion -----------------------------------------------------------------------------

    def emotion_by_name(
        self, name: str, intensity: float | None, origin: Origin, chain: tuple[str, ...]
    ) -> EmotionSpec | None:
        """A model emotion name, else a preset's emotion (model emotions win over same-named presets)."""
        if name in MODEL_EMOTIONS:
            return EmotionSpec(
                kind="name", name=name, intensity=1.0 if intensity is None else intensity, label=name
            )
        preset = self.presets.get(name)
        if preset is None:
            choices = [*MODEL_EMOTIONS, *sorted(self.presets)]
            guess = did_you_mean(name, choices)
            fix = (
                f"Did you mean '{guess}'?"
                if guess
                else f"Use a model emotion ({', '.join(MODEL_EMOTIONS)}) or a preset"
            )
            self.add(origin, f"unknown emotion or preset {name!r}", fix)
            return None
        if name in chain:
            self.add(
                origin,
                f"preset cycle: {' -> '.join((*chain, name))}",
                "Make the presets refer to model emotions",
            )
            return None
        if not preset.ok or preset.data is None:
            self.problems.extend(preset.problems)
            self.add(
                origin, f"preset {name!r} ({preset.path}) is invalid", "Fix the preset file (problems listed)"
            )
            return None
        inner = self.emotion(_emotion_with_intensity(preset.data), preset.data, "emotion", (*chain, name))
        if inner is None:
            return None
        update: dict[str, Any] = {"label": name}
        if intensity is not None:
            update["intensity"] = intensity
        return inner.model_copy(update=update)

    def emotion(
        self, value: Any, container: MDict, key: Any, chain: tuple[str, ...] = ()
    ) -> EmotionSpec | None:
        """Resolve an emotion value (already type-checked by pydantic)."""
        origin = container.origin_of(key)
        if isinstance(value, str):
            return self.emotion_by_name(value, None, origin, chain)
        if not isinstance(value, MDict):
            return None
        intensity = value.get("intensity")
        intensity = None if intensity is None else float(intensity)
        scale = 1.0 if intensity is None else intensity
        if "preset" in value:
            return self.emotion_by_name(str(value["preset"]), intensity, value.origin_of("preset"), chain)
        if "image" in value:
            path = self.existing(value, "image")
            return EmotionSpec(kind="image", path=path, intensity=scale, crop=value.get("crop") or "auto")
        if "video" in value:
            path = self.existing(value, "video")
            return EmotionSpec(
                kind="video",
                path=path,
                intensity=scale,
                mode=value.get("mode") or "pingpong",
                crop=value.get("crop") or "auto",
            )
        if "coeffs" in value:
            coeffs = tuple(float(c) for c in value["coeffs"])
            if not all(math.isfinite(c) for c in coeffs):
                self.add(value.origin_of("coeffs"), "coeffs must be finite numbers", "Replace nan/inf values")
                return None
            return EmotionSpec(kind="coeffs", coeffs=coeffs, intensity=scale)
        if "blend" in value:
            return self.blend(value["blend"], value.origin_of("blend"), scale, chain)
        return None

    def blend(
        self, weights: Any, origin: Origin, intensity: float, chain: tuple[str, ...]
    ) -> EmotionSpec | None:
        if not isinstance(weights, MDict) or not weights:
            self.add(
                origin, "blend is empty", "Give at least one name: weight, e.g. {happy: 0.6, surprised: 0.4}"
            )
            return None
        total = sum(float(w) for w in weights.values())
        ok = True
        if not total > 0:
            self.add(origin, "blend weights sum to 0", "Give at least one positive weight")
            ok = False
        components = []
        for name, weight in weights.items():
            spec = self.emotion_by_name(str(name), None, weights.key_origins[name], chain)
            if spec is None:
                ok = False
                continue
            if not spec.is_fixed:
                self.add(
                    weights.key_origins[name],
                    f"blend component {name!r} is a reference video",
                    "Blend only names whose emotion is one vector (model emotions, coeffs, images)",
                )
                ok = False
            components.append((float(weight) / total if total > 0 else 0.0, spec))
        if not ok:
            return None
        return EmotionSpec(kind="blend", components=tuple(components), intensity=intensity)

    # --- pose / mouth / source ----------------------------------------------------------------

    def pose(self, value: Any, container: MDict, key: str) -> PoseSpec | None:
        if value is None or value == "static":
            return PoseSpec(kind="static")
        if not isinstance(value, MDict):
            return None
        mode = value.get("mode") or self.preset_pose_mode or "pingpong"
        if "video" in value:
            path = self.existing(value, "video")
            if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
                self.add(value.origin_of("video"), f"pose video is an image: {path}", "Give a video clip")
            return PoseSpec(kind="video", path=path, mode=mode, crop=value.get("crop") or "auto")
        path = self.existing(value, "track")
        if path.suffix.lower() != ".npy":
            self.add(
                value.origin_of("track"),
                f"pose track must be a .npy file: {path}",
                "Save the (T, 6) array with numpy.save",
            )
        return PoseSpec(kind="track", path=path, mode=mode)

    @property
    def preset_pose_mode(self) -> str | None:
        preset = self.presets.get(self.spec.preset or "")
        if preset is not None and preset.spec is not None and preset.spec.pose != "static":
            return preset.spec.pose
        return None

    def source(self) -> Source | None:
        raw = self.raw["source"]
        container, key = (raw, "path") if isinstance(raw, MDict) else (self.raw, "source")
        path = self.existing(container, key)
        options = raw if isinstance(raw, MDict) else {}
        kind = options.get("type", "auto")
        if kind == "auto":
            from edtalk_cli.video.io import is_image_path, is_video_path  # by extension; opens unknown ones

            if is_image_path(path):
                kind = "image"
            elif is_video_path(path):
                kind = "video"
            elif path.is_file():
                self.add(
                    container.origin_of(key),
                    f"cannot tell whether {path.name} is an image or a video",
                    "Use a known extension or write source: {path: ..., type: image|video}",
                )
                return None
            else:  # missing: already reported
                return None
        paste_options = _paste_options(options.get("paste_back", True))
        if paste_options.region != "face" and options.get("crop") == "box":
            self.add(
                container.origin_of("paste_back"),
                f"paste_back region '{paste_options.region}' needs the face's landmarks on every frame, "
                "and crop: box tracks boxes only",
                "Use crop: auto (or none for frames that are already face crops), or paste_back: {region: face}",
            )
            return None
        return Source(
            path=path,
            kind=kind,
            crop=options.get("crop", "auto"),
            paste_back=options.get("paste_back", True) is not False,
            paste_options=paste_options,
            loop=options.get("loop", "pingpong"),
        )

    # --- segments ----------------------------------------------------------------------------

    def time(self, seg: MDict, key: str) -> float | None:
        try:
            return parse_time(seg[key], self.spec.fps)
        except TimecodeError as exc:
            self.add(seg.origin_of(key), str(exc), f"Write a time as {TIME_HELP}")
            return None

    def subtitle_segments(self, container: MDict) -> list[tuple[Segment, Origin]]:
        """Segments from the tagged cues of ``segments: {subtitles: FILE}``; untagged cues make none."""
        path = self.existing(container, "subtitles")
        if path.suffix.lower() not in SUBTITLE_SUFFIXES:
            self.add(
                container.origin_of("subtitles"),
                f"subtitles must be an .srt or .vtt file, got {path.name!r}",
                "Give an SRT or WebVTT file",
            )
            return []
        if not path.is_file():  # reported by existing()
            return []
        field_path = container.origin_of("subtitles").path
        cues, problems = read_cues(path)
        for problem in problems:
            self.add(Origin(path, problem.line, problem.col, field_path), problem.message, problem.fix)
        resolved: list[tuple[Segment, Origin]] = []
        for cue in cues:
            tags, tag_problems = parse_tags(cue.text)
            for problem in tag_problems:
                self.add(Origin(path, cue.text_line, problem.col, field_path), problem.message, problem.fix)
            emotion: EmotionSpec | None = None
            pose: PoseSpec | None = None
            ok = not tag_problems
            for tag in tags:
                at = Origin(path, cue.text_line, tag.col, field_path)
                if tag.key == "pose":
                    pose = self.subtitle_pose(tag.value, at)
                    ok = ok and pose is not None
                    continue
                if tag.intensity is not None and not 0.0 <= tag.intensity <= INTENSITY_MAX:
                    self.add(
                        at, f"intensity {tag.intensity:g} is out of range", f"Use 0 to {INTENSITY_MAX:g}"
                    )
                    ok = False
                    continue
                if tag.key == "preset" and tag.value not in self.presets:
                    guess = did_you_mean(tag.value, self.presets)
                    fix = f"Did you mean '{guess}'?" if guess else "See `edtalk presets list`"
                    self.add(at, f"unknown preset {tag.value!r}", fix)
                    ok = False
                    continue
                emotion = self.emotion_by_name(tag.value, tag.intensity, at, ())
                ok = ok and emotion is not None
            if ok and (emotion is not None or pose is not None):
                origin = Origin(path, cue.line, 1, field_path)
                resolved.append((Segment(start=cue.start, end=cue.end, emotion=emotion, pose=pose), origin))
        return resolved

    def subtitle_pose(self, value: str, at: Origin) -> PoseSpec | None:
        """The pose of a ``[pose: ...]`` tag: ``static``, a clip or a .npy track (relative to the subtitles)."""
        if value == "static":
            return PoseSpec(kind="static")
        path = resolve_path(value, at)
        if not path.is_file():
            self.add(at, f"pose file not found: {path}", f"Fix the path; it is relative to {at.file.parent}")
            return None
        mode = self.preset_pose_mode or "pingpong"
        if path.suffix.lower() == ".npy":
            return PoseSpec(kind="track", path=path, mode=mode)
        job_pose = self.raw.get("pose")
        crop = (
            job_pose.get("crop") or "auto" if isinstance(job_pose, MDict) and "video" in job_pose else "auto"
        )
        return PoseSpec(kind="video", path=path, mode=mode, crop=crop)

    def segments(self) -> tuple[Segment, ...]:
        raw = self.raw.get("segments")
        resolved: list[tuple[Segment, Origin]] = []
        if isinstance(raw, MDict) and "subtitles" in raw:
            resolved = self.subtitle_segments(raw)
            raw = MList()
        if not isinstance(raw, MList):
            return ()
        for index, seg in enumerate(raw):
            if not isinstance(seg, MDict):
                continue
            start = self.time(seg, "start")
            end = self.time(seg, "end") if seg.get("end") is not None else None
            emotion = self.emotion(seg["emotion"], seg, "emotion") if seg.get("emotion") is not None else None
            pose = self.pose(seg["pose"], seg, "pose") if seg.get("pose") is not None else None
            if start is None or ("end" in seg and seg.get("end") is not None and end is None):
                continue
            if end is not None and end <= start:
                self.add(
                    seg.origin_of("end"),
                    f"segment ends at {end:g}s, not after its start {start:g}s",
                    "Make end greater than start",
                )
                continue
            resolved.append((Segment(start=start, end=end, emotion=emotion, pose=pose), raw.origins[index]))
        ordered = sorted(resolved, key=lambda item: item[0].start)
        latest: tuple[Segment, Origin] | None = None  # the earlier segment reaching furthest
        for cur, cur_origin in ordered:
            if latest is not None:
                prev, prev_origin = latest
                prev_end = math.inf if prev.end is None else prev.end
                if cur.start < prev_end - 1e-9:
                    end_text = "end" if prev.end is None else f"{prev.end:g}s"
                    cur_end = "end" if cur.end is None else f"{cur.end:g}s"
                    self.add(
                        cur_origin,
                        f"segment {cur.start:g}s-{cur_end} overlaps the segment "
                        f"{prev.start:g}s-{end_text} at line {prev_origin.line}",
                        "Segments must not overlap: end one before the next starts",
                    )
            cur_end_s = math.inf if cur.end is None else cur.end
            if latest is None or cur_end_s > (math.inf if latest[0].end is None else latest[0].end):
                latest = (cur, cur_origin)
        self.segment_origins = [origin for _, origin in ordered]
        return tuple(segment for segment, _ in ordered)

    # --- output ------------------------------------------------------------------------------

    def output(self, label: str) -> Path | None:
        template = self.spec.output
        origin = (
            self.raw.origin_of("output")
            if "output" in self.raw
            else Origin(
                self.file.path, self.raw.origin.line, self.raw.origin.col, f"{self.raw.origin.path}.output"
            )
        )
        try:
            parsed = [
                (f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None
            ]
        except ValueError as exc:
            self.add(origin, f"bad output template {template!r}: {exc}", "Write {{ and }} for literal braces")
            return None
        fields = [f for f, _, _ in parsed]
        dressed = [f for f, spec, conv in parsed if f in TEMPLATE_FIELDS and (spec or conv)]
        if dressed:
            self.add(
                origin,
                f"output template {template!r} formats {{{dressed[0]}}}: placeholders take no format "
                "spec or conversion",
                f"Write the bare placeholder {{{dressed[0]}}}",
            )
            return None
        unknown = [f for f in fields if f not in TEMPLATE_FIELDS]
        if unknown:
            guess = did_you_mean(unknown[0], TEMPLATE_FIELDS)
            fix = (
                f"Did you mean {{{guess}}}?"
                if guess
                else f"Use {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            )
            self.add(origin, f"unknown field {{{unknown[0]}}} in output template {template!r}", fix)
            return None
        rendered = template.format(
            name=self.spec.name,
            manifest=self.file.path.stem.strip("<>"),  # "<stdin>" -> "stdin"
            preset=label,
            fps=f"{self.spec.fps:g}",
        )
        path = (
            resolve_path(rendered, origin)
            if "output" in self.raw
            else resolve_path(rendered, self.file_origin)
        )
        too_long = _path_too_long(path)
        if too_long:
            self.add(origin, f"output path too long: {too_long}", "Use a shorter output template or name")
            return None
        if path.suffix.lower() != ".mp4":
            self.add(
                origin, f"output must be an .mp4 file, got {path.name!r}", "End the output template with .mp4"
            )
            return None
        return path

    @property
    def file_origin(self) -> Origin:
        return Origin(self.file.path, 1, 1, "")

    def enhance(self) -> Enhance | None:
        """The job's face enhancement (``enhance.weights`` must be an existing file), or None."""
        spec, raw = self.spec.enhance, self.raw.get("enhance")
        if spec is None or not isinstance(raw, MDict):
            return None
        weights = self.existing(raw, "weights") if raw.get("weights") is not None else None
        return Enhance(model=spec.model, weights=weights, strength=spec.strength)

    # --- the job -----------------------------------------------------------------------------

    def resolve(self) -> Job | None:
        spec, raw = self.spec, self.raw
        if spec.name is not None and not JOB_NAME_RE.match(spec.name):
            self.add(
                raw.origin_of("name"),
                f"job name {spec.name!r} is not filesystem-safe",
                "Use letters, digits, '.', '_' and '-' (max 128, not starting with '.' or '-')",
            )
        source = self.source() if spec.source is not None else None
        audio = self.existing(raw, "audio") if spec.audio is not None else None
        mouth = Mouth()
        if isinstance(raw.get("mouth"), MDict):
            mouth = Mouth(
                kind="video",
                path=self.existing(raw["mouth"], "video"),
                crop=raw["mouth"].get("crop") or "auto",
                mode=raw["mouth"].get("mode") or self.preset_pose_mode or "pingpong",
            )
        pose = self.pose(raw.get("pose"), raw, "pose")
        emotion_explicit = raw.get("emotion") is not None
        emotion: EmotionSpec | None = EmotionSpec(kind="name", name="neutral", label="neutral")
        if emotion_explicit:
            emotion = self.emotion(raw["emotion"], raw, "emotion")
            preset = self.presets.get(spec.preset or "")
            if emotion is not None and preset is not None and raw.origin_of("emotion").file == preset.path:
                emotion = emotion.model_copy(
                    update={"label": preset.name}
                )  # the emotion came from the preset
        segments = self.segments()
        transition = DEFAULT_TRANSITION if spec.transition is None else parse_duration(spec.transition)
        if spec.model == "lip_pose":
            uses_emotion = emotion_explicit or any(s.emotion is not None for s in segments)
            if uses_emotion:
                at = raw.origin_of("emotion") if emotion_explicit else raw.origin_of("segments")
                self.add(
                    at,
                    "model 'lip_pose' has no expression bank, so it cannot show an emotion",
                    "Remove the emotion (and segment emotions) or use model: edtalk",
                )
        weights = self.existing(raw, "weights", directory=True) if raw.get("weights") is not None else None
        enhance = self.enhance()
        label = spec.preset or (emotion.label if emotion is not None else "custom")
        output = self.output(label) if spec.name is not None else None
        if (
            self.problems
            or source is None
            or audio is None
            or emotion is None
            or pose is None
            or output is None
        ):
            return None
        assert spec.name is not None
        return Job(
            name=spec.name,
            manifest=self.file.path,
            source=source,
            audio=audio,
            mouth=mouth,
            pose=pose,
            emotion=emotion,
            emotion_explicit=emotion_explicit,
            preset=spec.preset,
            segments=segments,
            transition=transition,
            output=output,
            fps=spec.fps,
            model=spec.model,
            weights=weights,
            batch_size=spec.batch_size,
            encode=Encode(codec=spec.encode.codec, crf=spec.encode.crf, preset=spec.encode.preset),
            enhance=enhance,
            origins=_flat_origins(raw, self.segment_origins),
        )


_SEGMENT_INDEX = re.compile(r"^segments\[(\d+)\]")


def _flat_origins(raw: MDict, segment_origins: list[Origin]) -> tuple[tuple[str, Origin], ...]:
    """Every field of a merged job (``audio``, ``segments[1].end``, ...) with where it was written.

    ``segments[i]`` is the job's i-th segment in time order (``segment_origins``: where each was
    written, in a subtitle file for subtitle segments), whatever its position in the manifest.
    """
    found: list[tuple[str, Origin]] = [("", raw.origin)]

    def walk(node: Any, prefix: str, depth: int) -> None:
        if depth > 8:  # deeper than any job key; also ends a recursive YAML alias
            return
        if isinstance(node, MDict):
            for key, value in node.items():
                where = f"{prefix}.{key}" if prefix else str(key)
                found.append((where, node.origin_of(key)))
                walk(value, where, depth + 1)
        elif isinstance(node, MList):
            for index, value in enumerate(node):
                where = f"{prefix}[{index}]"
                found.append((where, node.origin_of(index)))
                walk(value, where, depth + 1)

    walk(raw, "", 0)
    written = raw.get("segments")
    position = {}  # index in the manifest -> index in time order
    if isinstance(written, MList):
        for index, origin in enumerate(written.origins):
            if origin in segment_origins:
                position[index] = segment_origins.index(origin)
    renamed: list[tuple[str, Origin]] = []
    for where, origin in found:
        match = _SEGMENT_INDEX.match(where)
        if match is None:
            renamed.append((where, origin))
        elif int(match.group(1)) in position:
            renamed.append((f"segments[{position[int(match.group(1))]}]{where[match.end() :]}", origin))
    known = {where for where, _ in renamed}
    renamed += [(f"segments[{i}]", o) for i, o in enumerate(segment_origins) if f"segments[{i}]" not in known]
    return tuple(renamed)


class _PartialSegment(SegmentSpec):
    """A segment that may have lost its overrides to pruning."""

    @model_validator(mode="after")
    def _overrides_something(self) -> _PartialSegment:
        return self


class _PartialJob(JobDefaults):
    """A job whose ill-typed keys were removed, so the remaining semantic checks can still run."""

    name: str | None = None
    segments: segments_field(_PartialSegment) = Field(default_factory=list)  # type: ignore[valid-type]


def _paste_options(value: Any) -> PasteBack:
    """``paste_back`` (validated: a bool or a mapping) -> its blend options (a bool: the defaults)."""
    if not isinstance(value, dict):
        return PasteBack()
    fraction, frame_px = parse_feather(value["feather"]) if value.get("feather") is not None else (None, None)
    return PasteBack(
        region=value.get("region", "face"),
        feather=fraction,
        feather_px=frame_px,
        color_match=bool(value.get("color_match", False)),
    )


def _without(mapping: MDict, keys: set[str]) -> MDict:
    out = empty_mdict(mapping.origin)
    for key, value in mapping.items():
        if key not in keys:
            out.set(key, value, mapping.origins[key], mapping.key_origins[key])
    return out


def _prune(merged: MDict, exc: ValidationError) -> MDict:
    """``merged`` without the keys (and segment keys) that failed validation."""
    bad_keys: set[str] = set()
    bad_segment_keys: dict[int, set[str]] = {}
    for error in exc.errors():
        loc = [e for e in error["loc"] if not (isinstance(e, str) and e.startswith("<"))]
        if (
            len(loc) >= 3
            and loc[0] == "segments"
            and isinstance(loc[1], int)
            and loc[2] in ("end", "emotion", "pose")
        ):
            bad_segment_keys.setdefault(loc[1], set()).add(str(loc[2]))
        elif len(loc) >= 2 and loc[0] == "segments" and isinstance(loc[1], int):
            bad_segment_keys.setdefault(loc[1], set()).add("*")
        elif loc:
            bad_keys.add(str(loc[0]))
    out = _without(merged, bad_keys)
    segments = out.get("segments")
    if bad_segment_keys and isinstance(segments, MList):
        kept = MList()
        kept.origin = segments.origin
        for index, (seg, origin) in enumerate(zip(segments, segments.origins, strict=True)):
            drop = bad_segment_keys.get(index, set())
            if "*" in drop:
                continue
            kept.append(_without(seg, drop) if isinstance(seg, MDict) and drop else seg)
            kept.origins.append(origin)
        out.set("segments", kept, out.origins["segments"], out.key_origins["segments"])
    return out


def _apply_preset(
    merged: MDict, base: MDict, job_raw: MDict, registry: dict[str, Preset], loader: _Loader
) -> MDict:
    """Layer a job-level ``preset`` between the defaults and the job: defaults < preset < job."""
    name = merged.get("preset")
    if not isinstance(name, str):
        return merged
    preset = registry.get(name)
    if preset is None:
        guess = did_you_mean(name, registry)
        loader.add(
            merged.origin_of("preset"),
            f"unknown preset {name!r}",
            f"Did you mean '{guess}'?" if guess else "See `edtalk presets list`",
        )
        return merged
    if not preset.ok:
        loader.problems.extend(preset.problems)
        loader.add(merged.origin_of("preset"), f"preset {name!r} is invalid", "Fix the preset file")
        return merged
    return deep_merge(deep_merge(base, _preset_layer(preset, job_raw.origin)), job_raw)


@dataclass(eq=False)
class ManifestDocument:
    """A manifest that is not read from a file: parsed data (with origins) under a stand-in path.

    Relative paths in it resolve against ``path.parent``; ``path.stem`` (without ``<>``) fills
    ``{manifest}`` in output templates. ``problems`` are those found while parsing it.
    """

    path: Path
    data: Any
    problems: list[Problem] = field(default_factory=list)


def _load(
    path: Path | ManifestDocument, presets: dict[str, Preset] | None
) -> tuple[Manifest | None, list[Problem], dict[str, list[Problem]]]:
    """(the manifest with every job that resolved, its problems, job name -> that job's own problems)."""
    loader = _Loader()
    if isinstance(path, ManifestDocument):
        loader.problems.extend(path.problems)
        loader._cache[path.path] = path.data
        path = path.path
    else:
        path = Path(path).resolve()
    if path not in loader._cache and not path.is_file():
        what = "a directory" if path.is_dir() else "not found"
        loader.add(Origin(path, 1, 1, ""), f"manifest {what}: {path}", "Give the path of a .yaml manifest")
        return None, loader.problems, {}
    root = loader.read_manifest(path, (path,))
    if root is None:
        return None, dedupe(loader.problems), {}
    top = loader.read(path)
    jobs_value = top.get("jobs") if isinstance(top, MDict) else None
    if not root.jobs and (jobs_value is None or isinstance(jobs_value, MList)):  # else: wrong type, reported
        where = (
            top.origin_of("jobs") if isinstance(top, MDict) and "jobs" in top else Origin(path, 1, 1, "jobs")
        )
        loader.add(where, "the manifest has no jobs", "Add a 'jobs:' list with at least one job")
    registry = dict(presets) if presets is not None else discover_presets()
    registry.update({p.stem: load_preset(p, "include") for p in loader.preset_files})
    jobs: list[Job] = []
    names: dict[str, Origin] = {}
    job_problems: dict[str, list[Problem]] = {}
    for job_raw, _job_origin, job_file in root.jobs:
        if not isinstance(job_raw, MDict):  # reported by the top-level check
            continue
        base = job_file.defaults if job_file is root else deep_merge(root.defaults, job_file.defaults)
        merged = _apply_preset(deep_merge(base, job_raw), base, job_raw, registry, loader)
        name = merged.get("name")
        if isinstance(name, str):
            if name in names:
                loader.add(
                    merged.origin_of("name"),
                    f"duplicate job name {name!r}",
                    f"Rename it; the name is already used at {names[name].where()}",
                )
            else:
                names[name] = merged.origin_of("name")
        try:
            spec: JobSpec | _PartialJob = JobSpec.model_validate(merged)
        except ValidationError as exc:
            loader.problems.extend(pydantic_problems(exc, merged, JobSpec))
            merged = _prune(merged, exc)  # keep checking what is well-typed
            try:
                spec = _PartialJob.model_validate(merged)
            except ValidationError:
                continue
        resolver = _JobResolver(spec, merged, job_file, registry)
        job = resolver.resolve()
        loader.problems.extend(resolver.problems)
        if job is None:
            loader.problems.extend(resolver.file_problems)
        else:
            jobs.append(job)
            if resolver.file_problems:
                job_problems.setdefault(job.name, []).extend(resolver.file_problems)
    manifest = Manifest(path=path, jobs=tuple(jobs), includes=tuple(loader.includes))
    return manifest, dedupe(loader.problems), {k: dedupe(v) for k, v in job_problems.items()}


def resolve_document(
    document: ManifestDocument, presets: dict[str, Preset] | None = None, *, allow_outside: bool = False
) -> tuple[Manifest | None, list[Problem]]:
    """Load ``document`` without raising: (the manifest, or None when it has any problem; every
    problem, its jobs' missing inputs and its outputs (see :func:`output_problems`) included)."""
    manifest, problems, own = _load(document, presets)
    problems = [*problems, *(p for found in own.values() for p in found)]
    if manifest is not None:
        problems += output_problems([manifest], allow_outside=allow_outside)
    problems = dedupe(problems)
    return (None if problems else manifest), problems


def load_manifest(path: str | Path | ManifestDocument, *, allow_outside: bool = False) -> Manifest:
    """Load, validate and resolve one manifest; raise ManifestError listing every problem."""
    manifest, problems, job_problems = _load(path if isinstance(path, ManifestDocument) else Path(path), None)
    if manifest is not None:
        problems = problems + output_problems([manifest], allow_outside=allow_outside)
    problems = problems + [p for found in job_problems.values() for p in found]
    if problems or manifest is None:
        raise ManifestValidationError(dedupe(problems))
    return manifest


def _expand(
    paths: Iterable[str | Path | ManifestDocument],
) -> tuple[list[Path | ManifestDocument], list[Problem]]:
    files: list[Path | ManifestDocument] = []
    problems: list[Problem] = []
    for item in paths:
        if isinstance(item, ManifestDocument):
            files.append(item)
            continue
        path = Path(item).resolve()
        if path.is_dir():
            found = []
            for candidate in sorted(
                p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
            ):
                data, _ = load_yaml(candidate)
                if isinstance(data, MDict) and "jobs" in data:  # skip include fragments and presets
                    found.append(candidate)
            if not found:
                problems.append(
                    Problem.at(
                        Origin(path, 1, 1, ""),
                        f"no manifests (.yaml with 'jobs:') in {path}",
                        "Check the directory",
                    )
                )
            files.extend(found)
        else:
            files.append(path)
    return files, problems


@dataclass
class ManifestCheck:
    """Everything found in a set of manifests, without raising.

    ``problems`` make the batch unrunnable (a bad manifest); ``job_problems`` (missing or
    unreadable inputs, keyed by (manifest path, job name)) cost only their own job.
    ``manifests`` hold every job that resolved, including those with job problems.
    """

    manifests: list[Manifest]
    problems: list[Problem]
    job_problems: dict[tuple[Path, str], list[Problem]]

    def problems_of(self, job: Job) -> list[Problem]:
        return self.job_problems.get((job.manifest, job.name), [])

    @property
    def all_problems(self) -> list[Problem]:
        return dedupe([*self.problems, *(p for found in self.job_problems.values() for p in found)])


def check_manifests(
    paths_or_dirs: Iterable[str | Path | ManifestDocument], *, allow_outside: bool = False
) -> ManifestCheck:
    """Load several manifests (directories: every .yaml/.yml with a top-level 'jobs') and collect
    every problem: of each file, of each job, and of the outputs together (see :func:`output_problems`).
    """
    files, problems = _expand(paths_or_dirs)
    presets = discover_presets()
    manifests: list[Manifest] = []
    job_problems: dict[tuple[Path, str], list[Problem]] = {}
    for file in dict.fromkeys(files):
        manifest, file_problems, own = _load(file, presets)
        problems.extend(file_problems)
        if manifest is not None:
            manifests.append(manifest)
            for job in manifest.jobs:
                if job.name in own:
                    job_problems[(job.manifest, job.name)] = own[job.name]
    problems.extend(output_problems(manifests, allow_outside=allow_outside))
    return ManifestCheck(manifests, dedupe(problems), job_problems)


def load_manifests(
    paths_or_dirs: Iterable[str | Path | ManifestDocument], *, allow_outside: bool = False
) -> list[Manifest]:
    """Load several manifests (directories: every .yaml/.yml with a top-level 'jobs').

    Items may also be :class:`ManifestDocument` (a manifest read from stdin or given as a dict).
    Problems of all files are collected and raised together (see :func:`check_manifests`).
    """
    check = check_manifests(paths_or_dirs, allow_outside=allow_outside)
    if check.all_problems:
        raise ManifestValidationError(check.all_problems)
    return check.manifests


def _real(path: Path) -> Path:
    """``path`` with symlinks, ``..`` and ``~`` resolved (also when it does not exist yet)."""
    return Path(os.path.realpath(os.path.expanduser(path)))


def _output_origin(job: Job) -> Origin:
    known = dict(job.origins)
    return known.get("output") or known.get("name") or job.origin_of("")


def output_problems(manifests: list[Manifest], *, allow_outside: bool = False) -> list[Problem]:
    """Outputs compared as resolved paths (symlinks, ``..``, ``~``): two jobs writing one file, an
    output that is an input of any job, and (unless ``allow_outside``) an output outside the
    folder of the manifest that defines the job.
    """
    problems: list[Problem] = []
    inputs: dict[Path, tuple[Job, str]] = {}
    for manifest in manifests:
        for job in manifest.jobs:
            for field_name, path, _kind in job.inputs():
                inputs.setdefault(_real(path), (job, field_name))
    seen: dict[Path, tuple[Manifest, Job]] = {}
    for manifest in manifests:
        folders = {_real(manifest.path.parent)}
        for job in manifest.jobs:
            where = _output_origin(job)
            output = _real(job.output)
            if output in seen:
                other_manifest, other = seen[output]
                if other_manifest is manifest:
                    by = f"the job at {_output_origin(other).where()}"
                else:
                    by = f"job {other.name!r} of {other_manifest.path}"
                message = f"output {job.output} is also written by {by}"
                problems.append(
                    Problem.at(where, message, "Give each job its own output (use {name} in the template)")
                )
            seen.setdefault(output, (manifest, job))
            if output in inputs:
                owner, field_name = inputs[output]
                whose = "its own" if owner is job else f"job {owner.name!r}'s"
                problems.append(
                    Problem.at(
                        where,
                        f"output {job.output} would overwrite {whose} input {field_name} ({output})",
                        "Write outputs to their own files, e.g. out/{name}.mp4",
                    )
                )
            allowed = folders | {_real(job.manifest.parent)}
            if not allow_outside and not any(output.is_relative_to(folder) for folder in allowed):
                folder = _real(manifest.path.parent)
                problems.append(
                    Problem.at(
                        where,
                        f"output {job.output} is outside the manifest's folder {folder}",
                        f"Write it below {folder}, or pass --allow-outside to allow outputs elsewhere",
                    )
                )
    return problems
