"""Checkpoint I/O: official ``.pt`` files, safetensors, the weights directory and Hub downloads."""

from edtalk_cli.weights.checkpoint import (
    Checkpoint,
    build_model,
    check_state_dict,
    convert_to_safetensors,
    count_parameters,
    detect_kind,
    infer_config,
    load_model,
    model_class,
    read_checkpoint,
    save_safetensors,
    sha256_file,
)
from edtalk_cli.weights.hub import OFFICIAL_FILES, RemoteFile, download_official, hf_cache_dir
from edtalk_cli.weights.kinds import (
    HUB_FILES_URL,
    HUB_REPO_ID,
    KINDS,
    OFFICIAL_EMOTIONS,
    KindSpec,
    kind_spec,
)
from edtalk_cli.weights.store import (
    ENV_VAR,
    WeightsDir,
    default_weights_dir,
    load_official_emotions,
    read_preset,
    resolve_weights_dir,
)

__all__ = [
    "ENV_VAR",
    "HUB_FILES_URL",
    "HUB_REPO_ID",
    "KINDS",
    "OFFICIAL_EMOTIONS",
    "OFFICIAL_FILES",
    "Checkpoint",
    "KindSpec",
    "RemoteFile",
    "WeightsDir",
    "build_model",
    "check_state_dict",
    "convert_to_safetensors",
    "count_parameters",
    "default_weights_dir",
    "detect_kind",
    "download_official",
    "hf_cache_dir",
    "infer_config",
    "kind_spec",
    "load_model",
    "load_official_emotions",
    "model_class",
    "read_checkpoint",
    "read_preset",
    "resolve_weights_dir",
    "save_safetensors",
    "sha256_file",
]
