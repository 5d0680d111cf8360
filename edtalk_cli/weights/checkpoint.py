"""Reading, recognising, converting and loading EDTalk checkpoints.

Official ``.pt`` files are pickles; they are read with ``torch.load(weights_only=True)`` only
(``argparse.Namespace`` allow-listed for the trainers' ``args`` entry), never with
``weights_only=False``. Converted files are ``.safetensors`` plus a sidecar ``<stem>.json``.
Which model a file holds is recognised from its keys, and its :class:`ModelConfig` from its
tensor shapes, so renamed files and small models in the official layout load too.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from edtalk_cli.atomic import atomic_write
from edtalk_cli.errors import WeightsError
from edtalk_cli.hashing import sha256_file
from edtalk_cli.model.config import ModelConfig
from edtalk_cli.weights.kinds import HUB_FILES_URL, KINDS, kind_spec

StateDict = dict[str, torch.Tensor]

SAFETENSORS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
_MAX_LISTED = 10  # keys listed per category in a mismatch message
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE_PROTO = b"\x80"  # legacy torch.save format starts with a pickle protocol opcode
# top-level entries that may hold the state dict, in order of preference
_STATE_DICT_ENTRIES = ("gen", "audio2lip", "state_dict", "model")


class Checkpoint(NamedTuple):
    """What :func:`read_checkpoint` returns: unpacks as ``kind, state_dict, config``."""

    kind: str
    state_dict: StateDict
    config: ModelConfig


# ----------------------------------------------------------------------------- errors


def _redownload_hint() -> str:
    return (
        "delete it and get it again with `edtalk weights download` "
        f"(or copy it again by hand from {HUB_FILES_URL})"
    )


def _first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of an exception text, for a short reason in parentheses."""
    line = (text.strip().splitlines() or [""])[0]
    return line.split(". ")[0].rstrip(".")[:limit]


def _corrupt(path: Path, detail: str) -> WeightsError:
    return WeightsError(
        f"weights file {path} is corrupt or not a checkpoint ({_first_sentence(detail)})",
        hint=f"the file is probably truncated or damaged (an interrupted download?): {_redownload_hint()}",
    )


def _missing_file(path: Path) -> WeightsError:
    return WeightsError(
        f"weights file {path} does not exist",
        hint=(
            "check the path; the official files are installed with `edtalk weights download` "
            f"or placed by hand (from {HUB_FILES_URL}) in the weights directory "
            "(`edtalk weights path` prints it)"
        ),
    )


def _unsafe_pickle(path: Path, detail: str) -> WeightsError:
    found = re.search(r"GLOBAL\s+([\w.]+)", detail)
    what = f" (it needs `{found.group(1)}`)" if found else ""
    return WeightsError(
        f"weights file {path} contains arbitrary pickled Python objects{what}; edtalk refuses to "
        "unpickle them because that can run code stored in the file",
        hint=(
            "only if you trust its source: in a separate Python session load it once with "
            "torch.load(path, weights_only=False), save just the tensors, e.g. "
            "torch.save({'gen': ckpt['gen']}, 'clean.pt') ('audio2lip' for Audio2Lip.pt), then run "
            "`edtalk weights convert clean.pt` to get a safetensors copy; otherwise download the "
            f"official file again from {HUB_FILES_URL}"
        ),
    )


# ----------------------------------------------------------------------------- recognition


