"""The installer's files stay consistent with the code (the bundle itself is built by installer/smoke.sh, not here).

Building takes 15+ minutes on CI's 2 cores, so these checks are static and fast: the scripts parse,
the spec excludes what must never ship, and every module the bundle's self-test imports exists.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "installer"


def _literal(path: Path, name: str) -> object:
    """The value of a top-level `NAME = <literal>` assignment in a Python file, without running it."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned in {path}")


def _module_exists(dotted: str) -> bool:
    """Whether `dotted` is installed, found on disk without importing anything."""
    top, *rest = dotted.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None:
        return False
    folders = [Path(p) for p in (spec.submodule_search_locations or [])]
    for part in rest:
        found = [f / part for f in folders if (f / part).is_dir()]
        if not found:
            return any((f / f"{part}.py").is_file() or any(f.glob(f"{part}.*.so")) or any(f.glob(f"{part}.*.pyd"))
                       for f in folders)
        folders = found
    return True


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", ["build.sh", "smoke.sh"])
def test_scripts_parse(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(INSTALLER / script)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_spec_parses_and_never_ships_torchvision_or_test_tools() -> None:
    spec = INSTALLER / "brainseg.spec"
    ast.parse(spec.read_text(encoding="utf-8"))
    excludes = _literal(spec, "EXCLUDES")
    assert isinstance(excludes, list)
    for name in ("torchvision", "pytest", "hypothesis", "matplotlib", "tkinter", "PyQt5"):
        assert name in excludes
    # torch.optim imports torch._dynamo (and it sympy): excluding them would break `brainseg train`
    assert not {"torch._dynamo", "torch._inductor", "sympy"} & set(excludes)


def test_spec_ships_the_model_and_resources() -> None:
    text = (INSTALLER / "brainseg.spec").read_text(encoding="utf-8")
    assert '"brainseg_gui/shipped_model"' in text and '"__init__.py"' in text
    assert (REPO / "model" / "__init__.py").is_file()
    assert (REPO / "resources" / "icons" / "brainseg.svg").is_file()


def test_self_test_modules_exist() -> None:
    modules = _literal(INSTALLER / "entry.py", "LAZY_MODULES")
    assert isinstance(modules, tuple) and len(modules) >= 10
    missing = [name for name in modules if not _module_exists(name)]
    assert missing == []
