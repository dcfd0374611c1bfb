"""Case-level, patient-grouped train/validation splits (never one patient on both sides).

BraTS re-issues patients under new names: Brats17_2013_27_1 and Brats18_2013_27_1 are the BRATS 2013
patient `2013_27`; BraTS2021_00003 and BraTS-GLI-00003-000 (BraTS 2023) are one patient too.
`patient_key` maps such ids to one key; splits move whole groups.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from brainseg_gui.core.errors import BrainSegError

#: Brats17_2013_27_1 / Brats18_TCIA01_425_1 / BraTS19_CBICA_AAB_1 -> 2013_27 / TCIA01_425 / CBICA_AAB.
_LEGACY = re.compile(r"^brats\d{2}_(?P<patient>(?:2013|tcia\d*|cbica|tmc)_[a-z0-9]+)_\d+$", re.IGNORECASE)
#: BraTS2021_00003 / BraTS-GLI-00003-000 / BraTS-GLI-00003-001 -> GLI_00003.
_GLI = re.compile(r"^(?:brats2021_|brats-gli-)(?P<number>\d{5})(?:-\d{3})?$", re.IGNORECASE)


class SplitError(BrainSegError):
    """The requested split cannot be made (unknown validation cases, bad fold numbers, ...)."""


def patient_key(case_id: str) -> str:
    """The patient a BraTS case id belongs to, so re-issued cases of one patient group together."""
    legacy = _LEGACY.match(case_id)
    if legacy:
        return legacy.group("patient").upper()
    gli = _GLI.match(case_id)
    if gli:
        return f"GLI_{gli.group('number')}"
    return case_id


def group_cases(case_ids: Sequence[str]) -> dict[str, list[str]]:
    """patient key -> its case ids (sorted), for every case."""
    groups: dict[str, list[str]] = {}
    for case_id in sorted(case_ids):
        groups.setdefault(patient_key(case_id), []).append(case_id)
    return groups


def split_cases(case_ids: Sequence[str], *, val_cases: Sequence[str] | None = None, folds: int = 0,
                fold: int = 0, val_fraction: float = 0.0, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train ids, validation ids), deterministic for a given seed.

    - `val_cases`: exactly these cases (plus any case of the same patients) are validation; names
      not among `case_ids` are an error that lists them.
    - `folds=K > 1`: patients are shuffled by `seed` and dealt into K folds balanced by case count;
      fold `fold` is validation. The K validation sets partition all cases.
    - else `val_fraction` of the patients (at least one when > 0) are validation; 0 = none.
    """
    ids = sorted(set(case_ids))
    if len(ids) != len(case_ids):
        duplicates = sorted({c for c in case_ids if list(case_ids).count(c) > 1})
        raise SplitError(f"case ids appear more than once: {duplicates}")
    groups = group_cases(ids)
    if val_cases:
        unknown = sorted(set(val_cases) - set(ids))
        if unknown:
            raise SplitError(f"validation cases not found in the training data: {unknown} "
                             f"(known: {ids})")
        chosen = {patient_key(c) for c in val_cases}
        val = sorted(c for key in chosen for c in groups[key])
    elif folds and folds > 1:
        if not 0 <= fold < folds:
            raise SplitError(f"fold {fold} is not in 0..{folds - 1}")
        if len(groups) < folds:
            raise SplitError(f"{folds} folds need at least {folds} patients, found {len(groups)}")
        val = sorted(fold_assignment(ids, folds, seed)[fold])
    elif val_fraction > 0:
        if not val_fraction < 1:
            raise SplitError(f"val_fraction must be below 1, got {val_fraction}")
        keys = sorted(groups)
        random.Random(seed).shuffle(keys)
        count = min(max(1, round(val_fraction * len(keys))), len(keys) - 1)
        val = sorted(c for key in keys[:count] for c in groups[key])
    else:
        val = []
    train = [c for c in ids if c not in set(val)]
    if not train:
        raise SplitError(f"no training cases left after taking validation cases {val}")
    return train, val


def fold_assignment(case_ids: Sequence[str], folds: int, seed: int = 0) -> list[list[str]]:
    """The K folds' case lists: shuffled patients, each to the fold with the fewest cases so far."""
    groups = group_cases(case_ids)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    keys.sort(key=lambda key: -len(groups[key]))  # stable: big groups first, shuffled within a size
    assigned: list[list[str]] = [[] for _ in range(folds)]
    for key in keys:
        smallest = min(range(folds), key=lambda index: (len(assigned[index]), index))
        assigned[smallest].extend(groups[key])
    return [sorted(fold_cases) for fold_cases in assigned]