def detect_kind(keys: Any) -> str | None:
    """The model kind of a state dict from its key set, or None when it is no EDTalk model."""
    keys = set(keys)

    def has_prefix(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if "direction_exp.weight" in keys or has_prefix("exp_fc.") or has_prefix("dec.fineadainresblock."):
        return "edtalk"
    if "direction_lipnonlip.weight" in keys or (has_prefix("enc.net_app.") and has_prefix("lip_fc.")):
        return "edtalk_lip_pose"
    if "mapping.weight" in keys and has_prefix("audio_encoder."):
        return "audio2lip"
    return None


def _shape(sd: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...] | None:
    t = sd.get(key)
    return tuple(t.shape) if isinstance(t, torch.Tensor) else None


def _dim(sd: Mapping[str, torch.Tensor], key: str, axis: int) -> int | None:
    shape = _shape(sd, key)
    return shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None


def _indices(sd: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def _last_layer_out(sd: Mapping[str, torch.Tensor], prefix: str) -> int | None:
    """Output width of the last ``prefix.<i>.weight`` layer of an MLP head."""
    idx = _indices(sd, re.escape(prefix) + r"\.(\d+)\.weight$")
    return _dim(sd, f"{prefix}.{idx[-1]}.weight", 0) if idx else None


def _solve_channels(enc: dict[int, int], dec: dict[int, int], default: ModelConfig) -> tuple[int, int]:
    """(channel_base, channel_max) that reproduce the observed widths ``min(channel_max, base // r)``.

    ``enc``/``dec`` map a resolution to the encoder/decoder width there. The channel
    multiplier is always 1 (the decoder mixes in encoder features of the same width).
    """
    widths = {**dec, **enc}
    if not widths:
        return default.channel_base, default.channel_max
    cmax = max(widths.values())
    lo, hi = 1, math.inf
    for r, c in widths.items():
        if c < cmax:  # not saturated: channel_base // r == c
            lo, hi = max(lo, c * r), min(hi, c * r + r - 1)
        else:  # saturated: channel_base // r >= cmax
            lo = max(lo, cmax * r)
    # every width saturated: any large enough base gives the same model, prefer the default
    base = max(default.channel_base, lo) if hi == math.inf else lo
    return base, cmax


def _infer_generator_fields(sd: Mapping[str, torch.Tensor], kind: str, d: ModelConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    convs = _indices(sd, r"enc\.net_app\.convs\.(\d+)\.")
    size = 2 ** len(convs) if convs else d.size  # convs: 1x1 stem, log2(size)-2 ResBlocks, 4x4 conv
    out["size"] = size
    enc: dict[int, int] = {}
    if (c := _dim(sd, "enc.net_app.convs.0.0.weight", 0)) is not None:
        enc[size] = c
    for i in convs[1:-1]:
        if (c := _dim(sd, f"enc.net_app.convs.{i}.conv2.1.weight", 0)) is not None:
            enc[size >> i] = c
    dec: dict[int, int] = {}
    if (c := _dim(sd, "dec.conv1.conv.weight", 1)) is not None:
        dec[4] = c
    for j in _indices(sd, r"dec\.convs\.(\d+)\.conv\.weight$"):
        if j % 2 == 0 and (c := _dim(sd, f"dec.convs.{j}.conv.weight", 1)) is not None:
            dec[8 << (j // 2)] = c
    out["channel_base"], out["channel_max"] = _solve_channels(enc, dec, d)

    style = _dim(sd, "fc.0.weight", 0) or _dim(sd, "direction_lipnonlip.weight", 0)
    out["style_dim"] = style or d.style_dim
    lip = _last_layer_out(sd, "lip_fc")
    pose = _last_layer_out(sd, "pose_fc")
    banks = _dim(sd, "direction_lipnonlip.weight", 1)
    if lip is None and banks is not None and pose is not None:
        lip = banks - pose
    if pose is None and banks is not None and lip is not None:
        pose = banks - lip
    out["lip_dim"] = lip or d.lip_dim
    out["pose_dim"] = pose or d.pose_dim
    if kind == "edtalk":
        out["exp_dim"] = _last_layer_out(sd, "exp_fc") or _dim(sd, "direction_exp.weight", 1) or d.exp_dim
        eem = "dec.fineadainresblock.0.norm{}.mlp_shared.0.weight"
        out["eem_hidden"] = _dim(sd, eem.format(2), 0) or _dim(sd, eem.format(1), 0) or d.eem_hidden
    else:  # no expression bank in the file: keep the default unless it cannot fit
        room = out["style_dim"] - out["lip_dim"] - out["pose_dim"]
        out["exp_dim"] = d.exp_dim if room >= d.exp_dim else max(1, room)
    return out


def _infer_audio2lip_fields(sd: Mapping[str, torch.Tensor], d: ModelConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # stage widths are the outputs of blocks 0, 3, 6, 9 and 11 (block 12 keeps the last width)
    widths = [_dim(sd, f"audio_encoder.{i}.conv_block.0.weight", 0) for i in (0, 3, 6, 9, 11)]
    defaults = d.audio_widths
    out["audio_widths"] = tuple(w if w is not None else dw for w, dw in zip(widths, defaults, strict=True))
    out["lip_dim"] = _dim(sd, "mapping.weight", 0) or d.lip_dim
    return out


def infer_config(
    kind: str, state_dict: Mapping[str, torch.Tensor], *, name: str = "checkpoint"
) -> ModelConfig:
    """The ModelConfig whose model has the tensor shapes of ``state_dict`` (defaults where unknown)."""
    kind_spec(kind)
    default = ModelConfig()
    if kind == "audio2lip":
        fields = _infer_audio2lip_fields(state_dict, default)
    else:
        fields = _infer_generator_fields(state_dict, kind, default)
    try:
        return ModelConfig.from_dict({**default.to_dict(), **fields})
    except ValueError as exc:
        raise WeightsError(
            f"cannot work out the model configuration of {name} from its tensor shapes: {exc}",
            hint="the file does not have the EDTalk layout; re-download the official file or re-export it",
        ) from None


# ----------------------------------------------------------------------------- reading


def _torch_load(path: Path, *, shapes_only: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True`` and clean errors; never unpickles arbitrary objects.

    ``shapes_only``: the tensors of a zip-format file are memory-mapped, so their data is not read.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}") from None
    if not head:
        raise _corrupt(path, "the file is empty")
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTO)):
        raise _corrupt(path, "it does not start like a PyTorch .pt file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            mmap = shapes_only and head.startswith(_ZIP_MAGIC)  # the legacy format cannot be mapped
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        detail = f"{exc} {exc.__context__ or ''}"
        if "unsupported global" in detail.lower():  # an object outside the weights-only allow-list
            raise _unsafe_pickle(path, detail) from None
        raise _corrupt(path, str(exc.__context__ or exc)) from None
    except Exception as exc:  # truncated zip, bad records, EOF: torch raises assorted types
        raise _corrupt(path, str(exc).strip() or type(exc).__name__) from None


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _strip_module_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that (Distributed)DataParallel adds to every key."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _pick_state_dict(obj: Any, path: Path) -> tuple[str, StateDict]:
    """(kind, state dict) from a loaded .pt object, recognising the model by its keys."""
    candidates: list[dict[str, torch.Tensor]] = []
    if _is_tensor_dict(obj):
        candidates.append(dict(obj))
    elif isinstance(obj, Mapping):
        candidates += [dict(obj[k]) for k in _STATE_DICT_ENTRIES if _is_tensor_dict(obj.get(k))]
    else:
        raise WeightsError(
            f"weights file {path} holds a {type(obj).__name__}, not a dict of tensors",
            hint="an EDTalk checkpoint is a dict with a 'gen' or 'audio2lip' state dict",
        )
    for sd in candidates:
        sd = _strip_module_prefix(sd)
        kind = detect_kind(sd)
        if kind is not None:
            return kind, sd
    top = ", ".join(repr(k) for k in list(obj)[:8]) if isinstance(obj, Mapping) else ""
    raise WeightsError(
        f"weights file {path} is not an EDTalk checkpoint: none of its state dicts has the keys of "
        f"EDTalk.pt, EDTalk_lip_pose.pt or Audio2Lip.pt (top-level entries: {top or 'none'})",
        hint=f"use the official files from {HUB_FILES_URL} or a file written by `edtalk weights convert`",
    )


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar JSON ``<stem>.json`` of a safetensors file, or None when absent."""
    sidecar = path.with_suffix(SIDECAR_SUFFIX)
    if not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(
            f"metadata file {sidecar} is not valid JSON ({exc})",
            hint=f"delete {sidecar.name} (the model is then recognised from its tensors) or convert again",
        ) from None
    if not isinstance(data, dict):
        raise WeightsError(f"metadata file {sidecar} must hold a JSON object, got {type(data).__name__}")
    return data


def _read_safetensors(path: Path, *, shapes_only: bool = False) -> tuple[StateDict, dict[str, str]]:
    """(state dict, header metadata); ``shapes_only``: tensors on the meta device (no data read)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            header = dict(fh.metadata() or {})
            if shapes_only:
                shapes = {k: fh.get_slice(k).get_shape() for k in fh.keys()}  # noqa: SIM118 (not iterable)
                return {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}, header
        return load_file(str(path), device="cpu"), header
    except SafetensorError as exc:
        raise _corrupt(path, str(exc)) from None
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}") from None


def _config_from_json(data: Any, source: Path) -> ModelConfig:
    if not isinstance(data, dict):
        raise WeightsError(f"'config' in {source} must be a JSON object")
    try:
        return ModelConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise WeightsError(
            f"'config' in {source} is not a valid model configuration: {exc}",
            hint=f"fix or delete {source.name}; without it the configuration is read from the tensor shapes",
        ) from None


def read_checkpoint(path: str | Path, *, verify: bool = False, shapes_only: bool = False) -> Checkpoint:
    """Read a ``.pt`` or ``.safetensors`` checkpoint: ``(kind, state_dict, config)``.

    The kind comes from the keys; the config from the sidecar JSON (safetensors) when present,
    else from the safetensors header, else from the tensor shapes. With ``verify``, the
    SHA-256 recorded in the sidecar is checked. ``shapes_only``: the state dict's tensors hold no
    data that was read (memory-mapped or on the meta device), for the kind and config alone.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise _missing_file(path)
    if path.is_dir():
        raise WeightsError(f"{path} is a directory, not a weights file", hint="pass the file itself")
    if path.suffix.lower() != SAFETENSORS_SUFFIX:
        kind, sd = _pick_state_dict(_torch_load(path, shapes_only=shapes_only), path)
        return Checkpoint(kind, sd, infer_config(kind, sd, name=path.name))

    sd, header = _read_safetensors(path, shapes_only=shapes_only)
    sd = _strip_module_prefix(sd)
    kind = detect_kind(sd)
    if kind is None:
        raise WeightsError(
            f"weights file {path} is not an EDTalk checkpoint: its keys match none of "
            "EDTalk.pt, EDTalk_lip_pose.pt or Audio2Lip.pt",
            hint="convert an official .pt file with `edtalk weights convert`",
        )
    sidecar = read_sidecar(path)
    config: ModelConfig | None = None
    if sidecar is not None:
        json_path = path.with_suffix(SIDECAR_SUFFIX)
        declared = sidecar.get("kind")
        if declared is not None and declared != kind:
            raise WeightsError(
                f"{json_path.name} says {path.name} holds {_label(declared)}, but its tensors are "
                f"{KINDS[kind].label}",
                hint=f"delete {json_path.name} or convert the file again",
            )
        if "config" in sidecar:
            config = _config_from_json(sidecar["config"], json_path)
        if verify and sidecar.get("sha256") and sha256_file(path) != sidecar["sha256"]:
            raise _corrupt(path, f"its SHA-256 differs from the one recorded in {json_path.name}")
    if config is None and "edtalk_config" in header:
        with contextlib.suppress(json.JSONDecodeError, TypeError, ValueError, WeightsError):
            config = _config_from_json(json.loads(header["edtalk_config"]), path)
    if config is None:
        config = infer_config(kind, sd, name=path.name)
    return Checkpoint(kind, sd, config)


def _label(kind: Any) -> str:
    return KINDS[kind].label if kind in KINDS else f"an unknown model kind {kind!r}"


# ----------------------------------------------------------------------------- models


def model_class(kind: str) -> type[nn.Module]:
    """The ``edtalk_cli.model`` class for a kind (``Cls(config)`` builds it)."""
    from edtalk_cli import model as model_pkg

    return getattr(model_pkg, kind_spec(kind).class_name)


def build_model(kind: str, config: ModelConfig, *, device: str | torch.device | None = None) -> nn.Module:
    """Instantiate the model for ``kind`` (on ``device``, e.g. ``"meta"`` for shapes only)."""
    cls = model_class(kind)
    if device is None:
        return cls(config)
    with torch.device(device):
        return cls(config)


def count_parameters(kind: str, config: ModelConfig) -> int:
    """Number of learnable parameters (buffers excluded) of the model."""
    try:
        model = build_model(kind, config, device="meta")
    except Exception:  # a model that cannot be built on the meta device: build it for real
        model = build_model(kind, config)
    return sum(p.numel() for p in model.parameters())


def _fmt_shape(shape: tuple[int, ...] | torch.Size) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def check_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, name: str, kind: str
) -> None:
    """Raise a WeightsError listing missing/unexpected keys and shape mismatches, if any."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: file {_fmt_shape(state_dict[k].shape)} vs model {_fmt_shape(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [
        f"{name} does not fit {KINDS[kind].label}: {len(missing)} missing key(s), "
        f"{len(unexpected)} unexpected key(s), {len(mismatched)} shape mismatch(es)"
    ]
    if missing:
        lines.append(f"  missing ({len(missing)}): {_listing(missing)}")
    if unexpected:
        lines.append(f"  unexpected ({len(unexpected)}): {_listing(unexpected)}")
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}): {_listing(mismatched)}")
    raise WeightsError(
        "\n".join(lines),
        hint=(
            "the file is damaged or comes from a different model version: "
            f"{_redownload_hint()}, or re-export your trained model in the official layout"
        ),
    )


def _wrong_model(path: Path, found: str, wanted: str) -> WeightsError:
    return WeightsError(
        f"{path.name} holds {KINDS[found].label}, but {KINDS[wanted].label} is expected here",
        hint=f"pass the {KINDS[wanted].filename} file (or its .safetensors conversion) instead of {path}",
    )


def load_model(
    path_or_dir: str | Path,
    kind: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[nn.Module, ModelConfig]:
    """Build the right model for a checkpoint, load it strictly and put it in eval mode.

    ``path_or_dir`` is a weights file, or a weights directory (then ``kind`` picks the file,
    ``X.safetensors`` before ``X.pt``). With ``kind``, a file of another model is refused.
    """
    from edtalk_cli.weights.store import WeightsDir

    if kind is not None:
        kind_spec(kind)
    path = Path(path_or_dir).expanduser()
    if path.is_dir():
        if kind is None:
            raise WeightsError(
                f"{path} is a weights directory; say which model to load from it",
                hint=f"pass kind= one of {', '.join(KINDS)}, or the path of the file itself",
            )
        path = WeightsDir(path).require(kind)
    found, sd, config = read_checkpoint(path)
    if kind is not None and found != kind:
        raise _wrong_model(path, found, kind)
    model = build_model(found, config)
    check_state_dict(model, sd, name=path.name, kind=found)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        raise WeightsError(f"{path.name} could not be loaded into {KINDS[found].label}: {exc}") from None
    model.to(device=device, dtype=dtype)
    model.eval()
    return model, config


# ----------------------------------------------------------------------------- conversion


def _plain_tensors(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Contiguous tensors that own their memory (safetensors refuses shared or strided storage)."""
    out: StateDict = {}
    seen: set[int] = set()
    for key, value in sd.items():
        t = value.detach().to("cpu")
        storage = t.untyped_storage()
        shared = storage.data_ptr() in seen and t.numel() > 0
        if shared or not t.is_contiguous() or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone(memory_format=torch.contiguous_format)
        seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor],
    dst: str | Path,
    *,
    kind: str,
    config: ModelConfig,
    source: str | None = None,
) -> Path:
    """Write ``dst`` (.safetensors) and its sidecar JSON atomically; returns ``dst``."""
    from safetensors.torch import save

    kind_spec(kind)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": "pt", "edtalk_kind": kind, "edtalk_config": json.dumps(config.to_dict())}
    data = save(_plain_tensors(state_dict), metadata=header)  # the file's bytes
    with atomic_write(dst, "wb") as fh:
        fh.write(data)
    meta = {
        "kind": kind,
        "config": config.to_dict(),
        "source": source if source is not None else dst.name,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    del data
    with atomic_write(dst.with_suffix(SIDECAR_SUFFIX)) as fh:
        fh.write(json.dumps(meta, indent=2) + "\n")
    return dst


def convert_to_safetensors(src: str | Path, dst_dir: str | Path | None = None) -> Path:
    """Convert a checkpoint to ``<dst_dir>/<stem>.safetensors`` + ``<stem>.json``; returns the former.

    ``dst_dir`` defaults to the source's directory. Buffers are kept, so strict loading works.
    """
    src = Path(src).expanduser()
    kind, sd, config = read_checkpoint(src)
    out_dir = Path(dst_dir).expanduser() if dst_dir is not None else src.parent
    if out_dir.exists() and not out_dir.is_dir():
        raise WeightsError(f"output directory {out_dir} is a file", hint="pass a directory to --out")
    dst = out_dir / f"{src.stem}{SAFETENSORS_SUFFIX}"
    if dst.exists() and dst.resolve() == src.resolve():
        raise WeightsError(
            f"{src} is already a safetensors file", hint="pass --out DIR to write a copy elsewhere"
        )
    return save_safetensors(sd, dst, kind=kind, config=config, source=src.name)
