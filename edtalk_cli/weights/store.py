"""The weights directory: where it is, which official files it holds, and the emotion presets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from edtalk_cli.errors import WeightsError
from edtalk_cli.weights.kinds import HUB_FILES_URL, KINDS, PRESETS_DIRNAME, kind_spec

if TYPE_CHECKING:  # numpy loads with the first preset read, not with `edtalk --help`
    import numpy as np

ENV_VAR = "EDTALK_WEIGHTS"
PRESET_SHAPE = (1, 10)  # each official predefined_exp_weights/*.npy
# the official presets shipped in the package (Apache-2.0, origin in data/official/README.md)
BUNDLED_PRESETS_DIR = Path(__file__).resolve().parents[1] / "data" / "official" / PRESETS_DIRNAME


def default_weights_dir() -> Path:
    """The per-user cache location: ``<user cache dir>/edtalk/weights`` (honours XDG_CACHE_HOME)."""
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # pragma: no cover - platformdirs is a dependency of our dependencies
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "edtalk" / "weights"
    return Path(user_cache_dir("edtalk", appauthor=False)) / "weights"


def resolve_weights_dir(cli_value: str | Path | None = None) -> Path:
    """``--weights DIR`` if given, else ``$EDTALK_WEIGHTS``, else :func:`default_weights_dir`."""
    if cli_value is not None and str(cli_value).strip():
        return Path(cli_value).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return default_weights_dir()


def lookup_order_text() -> str:
    """One line saying where weights are looked for (for messages)."""
    return f"--weights DIR, then ${ENV_VAR}, then {default_weights_dir()}"


class WeightsDir:
    """A weights directory laid out like the official ``ckpts/`` folder.

    For each model ``X.safetensors`` (converted) is preferred over ``X.pt`` (official).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"WeightsDir({str(self.root)!r})"

    def candidates(self, kind: str) -> list[Path]:
        """Files that can hold ``kind``, in order of preference."""
        stem = kind_spec(kind).stem
        return [self.root / f"{stem}.safetensors", self.root / f"{stem}.pt"]

    def path_for(self, kind: str) -> Path | None:
        """The file to load for ``kind``, or None when neither form is present."""
        return next((p for p in self.candidates(kind) if p.is_file()), None)

    def require(self, kind: str) -> Path:
        """The file for ``kind``; a WeightsError saying how to install it when it is missing."""
        path = self.path_for(kind)
        if path is not None:
            return path
        spec = kind_spec(kind)
        raise WeightsError(
            f"the weights of {spec.label} are missing: neither {spec.stem}.safetensors nor "
            f"{spec.filename} is in {self.root}",
            hint=(
                f"run `edtalk weights download --weights {self.root}`, or download {spec.filename} by hand "
                f"from {HUB_FILES_URL} and put it in {self.root}. Weights are looked for in "
                f"{lookup_order_text()}"
            ),
        )

    def available(self) -> dict[str, Path]:
        """Kind -> file for every official model present."""
        return {kind: p for kind in KINDS if (p := self.path_for(kind)) is not None}

    def missing(self) -> list[str]:
        """Kinds with no file in the directory."""
        return [kind for kind in KINDS if self.path_for(kind) is None]

    @property
    def presets_dir(self) -> Path:
        """``<root>/predefined_exp_weights``."""
        return self.root / PRESETS_DIRNAME

    def emotions(self) -> dict[str, np.ndarray]:
        """The official emotion presets (see :func:`load_official_emotions`)."""
        return load_official_emotions(self.root)


def read_preset(path: str | Path) -> np.ndarray:
    """One ``(1, 10)`` expression-weight ``.npy`` file as a float32 ``(10,)`` vector."""
    import numpy as np

    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise WeightsError(
            f"emotion preset {path} is corrupt or not a .npy array ({exc})",
            hint=f"delete it and run `edtalk weights download`, or copy it again from {HUB_FILES_URL}",
        ) from None
    if not isinstance(arr, np.ndarray) or arr.shape not in (PRESET_SHAPE, PRESET_SHAPE[1:]):
        shape = getattr(arr, "shape", None)
        raise WeightsError(
            f"emotion preset {path} has shape {shape}, expected {PRESET_SHAPE} (10 expression weights)",
            hint="the official presets are ckpts/predefined_exp_weights/*.npy; remove or replace this file",
        )
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise WeightsError(f"emotion preset {path} holds non-numeric or non-finite values")
    return arr.reshape(PRESET_SHAPE[1]).astype(np.float32)


def preset_files(folder: str | Path) -> list[Path]:
    """The ``*.npy`` emotion presets in ``folder``, sorted by name (empty when it is absent)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.npy") if p.is_file())


def load_official_emotions(weights_dir: str | Path) -> dict[str, np.ndarray]:
    """Name -> float32 ``(10,)`` expression weights from ``<weights_dir>/predefined_exp_weights/*.npy``.

    Empty when the folder is absent; a damaged or wrong-shaped file raises a WeightsError naming it.
    """
    return {p.stem: read_preset(p) for p in preset_files(Path(weights_dir).expanduser() / PRESETS_DIRNAME)}
