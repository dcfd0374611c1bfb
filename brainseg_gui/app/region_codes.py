"""Region codes: the one uint8 per voxel that the views, the 3D view and the readout draw from.

A code has one bit per region (WT=1, TC=2, ET=4), so nested and non-nested masks both fit; what is
drawn (regions or tissues, colours) is a lookup over the 8 codes. Everything that turns labels or
region masks into codes, or codes back into regions, lives here.
"""

from __future__ import annotations

import numpy as np

from brainseg_gui.core.labels import REGIONS, LabelConvention

#: Bits of an overlay code: one per region, so nested and non-nested masks both fit in a uint8.
REGION_BITS = {"WT": 1, "TC": 2, "ET": 4}


def region_code(regions: np.ndarray) -> np.ndarray:
    """(3, ...) bool WT, TC, ET -> uint8 bit code (WT=1, TC=2, ET=4) of the same spatial shape.

    One small array per overlay source; what is drawn (regions or tissues, which ones, which
    colours) is decided by a lookup table over the 8 codes, never by recomputing the array.
    """
    regions = np.asarray(regions, dtype=bool)
    code = regions[0].astype(np.uint8)
    code |= regions[1].astype(np.uint8) << 1
    code |= regions[2].astype(np.uint8) << 2
    return code


def label_code(labels: np.ndarray, convention: LabelConvention) -> np.ndarray:
    """Label map -> the region code `region_code(to_regions(labels, convention))` gives, ~5x faster
    (three comparisons; no full-size boolean stack). Values outside the convention map to 0."""
    labels = np.asarray(labels)
    values = convention.tissue_values
    wt, tc, et = REGION_BITS["WT"], REGION_BITS["TC"], REGION_BITS["ET"]
    code = np.zeros(labels.shape, dtype=np.uint8)
    for tissue, bits in (("ED", wt), ("NCR", wt | tc), ("ET", wt | tc | et)):
        code |= (labels == values[tissue]).view(np.uint8) * np.uint8(bits)
    return code


def tissue_of_code(code: int) -> str | None:
    """Tissue class a code stands for: ET where ET, NCR where TC, ED where WT (as from_regions)."""
    if code & REGION_BITS["ET"]:
        return "ET"
    if code & REGION_BITS["TC"]:
        return "NCR"
    if code & REGION_BITS["WT"]:
        return "ED"
    return None


#: BraTS label value -> region code (NCR = WT|TC, ED = WT, ET = WT|TC|ET), as a lookup table.
BRATS_LABEL_CODE = np.zeros(256, dtype=np.uint8)
BRATS_LABEL_CODE[[1, 2, 4]] = [REGION_BITS["WT"] | REGION_BITS["TC"], REGION_BITS["WT"],
                               REGION_BITS["WT"] | REGION_BITS["TC"] | REGION_BITS["ET"]]


def regions_of_code(code: np.ndarray) -> np.ndarray:
    """(3, ...) bool WT, TC, ET of a code volume (the inverse of `region_code`)."""
    return np.stack([(code & REGION_BITS[region]) != 0 for region in REGIONS])


#: Label regions the statistics can be taken in: nested regions, then tissue classes.
REGION_NAMES = ("WT", "TC", "ET", "NCR", "ED")


#: Tissue classes as (region it lies in, region it lies outside) of the nested regions.
_TISSUE_REGIONS = {"NCR": ("TC", "ET"), "ED": ("WT", "TC")}


def region_mask(code: np.ndarray, name: str) -> np.ndarray:
    """Bool mask of a region (WT, TC, ET) or tissue class (NCR = TC without ET, ED = WT without TC)
    in a region-code volume (see app/region_codes.py). Only the asked-for bits are tested: the RANO
    measurement reads ET after every stroke."""
    if name in REGION_BITS:
        return (code & REGION_BITS[name]) != 0
    if name not in _TISSUE_REGIONS:
        raise ValueError(f"unknown region {name!r}; expected one of {REGION_NAMES}")
    inside, outside = _TISSUE_REGIONS[name]
    return ((code & REGION_BITS[inside]) != 0) & ((code & REGION_BITS[outside]) == 0)
