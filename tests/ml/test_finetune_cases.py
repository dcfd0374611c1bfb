"""Which cases a base model was trained on (its card, its lineage) and the validation cases that repeat them."""

from __future__ import annotations

import json
from pathlib import Path

from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.ml.finetune_cases import check_cases, inflated_cases, inflated_warning, trained_cases
from brainseg_gui.ml.model_card import CARD_FILE, ModelCard
from brainseg_gui.ml.shipped import shipped_model_dir


def _card(folder: Path, training: dict) -> Path:
    """A model folder holding only a card (what `trained_cases` reads; no weights needed)."""
    folder.mkdir(parents=True)
    card = ModelCard(architecture="generator3d", config={"widths": [4, 8]}, resolution_mm=2.0, training=training)
    (folder / CARD_FILE).write_text(json.dumps(card.to_dict()))
    return folder


def test_the_shipped_model_lists_its_training_cases_not_its_validation_cases() -> None:
    trained = trained_cases(shipped_model_dir())
    assert "BraTS2021_00003" in trained and "Brats18_TCIA01_425_1" in trained
    assert "BraTS2021_00014" not in trained  # a validation case of the shipped model
    assert trained == sorted(trained)


def test_a_fine_tuned_model_counts_its_base_cases_too(tmp_path: Path) -> None:
    base = _card(tmp_path / "base", {"cases": ["BraTS2021_00003", "Brats18_2013_3_1"]})
    old_style = _card(tmp_path / "v1", {"cases": ["Site_1"], "finetune": {"base_model": str(base)}})
    assert trained_cases(old_style) == ["BraTS2021_00003", "Brats18_2013_3_1", "Site_1"]  # read through the path
    recorded = _card(tmp_path / "v2", {"cases": ["Site_2"], "finetune": {
        "base_model": str(tmp_path / "gone"), "base_trained_cases": trained_cases(old_style)}})
    assert trained_cases(recorded) == ["BraTS2021_00003", "Brats18_2013_3_1", "Site_1", "Site_2"]
    lost = _card(tmp_path / "v3", {"cases": ["Site_3"], "finetune": {"base_model": str(tmp_path / "gone")}})
    assert trained_cases(lost) == ["Site_3"]  # the base is gone: what the card says, no error
    assert trained_cases(tmp_path / "nowhere") == []
    looped = _card(tmp_path / "loop", {"cases": ["L_1"], "finetune": {"base_model": str(tmp_path / "loop")}})
    assert trained_cases(looped) == ["L_1"]  # a card naming itself as its base does not hang


def test_a_validation_case_is_inflated_by_its_id_or_its_patient() -> None:
    trained = ["BraTS2021_00003", "Brats17_2013_27_1", "Site_1"]
    assert inflated_cases(["BraTS2021_00003", "BraTS2021_00014"], trained) == {"BraTS2021_00003": "BraTS2021_00003"}
    # BraTS 2023 re-issues BraTS 2021 patients; BraTS 2018 the 2017 ones (splits.patient_key)
    assert inflated_cases(["BraTS-GLI-00003-000", "Brats18_2013_27_1"], trained) == {
        "BraTS-GLI-00003-000": "BraTS2021_00003", "Brats18_2013_27_1": "Brats17_2013_27_1"}
    assert inflated_cases(["Site_2", "BraTS2021_00005"], trained) == {}
    text = inflated_warning({"BraTS-GLI-00003-000": "BraTS2021_00003"})
    assert "BraTS-GLI-00003-000 (as BraTS2021_00003, the same patient)" in text and "inflated" in text
    assert inflated_warning({}) == ""


def test_check_cases_flags_inflated_validation_cases_without_blocking(tmp_path: Path) -> None:
    train = [write_phantom_case(tmp_path, seed=s, shape=(24, 24, 24), case_id=f"Site_{s}") for s in (1, 2, 3)]
    seen = write_phantom_case(tmp_path, seed=4, shape=(24, 24, 24), case_id="BraTS2021_00003")
    fresh = write_phantom_case(tmp_path, seed=5, shape=(24, 24, 24), case_id="BraTS2021_00014")
    trained = trained_cases(shipped_model_dir())
    check = check_cases(train, [seen, fresh], trained)
    assert check.ok and check.inflated == {"BraTS2021_00003": "BraTS2021_00003"}
    assert not any("inflated" in w for w in check.warnings)  # its own line: inflated_warning
    assert check_cases(train, [fresh], trained).inflated == {}
    assert check_cases(train, [seen]).inflated == {}  # no base model given: nothing to compare with
