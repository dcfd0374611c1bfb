"""The layering rules (ui -> ml -> core; core without torch/Qt; ml without Qt) hold, and stay held.

Two independent checks: import-linter's static contracts from pyproject.toml, and what a fresh
interpreter really has in `sys.modules` after importing each layer (this also catches imports
that happen at run time through third-party packages).
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import brainseg_gui.core
import brainseg_gui.ml

REPO = Path(__file__).resolve().parents[1]
HEAVY_FOR_CORE = ("torch", "PySide6", "pyqtgraph", "vtk", "vtkmodules", "monai")
QT_FAMILY = ("PySide6", "pyqtgraph", "vtk", "vtkmodules")
#: `lint-imports CONFIG` run by the interpreter under test (the console script may not be on PATH).
LINT_IMPORTS = ("import sys; from importlinter.cli import lint_imports_command; "
                "sys.argv = ['lint-imports', *sys.argv[1:]]; lint_imports_command()")


def _submodules(package: object) -> list[str]:
    return sorted(f"{package.__name__}.{info.name}" for info in pkgutil.iter_modules(package.__path__))  # type: ignore[attr-defined]


def _loaded_after(imports: list[str], watched: tuple[str, ...]) -> list[str]:
    """Import `imports` in a fresh interpreter; return which `watched` top-level modules got loaded."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {imports!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {list(watched)!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _lint_imports(config: Path) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--no-cache", str(config)],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_import_contracts_from_pyproject_are_kept() -> None:
    """`lint-imports` on pyproject.toml as written: every contract there is KEPT."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert len(contracts["contracts"]) >= 3
    status, output = _lint_imports(REPO / "pyproject.toml")
    assert status == 0, output[-3000:]
    for contract in contracts["contracts"]:
        assert f"{contract['name']} KEPT" in output, output[-3000:]
    assert "BROKEN" not in output


def test_core_imports_neither_torch_nor_qt() -> None:
    modules = ["brainseg_gui.core", *_submodules(brainseg_gui.core)]
    assert len(modules) > 5
    assert _loaded_after(modules, HEAVY_FOR_CORE) == []


def test_ml_never_imports_qt() -> None:
    modules = ["brainseg_gui.ml", *_submodules(brainseg_gui.ml)]
    assert _loaded_after(modules, QT_FAMILY) == []


def test_cli_module_starts_without_torch_qt_or_numpy() -> None:
    """`brainseg --help` must be instant: the CLI imports heavy packages only inside subcommands."""
    loaded = _loaded_after(["brainseg_gui.cli", "brainseg_gui.__main__"],
                           ("torch", "PySide6", "SimpleITK", "numpy", "monai", "vtk", "scipy"))
    assert loaded == []


@pytest.mark.parametrize("module", ["brainseg_gui.core", "brainseg_gui.ml"])
def test_layers_have_submodules(module: str) -> None:
    """Guard against the checks above passing vacuously on an empty package."""
    package = sys.modules[module]
    assert _submodules(package)
