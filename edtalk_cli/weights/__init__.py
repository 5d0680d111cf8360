"""Checkpoint I/O: official ``.pt`` files, safetensors, the weights directory and Hub downloads,
and the model bundle (which files a model reads, its content identity, the loaded models).

The names below are imported on first use, so the parts without torch (kinds, the weights
directory, presets) load without it.
"""

from __future__ import annotations

from edtalk_cli.lazy import lazy_getattr

_HOMES = {  # name -> submodule that defines it
    "MODEL_CHOICES": "bundle",
    "ModelBundle": "bundle",
    "ModelFiles": "bundle",
    "Checkpoint": "checkpoint",
    "build_model": "checkpoint",
    "check_state_dict": "checkpoint",
    "convert_to_safetensors": "checkpoint",
    "count_parameters": "checkpoint",
    "detect_kind": "checkpoint",
    "infer_config": "checkpoint",
    "load_model": "checkpoint",
    "model_class": "checkpoint",
    "read_checkpoint": "checkpoint",
    "save_safetensors": "checkpoint",
    "sha256_file": "checkpoint",  # defined in edtalk_cli/hashing.py
    "OFFICIAL_FILES": "hub",
    "RemoteFile": "hub",
    "download_official": "hub",
    "hf_cache_dir": "hub",
    "HUB_FILES_URL": "kinds",
    "HUB_REPO_ID": "kinds",
    "KINDS": "kinds",
    "OFFICIAL_EMOTIONS": "kinds",
    "KindSpec": "kinds",
    "kind_spec": "kinds",
    "BUNDLED_PRESETS_DIR": "store",
    "ENV_VAR": "store",
    "WeightsDir": "store",
    "default_weights_dir": "store",
    "load_official_emotions": "store",
    "preset_files": "store",
    "read_preset": "store",
    "resolve_weights_dir": "store",
}


__getattr__ = lazy_getattr(__name__, _HOMES)


__all__ = [
    "BUNDLED_PRESETS_DIR",
    "ENV_VAR",
    "HUB_FILES_URL",
    "HUB_REPO_ID",
    "KINDS",
    "MODEL_CHOICES",
    "OFFICIAL_EMOTIONS",
    "OFFICIAL_FILES",
    "Checkpoint",
    "KindSpec",
    "ModelBundle",
    "ModelFiles",
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
    "preset_files",
    "read_checkpoint",
    "read_preset",
    "resolve_weights_dir",
    "save_safetensors",
    "sha256_file",
]
