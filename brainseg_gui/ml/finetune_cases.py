"""Choosing a fine-tune's cases: expand the user's picks, refuse leaks, and cache each case for training.

A pick is a case folder, any file of a case, a folder holding several cases, or a `CaseFiles` (a
case corrected in this app: its images plus the exported mask as `seg`). `check_cases` reads only
file names, so the panel can call it on every change. Validation must be held apart by patient, not
only by case id: BraTS re-issues patients under new names (`splits.patient_key`). The same matching
flags a validation case the base model was trained on (`trained_cases`, from its card): allowed, but
its Dice before is inflated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from brainseg_gui.core.cases import CaseFiles, find_case, find_cases
from brainseg_gui.core.errors import BrainSegError, StudyLoadError
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress
from brainseg_gui.ml.splits import patient_key

log = logging.getLogger(__name__)

CaseInput = Path | str | CaseFiles

#: Below these counts a fine-tune is allowed but warned about (overfitting, a noisy validation).
MIN_TRAIN_CASES = 3
MIN_VAL_CASES = 2
#: Fine-tunes of fine-tunes followed back through their cards, at most (a loop of paths cannot hang).
MAX_LINEAGE = 16


class FinetuneError(BrainSegError):
    """A fine-tune cannot run as asked (bad case choice, bad settings, an unsafe output folder)."""


@dataclass(frozen=True)
class CaseCheck:
    """The expanded training and validation cases, and what is wrong (errors) or risky (warnings)."""

    train: list[CaseFiles] = field(default_factory=list)
    val: list[CaseFiles] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: validation case id -> the training case of the base model it matches (itself or its patient)
    inflated: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _where(case: CaseFiles) -> str:
    return str(case.seg or next(iter(case.files.values()), case.case_id))


def expand_cases(inputs: Sequence[CaseInput], side: str) -> tuple[list[CaseFiles], list[str], list[str]]:
    """(labelled cases, errors, warnings) for one side ("training" or "validation")."""
    cases: list[CaseFiles] = []
    errors: list[str] = []
    warnings: list[str] = []
    for item in inputs:
        if isinstance(item, CaseFiles):
            found, explicit = [item], True
        else:
            path = Path(item)
            try:
                explicit = not path.is_dir() or not any(child.is_dir() for child in path.iterdir())
                found = find_cases(path) if path.is_dir() else [find_case(path)]
            except (StudyLoadError, OSError) as error:
                errors.append(f"{side}: {error}")
                continue
        unlabelled = [case for case in found if case.seg is None]
        if unlabelled and explicit:
            errors += [f"{side}: case {case.case_id} ({_where(case)}) has no label map" for case in unlabelled]
        elif unlabelled:
            warnings.append(f"{side}: skipped {len(unlabelled)} unlabelled case(s) in {item}: "
                            f"{', '.join(c.case_id for c in unlabelled[:5])}")
        cases += [case for case in found if case.seg is not None]
    seen: dict[str, CaseFiles] = {}
    for case in cases:
        if case.case_id in seen:
            errors.append(f"{side}: case {case.case_id} is given twice ({_where(seen[case.case_id])} "
                          f"and {_where(case)})")
        seen.setdefault(case.case_id, case)
    return sorted(seen.values(), key=lambda c: c.case_id), errors, warnings


def check_cases(train: Sequence[CaseInput], val: Sequence[CaseInput], trained: Sequence[str] = ()) -> CaseCheck:
    """Expand both sides and say whether a fine-tune may start (errors) and what to warn about.

    `trained`: the base model's training cases (`trained_cases`); validation cases among them are
    listed in `inflated` (a warning of its own, `inflated_warning`, not in `warnings`).
    """
    train_cases, errors, warnings = expand_cases(train, "training")
    val_cases, val_errors, val_warnings = expand_cases(val, "validation")
    errors += val_errors
    warnings += val_warnings
    if not train_cases:
        errors.append("no labelled training case chosen")
    if not val_cases:
        errors.append("no labelled validation case chosen: validation cases are needed to stop early "
                      "and to compare the model before and after")
    val_ids = {case.case_id for case in val_cases}
    val_patients = {patient_key(case.case_id): case.case_id for case in val_cases}
    for case in train_cases:
        if case.case_id in val_ids:
            errors.append(f"case {case.case_id} is in training and validation: hold validation cases apart")
        elif patient_key(case.case_id) in val_patients:
            errors.append(f"{case.case_id} (training) and {val_patients[patient_key(case.case_id)]} "
                          "(validation) are the same patient: hold validation cases apart")
    if train_cases and len(train_cases) < MIN_TRAIN_CASES:
        warnings.append(f"only {len(train_cases)} training case(s): with fewer than {MIN_TRAIN_CASES} the "
                        "model may fit those cases and get worse on others")
    if val_cases and len(val_cases) < MIN_VAL_CASES:
        warnings.append(f"only {len(val_cases)} validation case(s): with fewer than {MIN_VAL_CASES} the "
                        "before/after comparison and early stopping rest on very little")
    return CaseCheck(train_cases, val_cases, errors, warnings,
                     inflated_cases([case.case_id for case in val_cases], trained))


def trained_cases(model_dir: Path) -> list[str]:
    """The case ids a model was trained on, its base models' included, from the card(s); sorted.

    A fine-tuned card lists its own training cases (`training.cases`) and, since issue 19, its base's
    (`training.finetune.base_trained_cases`); an older one names its base's folder, which is read
    when it is still there. An unreadable card gives what was found so far (logged): the check is a
    warning, never a reason to refuse a run.
    """
    from brainseg_gui.core.errors import ModelError
    from brainseg_gui.ml.model_card import read_card

    found: set[str] = set()
    folder: Path | None = Path(model_dir)
    for _ in range(MAX_LINEAGE):
        if folder is None:
            break
        try:
            training = read_card(folder).training
        except (ModelError, StudyLoadError, OSError) as error:
            log.warning("cannot read which cases %s was trained on: %s", folder, error)
            break
        found.update(_ids(training.get("cases")))
        tuned = training.get("finetune")
        tuned = tuned if isinstance(tuned, Mapping) else {}
        if "base_trained_cases" in tuned:
            found.update(_ids(tuned["base_trained_cases"]))
            break
        folder = Path(tuned["base_model"]) if isinstance(tuned.get("base_model"), str) else None
    return sorted(found)


def _ids(value: object) -> list[str]:
    """A card's list of case ids (anything else, from a hand-edited card, counts as none)."""
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def inflated_cases(val_ids: Sequence[str], trained: Sequence[str]) -> dict[str, str]:
    """Validation case id -> the training case it repeats: the same id, or the same patient
    (`splits.patient_key`, as the overlap check between the two lists)."""
    by_patient: dict[str, str] = {}
    for case_id in sorted(trained):
        by_patient.setdefault(patient_key(case_id), case_id)
    trained_ids = set(trained)
    out = {}
    for case_id in val_ids:
        if case_id in trained_ids:
            out[case_id] = case_id
        elif patient_key(case_id) in by_patient:
            out[case_id] = by_patient[patient_key(case_id)]
    return out


