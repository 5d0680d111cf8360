"""Face-restoration weights (GFPGAN): where they are, how they are read, and the spandrel import.

The architecture comes from the ``spandrel`` package; the weights are read with
``torch.load(weights_only=True)`` or safetensors only. The official ``GFPGANv1.4.pth`` holds its
state dict under ``params_ema``; ``params`` and a bare state dict are accepted too.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edtalk_cli.errors import WeightsError

ENHANCER_MODELS = ("gfpgan",)
GFPGAN_STEM = "GFPGANv1.4"  # default file name in the weights directory (.safetensors or .pth)
GFPGAN_URL = "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth"
GFPGAN_SIZE = 512  # GFPGANv1.4 restores 512x512 faces
_STATE_DICT_ENTRIES = ("params_ema", "params")
# keys every GFPGAN (v1 clean) state dict has; spandrel detects the architecture by the same pair
_GFPGAN_KEYS = ("toRGB.0.weight", "stylegan_decoder.style_mlp.1.weight")
SPANDREL_INSTALL = 'pip install --no-deps "spandrel>=0.4" einops'


def enhancer_candidates(weights_dir: str | Path) -> list[Path]:
    """Files that can hold the default GFPGAN weights in ``weights_dir``, in order of preference."""
    root = Path(weights_dir).expanduser()
    return [root / f"{GFPGAN_STEM}.safetensors", root / f"{GFPGAN_STEM}.pth"]


def resolve_enhancer_weights(explicit: Path | None, weights_dir: str | Path) -> Path:
    """The GFPGAN weights file: ``explicit`` (the manifest's ``enhance.weights``) when given,
    else ``GFPGANv1.4.safetensors`` / ``GFPGANv1.4.pth`` in ``weights_dir``; a WeightsError
    naming what was looked for otherwise.
    """
    if explicit is not None:
        if not Path(explicit).is_file():
            raise WeightsError(
                f"enhance.weights: GFPGAN weights file {explicit} does not exist",
                hint=f"fix the path in the manifest, or download GFPGANv1.4.pth from {GFPGAN_URL}",
            )
        return Path(explicit)
    candidates = enhancer_candidates(weights_dir)
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise WeightsError(
            f"face enhancement needs GFPGAN weights: neither {candidates[0].name} nor {candidates[1].name} "
            f"is in {Path(weights_dir).expanduser()}",
            hint=(
                f"download GFPGANv1.4.pth from {GFPGAN_URL} into that directory, or set "
                "enhance.weights in the manifest to the file's path"
            ),
        )
    return found


@contextlib.contextmanager
def _torchvision_placeholder() -> Iterator[None]:
    """Let ``import spandrel`` succeed without a working torchvision.

    spandrel imports torchvision at package import, only for its RestoreFormer and LaMa
    architectures (which edtalk never loads), and PyPI's torchvision cannot be imported beside
    the CPU torch wheel edtalk is installed with. When ``import torchvision`` fails, placeholder
    modules ``torchvision``, ``torchvision.transforms`` and ``torchvision.transforms.functional``
    are registered for the duration of the import; their ``normalize``, ``rotate`` and
    ``InterpolationMode`` raise a RuntimeError if ever used. A real torchvision is used as is.
    """
    try:
        importlib.import_module("torchvision")
    except Exception:  # ImportError, or an operator-registration error beside a mismatched torch
        pass
    else:
        yield
        return

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(
            "torchvision is not importable here; edtalk only uses spandrel's GFPGAN, which does not need it"
        )

    class InterpolationMode:  # a placeholder: constructing it raises
        def __init__(self, *_args: Any, **_kwargs: Any) -> None:
            unavailable()

    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    saved = {name: sys.modules.get(name) for name in names}
    modules = {name: types.ModuleType(name) for name in names}
    functional = modules["torchvision.transforms.functional"]
    functional.normalize = unavailable  # type: ignore[attr-defined]
    functional.rotate = unavailable  # type: ignore[attr-defined]
    functional.InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
    modules["torchvision"].transforms = modules["torchvision.transforms"]  # type: ignore[attr-defined]
    modules["torchvision.transforms"].functional = functional  # type: ignore[attr-defined]
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def import_spandrel() -> types.ModuleType:
    """``import spandrel`` (see :func:`_torchvision_placeholder`); a WeightsError naming the fix when
    it is not installed.
    """
    try:
        with _torchvision_placeholder():
            return importlib.import_module("spandrel")
    except ImportError as exc:
        raise WeightsError(
            f"face enhancement needs the spandrel package ({exc})",
            hint=f"{SPANDREL_INSTALL} (--no-deps: its torchvision requirement would replace the CPU torch)",
        ) from None


def _pick_gfpgan_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The GFPGAN state dict of a loaded file: ``params_ema``, ``params`` or the file itself."""
    from edtalk_cli.weights.checkpoint import _is_tensor_dict

    candidates: list[Mapping[str, Any]] = []
    if _is_tensor_dict(obj):
        candidates.append(obj)
    if isinstance(obj, Mapping):
        candidates += [obj[k] for k in _STATE_DICT_ENTRIES if _is_tensor_dict(obj.get(k))]
    for sd in candidates:
        if all(key in sd for key in _GFPGAN_KEYS):
            return dict(sd)
    top = ", ".join(repr(k) for k in list(obj)[:8]) if isinstance(obj, Mapping) else type(obj).__name__
    raise WeightsError(
        f"weights file {path} is not a GFPGAN state dict: it has none of the GFPGAN keys "
        f"({', '.join(_GFPGAN_KEYS)}) at the top level or under 'params_ema' / 'params' "
        f"(top-level entries: {top or 'none'})",
        hint=f"enhance.weights must be GFPGANv1.4.pth ({GFPGAN_URL}) or a safetensors copy of it",
    )


def read_enhancer_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The GFPGAN state dict of ``path`` (.pth/.pt via weights-only torch.load, or .safetensors)."""
    from edtalk_cli.weights.checkpoint import _read_safetensors, _torch_load

    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"GFPGAN weights file {path} does not exist", hint=f"download GFPGANv1.4.pth from {GFPGAN_URL}"
        )
    if path.suffix.lower() == ".safetensors":
        obj: Any = _read_safetensors(path)[0]
    else:
        obj = _torch_load(path)
    return _pick_gfpgan_state_dict(obj, path)


def load_enhancer(path: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """The GFPGAN network of ``path`` (spandrel's GFPGANv1Clean, float32, eval mode, on ``device``).

    Its forward takes (B, 3, 512, 512) RGB in [-1, 1] and returns ``(image, rgbs)``.
    """
    path = Path(path).expanduser()
    state_dict = read_enhancer_state_dict(path)
    spandrel = import_spandrel()
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except Exception as exc:  # unsupported layout, missing keys, shape mismatches
        raise WeightsError(
            f"weights file {path} could not be loaded as GFPGAN ({str(exc).strip().splitlines()[0][:200]})",
            hint=f"enhance.weights must be GFPGANv1.4.pth ({GFPGAN_URL}) or a safetensors copy of it",
        ) from None
    if descriptor.architecture.id != "GFPGAN":
        raise WeightsError(
            f"weights file {path} holds a {descriptor.architecture.id} model, not GFPGAN",
            hint=f"use GFPGANv1.4.pth ({GFPGAN_URL})",
        )
    model = descriptor.model.to(device=device, dtype=torch.float32)
    model.eval()
    return model
