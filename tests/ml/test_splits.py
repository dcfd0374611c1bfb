"""Patient-grouped, deterministic case-level splits."""

from __future__ import annotations

import pytest

from brainseg_gui.ml.splits import SplitError, fold_assignment, patient_key, split_cases

IDS = ["Brats17_2013_27_1", "Brats18_2013_27_1", "Brats18_2013_2_1", "Brats18_CBICA_AQR_1",
       "Brats18_TCIA01_425_1", "BraTS2021_00003", "BraTS-GLI-00003-001", "BraTS2021_00005",
       "BraTS2021_00014", "demo-phantom-seed1"]


def test_patient_key_joins_reissued_cases() -> None:
    assert patient_key("Brats17_2013_27_1") == patient_key("Brats18_2013_27_1") == "2013_27"
    assert patient_key("Brats18_2013_2_1") == "2013_2"
    assert patient_key("Brats18_TCIA01_425_1") == "TCIA01_425"
    assert patient_key("Brats18_CBICA_AQR_1") == "CBICA_AQR"
    assert patient_key("BraTS2021_00003") == patient_key("BraTS-GLI-00003-001") == "GLI_00003"
    assert patient_key("demo-phantom-seed1") == "demo-phantom-seed1"


def _same_side(train: list[str], val: list[str]) -> None:
    assert not set(train) & set(val)
    for a, b in (("Brats17_2013_27_1", "Brats18_2013_27_1"), ("BraTS2021_00003", "BraTS-GLI-00003-001")):
        assert (a in val) == (b in val)


@pytest.mark.parametrize("seed", range(6))
def test_fraction_split_is_grouped_and_deterministic(seed: int) -> None:
    train, val = split_cases(IDS, val_fraction=0.3, seed=seed)
    _same_side(train, val)
    assert sorted(train + val) == sorted(IDS) and val
    assert (train, val) == split_cases(list(reversed(IDS)), val_fraction=0.3, seed=seed)


def test_named_validation_cases_take_their_whole_patient() -> None:
    train, val = split_cases(IDS, val_cases=["Brats18_2013_27_1"])
    assert val == ["Brats17_2013_27_1", "Brats18_2013_27_1"]
    assert len(train) == len(IDS) - 2


def test_unknown_validation_cases_are_named() -> None:
    with pytest.raises(SplitError, match=r"\['Brats99_nobody', 'x'\]"):
        split_cases(IDS, val_cases=["x", "Brats99_nobody", "BraTS2021_00005"])


def test_folds_partition_every_case_and_keep_patients_together() -> None:
    folds = [split_cases(IDS, folds=4, fold=i, seed=2) for i in range(4)]
    vals = [val for _, val in folds]
    assert sorted(c for val in vals for c in val) == sorted(IDS)
    for train, val in folds:
        _same_side(train, val)
        assert 1 <= len(val) <= 4
    assert fold_assignment(IDS, 4, seed=2) == fold_assignment(IDS, 4, seed=2)
    assert vals == [split_cases(IDS, folds=4, fold=i, seed=2)[1] for i in range(4)]


def test_bad_fold_requests_are_errors() -> None:
    with pytest.raises(SplitError, match="fold 4 is not in 0..3"):
        split_cases(IDS, folds=4, fold=4)
    with pytest.raises(SplitError, match="need at least 20 patients"):
        split_cases(IDS, folds=20)


def test_no_validation_when_fraction_is_zero() -> None:
    assert split_cases(IDS) == (sorted(IDS), [])
