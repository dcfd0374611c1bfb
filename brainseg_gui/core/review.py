"""Comparing the AI's mask with the corrected one: Dice per region, voxels changed, where they differ.

Both masks are label maps in one convention on one grid (the edit session keeps BraTS 0/1/2/4).
Counting goes through the histogram of (AI value, corrected value) pairs over the voxels that
differ, so a full 240x240x155 case is compared in a few tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainseg_gui.core.dice import dice_from_counts
from brainseg_gui.core.errors import GridMismatchError
from brainseg_gui.core.labels import REGIONS, TISSUES, LabelConvention


@dataclass(frozen=True)
class Change:
    """Voxels that joined (`added`) and left (`removed`) one class or region."""

    added: int
    removed: int

    @property
    def total(self) -> int:
        return self.added + self.removed


@dataclass(frozen=True)
class Comparison:
    """AI mask vs corrected mask.

    dice: region -> Dice of the AI region against the corrected one (1.0 when both are empty).
    tissues / regions: name -> Change from the AI mask to the corrected one.
    changed: voxels whose label differs. voxels_ai / voxels_corrected: region -> voxel count.
    """

    dice: dict[str, float]
    tissues: dict[str, Change]
    regions: dict[str, Change]
    changed: int
    voxels_ai: dict[str, int]
    voxels_corrected: dict[str, int]

    @property
    def edited(self) -> bool:
        return self.changed > 0

    def as_dict(self, voxel_ml: float | None = None) -> dict[str, object]:
        """JSON-ready summary (with volumes in mL when the voxel volume is given)."""
        out: dict[str, object] = {
            "voxels_changed": self.changed,
            "voxels_changed_per_class": {name: {"added": c.added, "removed": c.removed}
                                         for name, c in self.tissues.items()},
            "voxels_changed_per_region": {name: {"added": c.added, "removed": c.removed}
                                          for name, c in self.regions.items()},
            "dice_ai_vs_corrected": {name: round(value, 6) for name, value in self.dice.items()},
        }
        if voxel_ml is not None:
            out["volumes_ml_ai"] = {r: round(n * voxel_ml, 4) for r, n in self.voxels_ai.items()}
            out["volumes_ml_corrected"] = {r: round(n * voxel_ml, 4) for r, n in self.voxels_corrected.items()}
        return out


def _members(convention: LabelConvention) -> dict[str, frozenset[int]]:
    """Label values of each tissue class and each (nested) region."""
    values = convention.tissue_values
    return {
        "NCR": frozenset({values["NCR"]}), "ED": frozenset({values["ED"]}), "ET": frozenset({values["ET"]}),
        "WT": frozenset(values.values()), "TC": frozenset({values["NCR"], values["ET"]}),
    }


def compare(ai: np.ndarray, corrected: np.ndarray,
            convention: LabelConvention = LabelConvention.BRATS) -> Comparison:
    """Dice per region and voxels changed per class and region, from the AI mask to the corrected one."""
    if ai.shape != corrected.shape:
        raise GridMismatchError(f"cannot compare masks of shapes {ai.shape} and {corrected.shape}")
    a = np.asarray(ai, dtype=np.uint8).ravel()
    c = np.asarray(corrected, dtype=np.uint8).ravel()
    differ = np.flatnonzero(a != c)
    pairs = np.bincount(a[differ].astype(np.int64) * 256 + c[differ], minlength=256 * 256).reshape(256, 256)
    members = _members(convention)

    def change(values: frozenset[int]) -> Change:
        inside = np.zeros(256, dtype=bool)
        inside[list(values)] = True
        added = int(pairs[~inside][:, inside].sum())
        removed = int(pairs[inside][:, ~inside].sum())
        return Change(added, removed)

    dice: dict[str, float] = {}
    voxels_ai: dict[str, int] = {}
    voxels_c: dict[str, int] = {}
    regions: dict[str, Change] = {}
    tissue_counts = {value: int(np.count_nonzero(a == value)) for value in members["WT"]}  # np.bincount is slower
    for region in REGIONS:
        moved = change(members[region])
        n_ai = sum(tissue_counts[value] for value in members[region])
        n_c = n_ai + moved.added - moved.removed
        # voxels in the region in both masks = the AI's count minus those that left it
        overlap = n_ai - moved.removed
        dice[region] = dice_from_counts(overlap, n_ai, n_c)
        voxels_ai[region], voxels_c[region], regions[region] = n_ai, n_c, moved
    tissues = {name: change(members[name]) for name in TISSUES}
    return Comparison(dice=dice, tissues=tissues, regions=regions, changed=int(differ.size),
                      voxels_ai=voxels_ai, voxels_corrected=voxels_c)


def difference_slices(ai: np.ndarray, corrected: np.ndarray, axis: int) -> list[tuple[int, int]]:
    """(slice index, differing voxels) along `axis` for every slice that differs, most first.

    Ties keep slice order, so stepping through them is predictable.
    """
    if ai.shape != corrected.shape:
        raise GridMismatchError(f"cannot compare masks of shapes {ai.shape} and {corrected.shape}")
    other = tuple(a for a in range(3) if a != axis)
    counts = np.count_nonzero(ai != corrected, axis=other)
    order = np.argsort(-counts, kind="stable")
    return [(int(index), int(counts[index])) for index in order if counts[index] > 0]
