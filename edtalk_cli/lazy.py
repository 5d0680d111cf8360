"""Lazy re-exports for package ``__init__`` files.

A package lists ``name -> home submodule`` and gets a module ``__getattr__`` that imports a name
from its home on first use, so importing the package loads none of its heavy dependencies
(``edtalk --help`` stays free of torch, numpy and the media libraries).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``name`` from ``package.homes[name]``
    and keeps it in the package's namespace, so later look-ups are plain attribute reads."""

    def attribute(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{homes[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return attribute
