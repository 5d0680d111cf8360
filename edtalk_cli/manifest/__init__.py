"""Batch manifests (YAML, version 1): loading, validation, presets and the resolved Job model.

See docs/manifest.md for the format. Typical use::

    from edtalk_cli.manifest import load_manifest

    manifest = load_manifest("examples/demo.yaml")  # raises ManifestError listing every problem
    for job in manifest.jobs:
        ...  # job.source.path, job.audio, job.emotion, job.segments, job.output, job.fps, ...

The names below are imported on first use, so ``import edtalk_cli.manifest.probe`` (and the
commands that only need its limits) does not load pydantic, YAML or the video layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edtalk_cli.manifest.loader import (
        ManifestCheck,
        ManifestDocument,
        check_manifests,
        load_manifest,
        load_manifests,
        manifest_json_schema,
    )
    from edtalk_cli.manifest.media import check_media
    from edtalk_cli.manifest.model import EmotionSpec, Job, Manifest, Mouth, PoseSpec, Segment, Source
    from edtalk_cli.manifest.presets import (
        Preset,
        bundled_presets_dir,
        discover_presets,
        load_preset,
        user_presets_dir,
    )
    from edtalk_cli.manifest.problems import ManifestValidationError, Problem
    from edtalk_cli.manifest.sources import (
        InvalidJob,
        JsonlJobs,
        document_from_data,
        document_from_text,
        load_jobs_jsonl,
    )
    from edtalk_cli.manifest.spec import MODEL_EMOTIONS
    from edtalk_cli.manifest.timecode import parse_duration, parse_time

from edtalk_cli.lazy import lazy_getattr

_HOMES = {  # name -> submodule that defines it
    "ManifestCheck": "loader",
    "ManifestDocument": "loader",
    "check_manifests": "loader",
    "load_manifest": "loader",
    "load_manifests": "loader",
    "manifest_json_schema": "loader",
    "check_media": "media",
    "EmotionSpec": "model",
    "Job": "model",
    "Manifest": "model",
    "Mouth": "model",
    "PoseSpec": "model",
    "Segment": "model",
    "Source": "model",
    "Preset": "presets",
    "bundled_presets_dir": "presets",
    "discover_presets": "presets",
    "load_preset": "presets",
    "user_presets_dir": "presets",
    "ManifestValidationError": "problems",
    "Problem": "problems",
    "InvalidJob": "sources",
    "JsonlJobs": "sources",
    "document_from_data": "sources",
    "document_from_text": "sources",
    "load_jobs_jsonl": "sources",
    "MODEL_EMOTIONS": "spec",
    "parse_duration": "timecode",
    "parse_time": "timecode",
}


__getattr__ = lazy_getattr(__name__, _HOMES)


__all__ = [
    "MODEL_EMOTIONS",
    "EmotionSpec",
    "InvalidJob",
    "Job",
    "JsonlJobs",
    "Manifest",
    "ManifestCheck",
    "ManifestDocument",
    "ManifestValidationError",
    "Mouth",
    "PoseSpec",
    "Preset",
    "Problem",
    "Segment",
    "Source",
    "bundled_presets_dir",
    "check_manifests",
    "check_media",
    "discover_presets",
    "document_from_data",
    "document_from_text",
    "load_jobs_jsonl",
    "load_manifest",
    "load_manifests",
    "load_preset",
    "manifest_json_schema",
    "parse_duration",
    "parse_time",
    "user_presets_dir",
]
