"""The wheel ships every subpackage, the presets and the demo model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is 3.11+")
def test_every_subpackage_is_listed_in_pyproject():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "edtalk_cli").rglob("__init__.py")}
    assert found - listed == set(), f"add these packages to pyproject.toml: {sorted(found - listed)}"
    assert config["package-dir"]["edtalk_cli.presets"] == "presets"
    assert any(ROOT.joinpath("presets").glob("*.yaml"))
