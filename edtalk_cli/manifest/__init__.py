"""Batch manifests (YAML, version 1): loading, validation, presets and the resolved Job model.

See docs/manifest.md for the format. Typical use::

    from edtalk_cli.manifest import load_manifest

    manifest = load_manifest("examples/demo.yaml")  # raises ManifestError listing every problem
    for job in manifest.jobs:
        ...  # job.source.path, job.audio, job.emotion, job.segments, job.output, job.fps, ...
"""

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
