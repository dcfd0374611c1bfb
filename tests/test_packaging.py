"""A plain (non-editable) install carries the shipped model: the wheel holds its card and weights.

The wheel is built from a copy of the sources, so the work tree gets no build/ or egg-info litter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "model"
SOURCES = ("pyproject.toml", "README.md", "brainseg_gui", "model", "resources")
#: `brainseg --version` with only the folder given as argv[1] importable (-S: no site-packages).
VERSION_FROM_FOLDER = ("import sys; sys.path[:0] = [sys.argv[1]]; "
                       "from brainseg_gui.cli import main; raise SystemExit(main(['--version']))")


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list((tmp_path / "dist").glob("brainseg-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (MODEL / "card.json").is_file() or not sorted(MODEL.glob("*.safetensors")):
        pytest.skip("model/ holds no trained weights (*.safetensors + card.json) yet")
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.mark.slow
def test_wheel_carries_the_shipped_model(wheel: Path) -> None:
    weights = sorted(MODEL.glob("*.safetensors"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for file in (MODEL / "card.json", *weights):
            member = f"brainseg_gui/shipped_model/{file.name}"
            assert member in names, sorted(names)
            assert archive.read(member) == file.read_bytes()
        card = json.loads(archive.read("brainseg_gui/shipped_model/card.json"))
        assert {"brainseg_gui/cli/__init__.py", "brainseg_gui/__main__.py", "brainseg_gui/core/io.py"} <= names
        # the viewer's style and icons travel too (a wheel install must not lose them)
        assert {"brainseg_gui/resources/style.qss", "brainseg_gui/resources/icons/brainseg.svg"} <= names
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "brainseg = brainseg_gui.cli:main" in archive.read(entry_points).decode()
    assert card.get("version")


@pytest.mark.slow
def test_installed_copy_reports_the_model_version(wheel: Path, tmp_path: Path) -> None:
    """Installed into a plain folder (no editable finder), `brainseg --version` finds the model."""
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    done = subprocess.run(
        [sys.executable, "-S", "-c", VERSION_FROM_FOLDER, str(target)],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    card = json.loads((MODEL / "card.json").read_text())
    assert f"model: {card['version']}" in done.stdout