def inflated_warning(inflated: Mapping[str, str]) -> str:
    """One line naming the validation cases the base model was trained on ("" for none)."""
    if not inflated:
        return ""
    names = [case if seen == case else f"{case} (as {seen}, the same patient)"
             for case, seen in sorted(inflated.items())]
    one = len(names) == 1
    return (f"the base model was trained on validation case{'' if one else 's'} {', '.join(names)}: "
            f"{'its' if one else 'their'} Dice before is inflated; validation cases the model never saw "
            "give a fair before/after comparison")


def cache_cases(cases: Sequence[CaseFiles], cache_dir: Path, resolution_mm: float, *,
                progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> list[Path]:
    """Write each case's training-cache entry (ml/dataset.py format) into `cache_dir`; returns them.

    Like `dataset.cache_case`, but from a `CaseFiles`, so a corrected mask (`seg`) replaces the
    case's own labels. Always rebuilt: a mask corrected again must never be served from a cache.
    """
    paths = []
    for index, case in enumerate(cases):
        if cancel is not None:
            cancel.raise_if_cancelled()
        progress(index / max(len(cases), 1), f"preparing {case.case_id} ({index + 1}/{len(cases)})")
        paths.append(_cache_case(case, Path(cache_dir), resolution_mm))
    progress(1.0, f"{len(paths)} cases prepared")
    return paths


def _cache_case(case: CaseFiles, cache_dir: Path, resolution_mm: float) -> Path:
    from brainseg_gui.core.io import load_study
    from brainseg_gui.ml.dataset import cache_study

    study = load_study(case)
    if study.labels is None or study.label_convention is None:
        raise FinetuneError(f"case {case.case_id} ({_where(case)}) has no label map")
    return cache_study(study, cache_dir, resolution_mm)
