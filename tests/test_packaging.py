"""The wheel ships every subpackage, the presets and the demo model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import run_cli

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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["render", "--bogus"], "No such option: --bogus"),
        (["render", "m.yaml", "--workers", "2"], "Possible options:"),
        (["train", "stage"], "Missing argument 'config'"),
        (["eval", "--identities", "many"], "Invalid value for '--identities'"),
    ],
)
def test_usage_errors_print_usage_not_a_traceback(args: list[str], message: str, tmp_path: Path) -> None:
    run = run_cli(*args, cwd=tmp_path, timeout=120)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Usage: " in run.stderr and "--help' for help" in run.stderr
    assert "Traceback" not in run.stderr
