"""Shared fixtures: where the real public cases live (../shared/data), skipping when absent."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real Orthanc PACS for the session (tests/pacs_orthanc.py); the test skips, saying why, without one."""
    from tests.pacs_orthanc import orthanc_missing, start_orthanc

    if orthanc_missing():
        pytest.skip(orthanc_missing())
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture
def pacs_nodes(orthanc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Private settings, secrets file and cache, with the Orthanc as a DICOMweb node ('web', basic auth)
    and a DIMSE node ('dimse')."""
    from brainseg_gui.core.pacs_nodes import NodeStore, PacsNode
    from tests.pacs_orthanc import AE_TITLE, PASSWORD, USER

    monkeypatch.setenv("BRAINSEG_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("BRAINSEG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BRAINSEG_SECRETS", "file")
    store = NodeStore()
    store.add(PacsNode("web", "dicomweb", url=orthanc.dicomweb_url, auth="basic", username=USER), secret=PASSWORD)
    store.add(PacsNode("dimse", "dimse", ae_title=AE_TITLE, host="127.0.0.1", port=orthanc.dicom_port))
    return store

