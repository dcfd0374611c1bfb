"""Shared fixtures: where the real public cases live (../shared/data), skipping when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BRAINSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def private_models_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or change the user's own models folder (and its active model) or cache."""
    os.environ["BRAINSEG_MODELS_DIR"] = str(tmp_path_factory.mktemp("user-models"))
    os.environ["BRAINSEG_CACHE_DIR"] = str(tmp_path_factory.mktemp("user-cache"))


def brats_case_dirs() -> list[Path]:
    """Every labelled real BraTS case folder in ../shared/data (empty when the folder is absent)."""
    if not SHARED_DATA.is_dir():
        return []
    return sorted(p for year in ("brats2017", "brats2018", "brats2021")
                  for p in (SHARED_DATA / year).glob("*") if p.is_dir())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set BRAINSEG_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_case(shared_data: Path) -> Path:
    """One real BraTS 2021 case folder."""
    return shared_data / "brats2021" / "BraTS2021_00003"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder with a tiny random generator: plumbing only, its masks mean nothing."""
    torch = pytest.importorskip("torch")
    from brainseg_gui.ml.checkpoint import ModelCard, save_model
    from brainseg_gui.ml.networks import DEFAULT_CONFIG, build_generator

    torch.manual_seed(0)
    config = {**DEFAULT_CONFIG, "widths": [4, 8], "deep_supervision": False}
    model_dir = tmp_path_factory.mktemp("tiny_model")
    save_model(model_dir, build_generator("generator3d", config),
               ModelCard(architecture="generator3d", config=config, resolution_mm=2.0))
    return model_dir
