"""Label conventions and the nested tumour regions (see DESIGN.md, "Label conventions").

Tissue classes: NCR (necrotic / non-enhancing core), ED (edema), ET (enhancing tumour).
Regions are nested: ET = {ET}; TC = {NCR, ET}; WT = {NCR, ED, ET}.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from brainseg_gui.core.errors import LabelError

#: Region order everywhere in the program (model outputs, metrics tables, overlays).
REGIONS: tuple[str, str, str] = ("WT", "TC", "ET")
#: Tissue classes in the order used by `tissue_values`.
TISSUES: tuple[str, str, str] = ("NCR", "ED", "ET")


class LabelConvention(str, Enum):
    """How integer label values map to tissue classes."""

    BRATS = "brats"  # BraTS 2017-2021: 1 NCR, 2 ED, 4 ET
    BRATS23 = "brats23"  # BraTS 2023+ glioma: 1 NETC, 2 SNFH, 3 ET
    MSD = "msd"  # MSD Task01: 1 edema, 2 non-enhancing tumour, 3 enhancing tumour

    @property
    def tissue_values(self) -> dict[str, int]:
        """Value of each tissue class in this convention."""
        return _TISSUE_VALUES[self]

    @property
    def allowed_values(self) -> frozenset[int]:
        return frozenset({0, *self.tissue_values.values()})

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_TISSUE_VALUES: dict[LabelConvention, dict[str, int]] = {
    LabelConvention.BRATS: {"NCR": 1, "ED": 2, "ET": 4},
    LabelConvention.BRATS23: {"NCR": 1, "ED": 2, "ET": 3},
    LabelConvention.MSD: {"NCR": 2, "ED": 1, "ET": 3},
}

_DESCRIPTIONS: dict[LabelConvention, str] = {
    LabelConvention.BRATS: "BraTS 2017-2021 (1 NCR, 2 ED, 4 ET)",
    LabelConvention.BRATS23: "BraTS 2023+ (1 NETC, 2 SNFH, 3 ET)",
    LabelConvention.MSD: "MSD Task01 (1 edema, 2 non-enhancing, 3 enhancing)",
}


def parse_convention(name: str | LabelConvention) -> LabelConvention:
    """Turn a user-given name ('brats', 'brats23', 'msd') into a convention, or raise LabelError."""
    if isinstance(name, LabelConvention):
        return name
    try:
        return LabelConvention(str(name).lower())
    except ValueError:
        known = ", ".join(c.value for c in LabelConvention)
        raise LabelError(f"unknown label convention {name!r}; known: {known}") from None


def present_values(labels: np.ndarray) -> set[int]:
    """The distinct values of a label map. Small unsigned values (every convention's) are tested one
    by one: np.unique hashes or sorts all voxels, ~15x slower on a 240x240x155 case, at every load."""
    labels = np.asarray(labels)
    if labels.size and labels.dtype.kind in "bu":
        top = int(labels.max())
        if top < 16:
            return {value for value in range(top + 1) if np.any(labels == value)}
    return {int(v) for v in np.unique(labels)}


def check_values(labels: np.ndarray, convention: LabelConvention, *, source: str = "") -> None:
    """Raise LabelError naming every value in `labels` that `convention` does not define."""
    present = present_values(labels)
    unknown = sorted(present - convention.allowed_values)
    if unknown:
        where = f" in {source}" if source else ""
        allowed = sorted(convention.allowed_values)
        raise LabelError(
            f"label values {unknown}{where} are not part of the {convention.description} convention "
            f"(allowed: {allowed})"
        )


def guess_convention(labels: np.ndarray, *, source: str = "") -> LabelConvention:
    """Guess the convention from the values present: 4 means BraTS; 0-3 defaults to BraTS 2023.

    Values 0..3 are ambiguous between BraTS 2023 and MSD; callers that know better (an MSD 4D
    file, a user option) pass the convention explicitly instead of guessing.
    """
    present = present_values(labels)
    if present <= LabelConvention.BRATS.allowed_values and 3 not in present:
        return LabelConvention.BRATS
    if present <= LabelConvention.BRATS23.allowed_values:
        return LabelConvention.BRATS23
    unknown = sorted(present - {0, 1, 2, 3, 4})
    where = f" in {source}" if source else ""
    if unknown:
        raise LabelError(f"label values {unknown}{where} belong to no known convention (0-4)")
    raise LabelError(
        f"label values {sorted(present)}{where} mix 3 and 4, which no convention does "
        "(BraTS 2017-2021 uses 1/2/4, BraTS 2023 and MSD use 1/2/3)"
    )


def to_regions(labels: np.ndarray, convention: LabelConvention) -> np.ndarray:
    """Label map (any integer dtype, shape S) -> bool array (3, *S) of WT, TC, ET."""
    check_values(labels, convention)
    values = convention.tissue_values
    ncr = labels == values["NCR"]
    ed = labels == values["ED"]
    et = labels == values["ET"]
    tc = ncr | et
    wt = tc | ed
    return np.stack([wt, tc, et])


def from_regions(regions: np.ndarray, convention: LabelConvention) -> np.ndarray:
    """Bool/0-1 array (3, *S) of WT, TC, ET -> uint8 label map in `convention`.

    Regions need not be nested: ET wins where set, then NCR where TC, then ED where WT
    (so ET outside TC still counts as ET, and TC outside WT as NCR).
    """
    if regions.ndim < 1 or regions.shape[0] != 3:
        raise LabelError(f"expected 3 region maps (WT, TC, ET), got shape {regions.shape}")
    wt, tc, et = (np.asarray(r, dtype=bool) for r in regions)
    values = convention.tissue_values
    labels = np.zeros(wt.shape, dtype=np.uint8)
    labels[wt] = values["ED"]
    labels[tc] = values["NCR"]
    labels[et] = values["ET"]
    return labels


def convert(labels: np.ndarray, source: LabelConvention, target: LabelConvention) -> np.ndarray:
    """Re-express a label map from one convention in another (uint8)."""
    check_values(labels, source)
    out = np.zeros(labels.shape, dtype=np.uint8)
    for tissue, value in source.tissue_values.items():
        out[labels == value] = target.tissue_values[tissue]
    return out
