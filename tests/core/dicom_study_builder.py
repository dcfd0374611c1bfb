"""A realistic clinical DICOM MR study, written from one real BraTS case, with known answers.

`build_study(case_dir, out)` turns a BraTS 2017-21 case folder into what a radiologist's PACS export
of a brain-tumour protocol looks like: one study, several series of one vendor's style, each on its
own grid, in classic single-frame MR files (or Enhanced MR, or compressed, on request):

- localizer  one series, three stacks (3 axial, 3 sagittal, 3 coronal images)
- t1         2D axial, 5 mm slices with a 1 mm gap (distance factor 20 %), 0.9 mm in-plane
- t2         2D axial, 4 mm slices, a rectangular field of view (224 columns x 256 rows)
- flair      2D, 5 mm slices, tilted 10 degrees about the left-right axis (oblique orientation)
- dwi        2D axial, 5 mm, b0 and b1000 images at the same positions (duplicate positions)
- adc        the ADC map derived from the dwi, same grid
- t1ce       3D, 1 mm isotropic: the BraTS t1ce on its own grid, with a contrast agent, acquired last

The BraTS volumes are co-registered, so all series share one FrameOfReferenceUID and every series
samples the same anatomy: its pixels are the BraTS volume resampled (linear) onto the series grid;
dwi and adc pixels are derived from the t2 and flair intensities. `BuiltStudy.truth` holds the expert
labels on the t1ce grid. Every `BuiltSeries.grid` is exact: SimpleITK's reader gives it back.

Geometry. Arrays are (i, j, k) with `Grid.affine` voxel -> RAS+ mm; DICOM's world is LPS =
diag(-1, -1, 1) RAS. Slice k is the frame `volume[:, :, k].T` (rows = j, columns = i);
ImageOrientationPatient = the LPS unit directions of axes i and j; ImagePositionPatient = the LPS
position of voxel (0, 0, k); PixelSpacing = (spacing along j, spacing along i). Axis k is always
i x j (in LPS) with slices written in increasing k, so readers that sort along the normal get k back.

Vendor styles (`VENDOR_STYLES`). Manufacturer, model, software, ImageType, ScanningSequence,
SequenceVariant, ScanOptions and the enhanced-file structure of Siemens (XA30: classic
"interoperability" files and Enhanced MR), GE (incl. its private pulse-sequence names and DWI b-value
tag) and Philips follow the real headers in ../shared/data/dicom-vendors (dcm2niix test data). That
corpus has no T2, FLAIR or post-contrast series and no Canon or United Imaging files: those series
names (`t2_tirm_tra_dark-fluid`, `Ax T2 FLAIR`, `T2W_FLAIR`, `FLAIR_AX`, `t1_gre_fsp_3d_tra_+C`, ...),
the Canon / United Imaging headers and the non-Siemens ADC ImageType (DERIVED/PRIMARY/DIFFUSION/ADC)
are plausible, not copied. Used by the DICOM study tests and bench scripts (which put tests/core on
sys.path, as for raw_builders.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from pydicom.valuerep import DSfloat

from brainseg_gui.core.resample import resample_to_grid
from brainseg_gui.core.study import SEQUENCES, Grid

MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
ENHANCED_MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.1")
#: `compress` names -> transfer syntaxes pydicom 3 can encode (pylibjpeg-openjpeg, pyjpegls, native RLE).
COMPRESSIONS: dict[str, UID] = {
    "jpeg2000": JPEG2000Lossless,
    "jpeg-ls-lossless": JPEGLSLossless,
    "rle": RLELossless,
}
VENDORS = ("siemens", "ge", "philips", "canon", "united")
#: Series in acquisition order (localizer first, the post-contrast T1 last).
SERIES_ORDER = ("localizer", "t1", "t2", "flair", "dwi", "adc", "t1ce")
#: Minutes after the study start at which each series starts.
START_MINUTES = {"localizer": 0.0, "t1": 1.5, "t2": 5.0, "flair": 8.5, "dwi": 13.0, "adc": 13.0, "t1ce": 18.0}
#: Slices kept of the t1ce (around the tumour) with `thin=True`.
THIN_SLICES = 40
FLAIR_TILT_DEGREES = 10.0
B_VALUE = 1000.0
LPS = np.diag([-1.0, -1.0, 1.0])
Vector = Sequence[float] | np.ndarray
STUDY_DATE = "20240315"
STUDY_TIME_S = 8 * 3600 + 12 * 60  # 08:12:00


# -- what was built ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltSeries:
    """One written series and the truth about it."""

    key: str  # 't1', 't1ce', 't2', 'flair', 'localizer', 'dwi', 'adc'
    true_class: str  # 't1', 't1ce', 't2', 'flair' or 'other'
    series_uid: str
    series_number: int
    description: str
    files: tuple[Path, ...]
    grid: Grid | None  # the voxel grid the series samples (None for the multi-stack localizer)


@dataclass(frozen=True)
class BuiltStudy:
    """The written study: its folder, UIDs, series, and the labels on the t1ce grid."""

    root: Path
    study_uid: str
    series: tuple[BuiltSeries, ...]
    truth: np.ndarray  # BraTS labels (0, 1, 2, 4), nearest neighbour onto the t1ce series grid
    truth_grid: Grid  # == the t1ce series grid

    def get(self, key: str) -> BuiltSeries:
        """The series built for `key` ('t1ce', 'dwi', ...)."""
        for series in self.series:
            if series.key == key:
                return series
        raise KeyError(f"no series {key!r}; built {[s.key for s in self.series]}")

    @property
    def files(self) -> list[Path]:
        return [path for series in self.series for path in series.files]


# -- the real case -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BratsCase:
    """A BraTS case in memory: float32 images by sequence, labels, their common grid."""

    case_id: str
    images: Mapping[str, np.ndarray]
    labels: np.ndarray
    grid: Grid

    @functools.cached_property
    def brain_box_world(self) -> tuple[np.ndarray, np.ndarray]:
        """RAS corners (min, max) of the non-zero t1ce region: where the fields of view are centred."""
        hits = np.argwhere(self.images["t1ce"] > 0)
        corners = np.array([[*hits.min(axis=0), 1.0], [*hits.max(axis=0), 1.0]]) @ self.grid.affine.T
        return corners[:, :3].min(axis=0), corners[:, :3].max(axis=0)


@functools.lru_cache(maxsize=2)
def load_case(case_dir: Path) -> BratsCase:
    """Read a BraTS 2017-21 case folder (cached: tests build several variants of one case)."""
    case_dir = Path(case_dir)
    images, affine = {}, None
    for name in SEQUENCES:
        image: Any = nib.load(case_dir / f"{case_dir.name}_{name}.nii.gz")
        images[name] = np.asarray(image.dataobj, dtype=np.float32)
        affine = np.array(image.affine)
    seg: Any = nib.load(case_dir / f"{case_dir.name}_seg.nii.gz")
    labels = np.asarray(seg.dataobj).astype(np.uint8)
    assert affine is not None
    return BratsCase(case_dir.name, images, labels, Grid(labels.shape, affine))


# -- grids ---------------------------------------------------------------------------------------


def oriented_grid(centre_ras: Vector, row_lps: Vector, column_lps: Vector,
                  spacing: tuple[float, float, float], shape: tuple[int, int, int]) -> Grid:
    """A grid centred on `centre_ras` whose axis i runs along a row, j down a column, k = i x j (LPS).

    The affine is built in LPS (columns = unit direction times spacing) and turned into RAS, so the
    DICOM tags written from it (orientation, position, spacing) describe exactly this grid.
    """
    i_dir = np.asarray(row_lps, dtype=np.float64)
    j_dir = np.asarray(column_lps, dtype=np.float64)
    i_dir, j_dir = i_dir / np.linalg.norm(i_dir), j_dir / np.linalg.norm(j_dir)
    k_dir = np.cross(i_dir, j_dir)
    linear = LPS @ np.column_stack([i_dir, j_dir, k_dir]) @ np.diag(spacing)
    half = (np.asarray(shape, dtype=np.float64) - 1) / 2
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = np.asarray(centre_ras, dtype=np.float64) - linear @ half
    return Grid(shape, affine)


def _slice_count(extent_mm: float, step_mm: float) -> int:
    return int(np.ceil(extent_mm / step_mm)) + 1


def _tilted(degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column LPS directions of an axial plane tilted about the left-right axis (AC-PC style)."""
    angle = np.radians(degrees)
    return np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(angle), -np.sin(angle)])


#: In-plane layout per series: (columns, rows, pixel mm), slice thickness and slice step (mm).
LAYOUT: dict[str, tuple[int, int, float, float, float]] = {
    "t1": (256, 256, 0.9, 5.0, 6.0),
    "t2": (224, 256, 0.9, 4.0, 4.0),
    "flair": (256, 256, 0.9, 5.0, 5.0),
    "dwi": (128, 128, 1.8, 5.0, 6.0),
}


def series_grids(case: BratsCase, *, thin: bool) -> tuple[dict[str, Grid], list[Grid]]:
    """The grid of every series (adc shares the dwi's) and the three localizer stacks.

    The 2D series cover the brain's height (or, thin, the t1ce slab) centred on the brain; the t1ce
    is the BraTS grid itself, or with `thin` a slab of THIN_SLICES slices through the tumour.
    """
    t1ce = case.grid
    if thin:
        k_tumour = int(np.argwhere(case.labels > 0)[:, 2].mean()) if case.labels.any() else t1ce.shape[2] // 2
        k0 = int(np.clip(k_tumour - THIN_SLICES // 2, 0, max(t1ce.shape[2] - THIN_SLICES, 0)))
        shift = np.eye(4)
        shift[2, 3] = k0
        t1ce = Grid((*t1ce.shape[:2], min(THIN_SLICES, t1ce.shape[2])), t1ce.affine @ shift)
    low, high = case.brain_box_world
    if thin:
        low, high = t1ce.world_bounds()
    centre = (case.brain_box_world[0] + case.brain_box_world[1]) / 2
    centre[2] = (low[2] + high[2]) / 2
    height = high[2] - low[2]
    grids = {"t1ce": t1ce}
    for key, (columns, rows, pixel, _thickness, step) in LAYOUT.items():
        row_dir, column_dir = _tilted(FLAIR_TILT_DEGREES if key == "flair" else 0.0)
        shape = (columns, rows, _slice_count(height, step))
        grids[key] = oriented_grid(centre, row_dir, column_dir, (pixel, pixel, step), shape)
    grids["adc"] = grids["dwi"]
    brain_centre = (case.brain_box_world[0] + case.brain_box_world[1]) / 2
    stacks = [oriented_grid(brain_centre, row, column, (1.0, 1.0, 20.0), (256, 256, 3))
              for row, column in (((1, 0, 0), (0, 1, 0)),  # axial
                                  ((0, 1, 0), (0, 0, -1)),  # sagittal
                                  ((1, 0, 0), (0, 0, -1)))]  # coronal
    return grids, stacks


# -- pixels --------------------------------------------------------------------------------------


def _resampled(case: BratsCase, name: str, grid: Grid) -> np.ndarray:
    return np.maximum(resample_to_grid(case.images[name], case.grid, grid), 0.0)


def adc_map(case: BratsCase, grid: Grid) -> np.ndarray:
    """A plausible ADC (mm^2/s) on `grid`: ~0.7e-3 in tissue, up to 3e-3 in CSF (T2 bright, FLAIR dark)."""
    t2, flair = _resampled(case, "t2", grid), _resampled(case, "flair", grid)
    brain = case.images["t2"] > 0
    t2n = t2 / np.percentile(case.images["t2"][brain], 99)
    flair_n = flair / np.percentile(case.images["flair"][brain], 99)
    water = np.clip((t2n - flair_n) / 0.6, 0.0, 1.0)
    oedema = np.clip((flair_n - 0.6) / 0.4, 0.0, 1.0)  # vasogenic oedema: raised ADC
    adc = 0.7e-3 + 2.3e-3 * water + 0.5e-3 * oedema
    return np.where(t2 > 0, adc, 0.0)


def series_pixels(case: BratsCase, key: str, grid: Grid) -> np.ndarray:
    """The (i, j, k) values a series stores on `grid` (before rounding); for 'dwi' the b0 images."""
    if key in SEQUENCES:
        return _resampled(case, key, grid)
    if key == "localizer":
        return _resampled(case, "t1", grid)
    if key == "adc":
        return adc_map(case, grid) * 1e6  # stored in units of 1e-6 mm^2/s, as scanners do
    if key == "dwi":
        return dwi_pixels(case, grid)[0]
    raise ValueError(f"no pixels for series {key!r}")


def dwi_pixels(case: BratsCase, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(b0, b1000) on `grid`: b0 is T2-weighted, b1000 = b0 exp(-b ADC)."""
    b0 = 0.8 * _resampled(case, "t2", grid)
    return b0, b0 * np.exp(-B_VALUE * adc_map(case, grid))


def stored(values: np.ndarray, signed: bool) -> np.ndarray:
    """Rounded to the stored integer type: int16 (GE) or uint16 (the others)."""
    dtype, top = (np.int16, 32767) if signed else (np.uint16, 65535)
    return np.clip(np.rint(values), 0, top).astype(dtype)


# -- vendor styles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """The header values that name and describe one series' acquisition."""

    description: str
    sequence_name: str
    scanning: str | list[str]
    variant: str | list[str]
    options: str | list[str]
    image_type: list[str]
    tr: float
    te: float
    ti: float | None = None
    flip: float = 90.0
    echo_train: int = 1
    protocol: str | None = None  # ProtocolName when it differs from the description
    private: Mapping[str, str] = field(default_factory=dict)  # GE pulse sequence names
    pulse: str = ""  # the enhanced file's PulseSequenceName where SequenceName is empty (Philips)


@dataclass(frozen=True)
class Vendor:
    """A manufacturer's scanner, how it numbers and types its images, and its protocol names."""

    manufacturer: str
    model: str
    software: str | list[str]
    field_t: float
    frequency: float
    coil: str
    signed: bool  # GE stores signed 16-bit pixels
    series_step: int  # SeriesNumber step (Philips numbers 101, 201, ...)
    series_offset: int
    contrast: tuple[str, float]  # ContrastBolusAgent, ContrastBolusVolume (ml)
    frame_type: list[str]  # enhanced FrameType / top-level ImageType
    acquisition_contrast: str
    protocols: Mapping[str, Protocol]


_SIEMENS_M = ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D", "MFSPLIT"]
_LOCALIZER = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
_ADC = ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]
_GE = ["ORIGINAL", "PRIMARY", "OTHER"]
_GE_SE = ["SAT_GEMS", "EDR_GEMS", "FILTERED_GEMS", "ACC_GEMS"]
_GE_FSE = ["FAST_GEMS", "EDR_GEMS", "TRF_GEMS", "FILTERED_GEMS", "ACC_GEMS"]
_PHILIPS_SE = ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"]
_CANON = ["ORIGINAL", "PRIMARY", "OTHER"]
_UIH = ["ORIGINAL", "PRIMARY", "M", "NORM"]

VENDOR_STYLES: dict[str, Vendor] = {
    "siemens": Vendor(
        "Siemens Healthineers", "MAGNETOM Vida", "syngo MR XA30", 3.0, 123.25, "HeadNeck_20", False, 1, 0,
        ("Gadovist 1.0 mmol/ml", 7.5), ["ORIGINAL", "PRIMARY", "M", "NONE"], "UNKNOWN", {
            "localizer": Protocol("localizer", "*fl2d1", "GR", ["SP", "OSP"], "", _LOCALIZER, 8.6, 4.0,
                                  flip=20),
            "t1": Protocol("t1_se_tra", "*se2d1", "SE", ["SK", "SP", "OSP"], "SAT1", _SIEMENS_M, 500, 10),
            "t2": Protocol("t2_tse_tra", "*tse2d1_15", "SE", ["SK", "SP", "OSP"], ["SAT1", "PFP"],
                           _SIEMENS_M, 4000, 100, flip=150, echo_train=15),
            "flair": Protocol("t2_tirm_tra_dark-fluid", "*tir2d1_16", ["SE", "IR"], ["SK", "SP", "MP", "OSP"],
                              ["IR", "PFP"], _SIEMENS_M, 9000, 90, ti=2500, flip=150, echo_train=16),
            "dwi": Protocol("ep2d_diff_tra", "*ep_b0", "EP", ["SK", "SP"], ["PFP", "FS"],
                            ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "MFSPLIT"], 5200, 73,
                            echo_train=64),
            "adc": Protocol("ep2d_diff_tra_ADC", "*ep_b0_1000", "EP", ["SK", "SP"], ["PFP", "FS"],
                            [*_ADC, "ND", "MFSPLIT"], 5200, 73, echo_train=64, protocol="ep2d_diff_tra"),
            "t1ce": Protocol("t1_mprage_tra_p2_iso_KM", "*tfl3d1_16ns", ["GR", "IR"], ["SK", "SP", "MP"],
                             ["IR", "PFP"], _SIEMENS_M, 2300, 2.98, ti=900, flip=9),
        }),
    "ge": Vendor(
        "GE MEDICAL SYSTEMS", "SIGNA Premier", ["29", "LX", "RX29.1_R01_2111.a"], 3.0, 127.76, "48HN", True,
        1, 0, ("GADAVIST", 7.5), ["ORIGINAL", "PRIMARY", "OTHER", "NONE"], "UNKNOWN", {
            "localizer": Protocol("3-Plane Localizer", "", "SE", "SK",
                                  ["FAST_GEMS", "EDR_GEMS", "SEQ_GEMS", "TRF_GEMS", "SS_GEMS", "ACC_GEMS",
                                   "PFP"], _GE, 1000, 81, private={"": "ssfse", "internal": "SSFSE"}),
            "t1": Protocol("Ax T1 SE", "", "SE", "SK", _GE_SE, _GE, 500, 10, private={"": "se"}),
            "t2": Protocol("Ax T2 FRFSE", "", "SE", "SK", _GE_FSE, _GE, 4000, 100, flip=111, echo_train=16,
                           private={"": "frfse"}),
            "flair": Protocol("Ax T2 FLAIR", "", ["SE", "IR"], ["SK", "MP"], [*_GE_FSE, "IR_GEMS"], _GE,
                              9000, 90, ti=2500, flip=160, echo_train=20, private={"": "fse-ir"}),
            "dwi": Protocol("Ax DWI", "", ["EP", "SE"], "NONE", ["EPI_GEMS", "ACC_GEMS", "PFF", "FS"], _GE,
                            6000, 80, echo_train=1, private={"": "epi2"}),
            "adc": Protocol("Apparent Diffusion Coefficient (mm2/s)", "", ["EP", "SE"], "NONE",
                            ["EPI_GEMS", "ACC_GEMS", "PFF", "FS"], _ADC, 6000, 80, private={"": "epi2"}),
            "t1ce": Protocol("3D Ax T1 BRAVO +C", "", "GR", ["SS", "SP", "SK"],
                             ["FAST_GEMS", "EDR_GEMS", "ACC_GEMS"], _GE, 8.2, 3.2, ti=450, flip=12,
                             private={"": "efgre3d", "internal": "EFGRE3D"}),
        }),
    "philips": Vendor(
        "Philips", "Ingenia Elition X", ["5.7.1", "5.7.1.3"], 3.0, 127.78, "MULTI COIL", False, 100, 1,
        ("Gadovist", 7.5), ["ORIGINAL", "PRIMARY", "T1", "NONE"], "T1", {
            "localizer": Protocol("Survey", "", "GR", "SS", "OTHER", _LOCALIZER, 11, 4.6, flip=15),
            "t1": Protocol("T1W_SE", "", "SE", "SK", "OTHER", _PHILIPS_SE, 500, 10),
            "t2": Protocol("T2W_TSE", "", "SE", "SK", "OTHER", _PHILIPS_SE, 4000, 100, echo_train=15),
            "flair": Protocol("T2W_FLAIR", "", ["SE", "IR"], ["SK", "MP"], "OTHER",
                              ["ORIGINAL", "PRIMARY", "M_IR", "M", "IR"], 9000, 90, ti=2500, echo_train=20),
            "dwi": Protocol("DWI", "", "SE", "SK", "FS", _PHILIPS_SE, 5000, 70, echo_train=55),
            "adc": Protocol("dADC", "", "SE", "SK", "FS", _ADC, 5000, 70, echo_train=55, protocol="DWI"),
            "t1ce": Protocol("T1W_3D_TFE_+C", "", "GR", "MP", "OTHER", ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"],
                             6.5, 2.93, flip=9, echo_train=240, pulse="TFE"),
        }),
    "canon": Vendor(
        "CANON_MEC", "Vantage Orian", "V8.0", 1.5, 63.86, "Head SPEEDER", False, 100, 0,
        ("GADOVIST", 7.5), ["ORIGINAL", "PRIMARY", "MR", "NONE"], "T1", {
            "localizer": Protocol("Locator", "FE2D", "GR", "SP", "", _LOCALIZER, 7.5, 3.4, flip=20),
            "t1": Protocol("T1_SE_AX", "SE2D", "SE", "SK", "", _CANON, 500, 10),
            "t2": Protocol("T2_FSE_AX", "FSE2D", "SE", "SK", "", _CANON, 4000, 100, echo_train=15),
            "flair": Protocol("FLAIR_AX", "FLAIR2D", ["SE", "IR"], ["SK", "MP"], "", _CANON, 9000, 90, ti=2500,
                              echo_train=20),
            "dwi": Protocol("DWI_AX", "EPI2D", "EP", "SK", "", _CANON, 5000, 85, echo_train=60),
            "adc": Protocol("ADC_AX", "EPI2D", "EP", "SK", "", _ADC, 5000, 85, echo_train=60,
                            protocol="DWI_AX"),
            "t1ce": Protocol("T1_3D_MPRAGE_AX_+C", "FE3D", ["GR", "IR"], ["SK", "SP", "MP"], "", _CANON,
                             1900, 2.8, ti=900, flip=9),
        }),
    "united": Vendor(
        "UIH", "uMR 780", "R005", 3.0, 127.73, "H24", False, 1, 0,
        ("Gadovist", 7.5), ["ORIGINAL", "PRIMARY", "M", "NONE"], "T1", {
            "localizer": Protocol("localizer", "gre", "GR", "SP", "", _LOCALIZER, 8.0, 3.0, flip=20),
            "t1": Protocol("t1_se_tra", "se", "SE", "SK", "", _UIH, 500, 10),
            "t2": Protocol("t2_fse_tra", "fse", "SE", "SK", "", _UIH, 4000, 100, echo_train=15),
            "flair": Protocol("t2_flair_tra", "fse_ir", ["SE", "IR"], ["SK", "MP"], "", _UIH, 9000, 90,
                              ti=2500, echo_train=20),
            "dwi": Protocol("epi_dwi_tra", "epi_dwi", "EP", "SK", "", ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"],
                            5000, 75, echo_train=64),
            "adc": Protocol("epi_dwi_tra_ADC", "epi_dwi", "EP", "SK", "", _ADC, 5000, 75, echo_train=64,
                            protocol="epi_dwi_tra"),
            "t1ce": Protocol("t1_gre_fsp_3d_tra_+C", "gre_fsp", ["GR", "IR"], ["SK", "SP", "MP"], "", _UIH,
                             7.5, 3.0, ti=900, flip=10),
        }),
}

TRUE_CLASS = {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"}


# -- writing -------------------------------------------------------------------------------------


def _ds(value: float) -> DSfloat:
    """A DS of at most 16 characters: '9000', '0.9', '0.98480775301221' (geometry exact to 1e-9 mm)."""
    value = round(float(value), 9) + 0.0  # + 0.0: no '-0'
    if value.is_integer():
        return DSfloat(str(int(value)))
    return DSfloat(value, auto_format=True)


def _time(seconds: float) -> str:
    seconds = seconds % 86400
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours):02d}{int(minutes):02d}{secs:09.6f}"


@dataclass(frozen=True)
class Frame:
    """One 2D image: its stored pixels (rows, columns), position, orientation and per-image extras."""

    pixels: np.ndarray
    grid: Grid
    k: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    def geometry(self) -> dict[str, Any]:
        """Orientation, position and spacing of slice k of the grid, in DICOM (LPS) terms."""
        lps = LPS @ self.grid.affine[:3, :3]
        spacing = np.sqrt((lps**2).sum(axis=0))
        units = lps / spacing
        position = LPS @ (self.grid.affine[:3, :3] @ np.array([0.0, 0.0, self.k]) + self.grid.affine[:3, 3])
        normal = np.cross(units[:, 0], units[:, 1])
        return {
            "ImageOrientationPatient": [_ds(v) for v in (*units[:, 0], *units[:, 1])],
            "ImagePositionPatient": [_ds(v) for v in position],
            "PixelSpacing": [_ds(spacing[1]), _ds(spacing[0])],
            "SliceLocation": _ds(round(float(position @ normal), 6)),
        }


def _frames(volume: np.ndarray, grid: Grid, extra: Mapping[str, Any] | None = None) -> list[Frame]:
    return [Frame(np.ascontiguousarray(volume[:, :, k].T), grid, k, extra or {}) for k in range(grid.shape[2])]


class _Writer:
    """Writes the series of one study: shared patient/study attributes, UIDs, file names, layout."""

    def __init__(self, out: Path, vendor: Vendor, study_uid: str, patient_id: str, *, file_names: str,
                 nested: bool) -> None:
        self.out, self.vendor, self.study_uid, self.patient_id = out, vendor, study_uid, patient_id
        self.file_names, self.nested = file_names, nested
        self.frame_of_reference = generate_uid(entropy_srcs=[study_uid, "frame of reference"])
        self.flat_count = 0
        digits = int(re.sub(r"\D", "", study_uid)[-7:] or "0")
        self.accession = f"A{digits:07d}"

    def uid(self, *parts: object) -> str:
        return generate_uid(entropy_srcs=[self.study_uid, *map(str, parts)])

    def common(self, key: str, protocol: Protocol, series_uid: str, number: int, start_s: float,
               dimension: str) -> dict[str, Any]:
        """Attributes every image of a series shares (patient, study, series, equipment, sequence)."""
        vendor = self.vendor
        attrs: dict[str, Any] = {
            "SpecificCharacterSet": "ISO_IR 100",
            "StudyDate": STUDY_DATE, "SeriesDate": STUDY_DATE, "AcquisitionDate": STUDY_DATE,
            "ContentDate": STUDY_DATE, "StudyTime": _time(STUDY_TIME_S), "SeriesTime": _time(start_s),
            "AcquisitionTime": _time(start_s), "AccessionNumber": self.accession, "Modality": "MR",
            "Manufacturer": vendor.manufacturer, "InstitutionName": "BrainSeg Test Hospital",
            "ReferringPhysicianName": "", "StationName": "MRC12345", "StudyDescription": "MR BRAIN W WO CONTRAST",
            "SeriesDescription": protocol.description, "ManufacturerModelName": vendor.model,
            "PatientName": "Test^BrainSeg", "PatientID": self.patient_id, "PatientBirthDate": "",
            "PatientSex": "O", "BodyPartExamined": "BRAIN", "ScanningSequence": protocol.scanning,
            "SequenceVariant": protocol.variant, "ScanOptions": protocol.options, "MRAcquisitionType": dimension,
            "SequenceName": protocol.sequence_name, "RepetitionTime": _ds(protocol.tr),
            "EchoTime": _ds(protocol.te), "NumberOfAverages": _ds(1), "ImagingFrequency": _ds(vendor.frequency),
            "ImagedNucleus": "1H", "EchoNumbers": "1", "MagneticFieldStrength": _ds(vendor.field_t),
            "EchoTrainLength": protocol.echo_train, "SoftwareVersions": vendor.software,
            "ProtocolName": protocol.protocol or protocol.description, "ReceiveCoilName": vendor.coil,
            "FlipAngle": _ds(protocol.flip), "PatientPosition": "HFS", "StudyInstanceUID": self.study_uid,
            "SeriesInstanceUID": series_uid, "StudyID": "1", "SeriesNumber": number, "AcquisitionNumber": 1,
            "FrameOfReferenceUID": self.frame_of_reference, "PositionReferenceIndicator": "",
            "SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2",
            "RescaleIntercept": _ds(0), "RescaleSlope": _ds(1), "RescaleType": "US",
        }
        if protocol.ti is not None:
            attrs["InversionTime"] = _ds(protocol.ti)
        if key == "t1ce":
            agent, volume = vendor.contrast
            attrs.update(ContrastBolusAgent=agent, ContrastBolusRoute="IV", ContrastBolusVolume=_ds(volume),
                         ContrastBolusIngredient="GADOLINIUM",
                         ContrastBolusStartTime=_time(start_s - 60), ContrastBolusIngredientConcentration=_ds(1.0))
        return attrs

    def pixel_format(self, frames: Sequence[Frame]) -> dict[str, Any]:
        top = max((int(f.pixels.max()) for f in frames), default=0)
        bits = 16 if self.vendor.signed or top > 4095 else 12
        values = np.concatenate([f.pixels.ravel()[::7] for f in frames]) if frames else np.zeros(1)
        low, high = np.percentile(values, [1, 99.5])
        return {"BitsAllocated": 16, "BitsStored": bits, "HighBit": bits - 1,
                "PixelRepresentation": int(self.vendor.signed),
                "WindowCenter": _ds(round((low + high) / 2)), "WindowWidth": _ds(round(max(high - low, 1)))}

    def path_for(self, series_index: int, number_in_series: int, sop_uid: str) -> Path:
        folder = self.out / "DICOM"
        count = number_in_series
        if self.nested:
            folder = folder / "PA000000" / "ST000000" / f"SE{series_index:06d}"
        else:
            self.flat_count += 1
            count = self.flat_count
        name = {"uid": sop_uid, "numbered": f"IM{count:05d}", "dcm": f"{count}.dcm"}[self.file_names]
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def save(self, ds: Dataset, sop_class: UID, path: Path, compression: str | None) -> None:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        if compression is not None:
            ds.compress(COMPRESSIONS[compression])
        ds.save_as(path, enforce_file_format=True)


def _dataset(attrs: Mapping[str, Any]) -> Dataset:
    ds = Dataset()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def _item(**attrs: Any) -> Dataset:
    return _dataset(attrs)


def _classic(writer: _Writer, key: str, series_index: int, common: Mapping[str, Any], frames: Sequence[Frame],
             drop: set[int], compression: str | None, start_s: float, series_uid: str) -> list[Path]:
    """One MR Image Storage file per frame; frames whose index is in `drop` are left out."""
    fmt = writer.pixel_format(frames)
    paths: list[Path] = []
    for index, frame in enumerate(frames):
        if index in drop:
            continue
        sop_uid = writer.uid(series_uid, index)
        ds = _dataset({**common, **fmt, **frame.geometry()})
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = index + 1
        ds.ContentTime = _time(start_s + 30 + 0.1 * index)
        ds.SliceThickness = _ds(frame.extra.get("thickness", 1.0))
        if "step" in frame.extra:
            ds.SpacingBetweenSlices = _ds(frame.extra["step"])
        for keyword, value in frame.extra.items():
            if keyword[0].isupper():
                setattr(ds, keyword, value)
        for tag, vr, value in frame.extra.get("private", ()):
            ds.add_new(tag, vr, value)
        ds.Rows, ds.Columns = frame.pixels.shape
        ds.PixelData = frame.pixels.tobytes()
        path = writer.path_for(series_index, len(paths) + 1, sop_uid)
        writer.save(ds, MR_IMAGE_STORAGE, path, compression)
        paths.append(path)
    return paths


#: Top-level attributes of a classic file that an Enhanced MR file keeps in functional groups instead.
_PER_FRAME_IN_ENHANCED = ("RepetitionTime", "EchoTime", "InversionTime", "FlipAngle", "EchoTrainLength",
                          "NumberOfAverages", "RescaleIntercept", "RescaleSlope", "RescaleType", "SequenceName",
                          "ScanningSequence", "SequenceVariant", "ScanOptions", "EchoNumbers", "ImagingFrequency",
                          "ReceiveCoilName", "AcquisitionTime", "AcquisitionDate")


def _enhanced(writer: _Writer, key: str, series_index: int, common: Mapping[str, Any], frames: Sequence[Frame],
              drop: set[int], compression: str | None, start_s: float, series_uid: str,
              protocol: Protocol) -> list[Path]:
    """One Enhanced MR Image Storage file holding every kept frame (structure of the XA30 enhanced files)."""
    vendor = writer.vendor
    kept = [frame for index, frame in enumerate(frames) if index not in drop]
    fmt = writer.pixel_format(kept)
    attrs = {k: v for k, v in common.items() if k not in _PER_FRAME_IN_ENHANCED}
    ds = _dataset({**attrs, **{k: v for k, v in fmt.items() if not k.startswith("Window")}})
    sop_uid = writer.uid(series_uid, "enhanced")
    acquisition = f"{STUDY_DATE}{_time(start_s)}"
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = 1
    ds.ContentTime = _time(start_s + 30)
    ds.AcquisitionDateTime = acquisition
    ds.AcquisitionDuration = 300.0
    ds.ImageType = vendor.frame_type
    ds.PixelPresentation, ds.VolumetricProperties = "MONOCHROME", "VOLUME"
    ds.VolumeBasedCalculationTechnique, ds.ComplexImageComponent = "NONE", "MAGNITUDE"
    ds.AcquisitionContrast, ds.ContentQualification = vendor.acquisition_contrast, "PRODUCT"
    ds.ResonantNucleus, ds.KSpaceFiltering, ds.ApplicableSafetyStandardAgency = "1H", "NONE", "IEC"
    ds.PulseSequenceName = protocol.sequence_name or protocol.pulse or protocol.private.get("", "")
    ds.EchoPulseSequence = "GRADIENT" if "GR" in protocol.scanning else "SPIN"
    for keyword in ("MultiPlanarExcitation", "PhaseContrast", "TimeOfFlightContrast", "EchoPlanarPulseSequence",
                    "SaturationRecovery"):
        setattr(ds, keyword, "NO")
    ds.SteadyStatePulseSequence, ds.SpectrallySelectedSuppression, ds.OversamplingPhase = "NONE", "NONE", "NONE"
    ds.GeometryOfKSpaceTraversal, ds.SegmentedKSpaceTraversal = "RECTILINEAR", "SINGLE"
    ds.RectilinearPhaseEncodeReordering, ds.CoverageOfKSpace, ds.NumberOfKSpaceTrajectories = "LINEAR", "FULL", 1
    ds.PresentationLUTShape, ds.BurnedInAnnotation, ds.LossyImageCompression = "IDENTITY", "NO", "00"
    if "ContrastBolusAgent" in common:
        ds.ContrastBolusAgentSequence = [_item(
            CodeValue="GADOBUTROL", CodingSchemeDesignator="99LOCAL", CodeMeaning=common["ContrastBolusAgent"],
            ContrastBolusAgentNumber=1, ContrastBolusVolume=common["ContrastBolusVolume"],
            ContrastBolusIngredientConcentration=_ds(1.0),
            ContrastBolusIngredientCodeSequence=[_item(CodeValue="C-17800", CodingSchemeDesignator="SRT",
                                                       CodeMeaning="Gadolinium")],
            ContrastBolusAdministrationRouteSequence=[_item(CodeValue="G-D101", CodingSchemeDesignator="SRT",
                                                            CodeMeaning="Intravenous route")])]
    organisation = writer.uid(series_uid, "dimensions")
    ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=organisation)]
    ds.DimensionIndexSequence = [
        _item(DimensionOrganizationUID=organisation, DimensionIndexPointer=0x00209056,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Stack ID"),
        _item(DimensionOrganizationUID=organisation, DimensionIndexPointer=0x00209057,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="In-Stack Position Number"),
    ]
    geometry = kept[0].geometry()
    modifier = _item(InversionRecovery="YES" if protocol.ti is not None else "NO", FlowCompensation="NONE",
                     Spoiling="NONE", T2Preparation="NO", SpectrallySelectedExcitation="NONE",
                     SpatialPresaturation="NONE", PartialFourier="NO", ParallelAcquisition="NO")
    if protocol.ti is not None:
        modifier.InversionTimes = [float(protocol.ti)]
    first = kept[0].extra
    ds.SharedFunctionalGroupsSequence = [_item(
        PixelMeasuresSequence=[_item(SliceThickness=_ds(first.get("thickness", 1.0)),
                                     SpacingBetweenSlices=_ds(first.get("step", 1.0)),
                                     PixelSpacing=geometry["PixelSpacing"])],
        PlaneOrientationSequence=[_item(ImageOrientationPatient=geometry["ImageOrientationPatient"])],
        MRTimingAndRelatedParametersSequence=[_item(RepetitionTime=_ds(protocol.tr), FlipAngle=_ds(protocol.flip),
                                                    EchoTrainLength=protocol.echo_train, RFEchoTrainLength=0,
                                                    GradientEchoTrainLength=protocol.echo_train)],
        MREchoSequence=[_item(EffectiveEchoTime=float(protocol.te))],
        MRModifierSequence=[modifier],
        MRAveragesSequence=[_item(NumberOfAverages=_ds(1))],
        MRImageFrameTypeSequence=[_item(FrameType=vendor.frame_type, PixelPresentation="MONOCHROME",
                                        VolumetricProperties="VOLUME", VolumeBasedCalculationTechnique="NONE",
                                        ComplexImageComponent="MAGNITUDE",
                                        AcquisitionContrast=vendor.acquisition_contrast)],
        PixelValueTransformationSequence=[_item(RescaleIntercept=_ds(0), RescaleSlope=_ds(1), RescaleType="US")],
        FrameVOILUTSequence=[_item(WindowCenter=fmt["WindowCenter"], WindowWidth=fmt["WindowWidth"])],
        MRReceiveCoilSequence=[_item(ReceiveCoilName=vendor.coil, ReceiveCoilType="MULTICOIL")],
    )]
    if "ContrastBolusAgent" in common:
        ds.SharedFunctionalGroupsSequence[0].ContrastBolusUsageSequence = [_item(
            ContrastBolusAgentNumber=1, ContrastBolusAgentAdministered="YES", ContrastBolusAgentDetected="NO")]
    per_frame = []
    for position, frame in enumerate(kept, start=1):
        per_frame.append(_item(
            FrameContentSequence=[_item(FrameAcquisitionDateTime=acquisition, FrameReferenceDateTime=acquisition,
                                        FrameAcquisitionDuration=300000.0, StackID="1",
                                        InStackPositionNumber=position, DimensionIndexValues=[1, position])],
            PlanePositionSequence=[_item(ImagePositionPatient=frame.geometry()["ImagePositionPatient"])],
        ))
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.NumberOfFrames = len(kept)
    ds.Rows, ds.Columns = kept[0].pixels.shape
    ds.PixelData = np.stack([frame.pixels for frame in kept]).tobytes()
    path = writer.path_for(series_index, 1, sop_uid)
    writer.save(ds, ENHANCED_MR_IMAGE_STORAGE, path, compression)
    return [path]


# -- the study -----------------------------------------------------------------------------------


def _series_frames(case: BratsCase, key: str, grid: Grid | None, stacks: Sequence[Grid], vendor: Vendor,
                   protocol: Protocol) -> list[Frame]:
    """The frames of one series in InstanceNumber order, with per-image extras (thickness, b-value)."""
    signed = vendor.signed
    private = [((0x0019, 0x0010), "LO", "GEMS_ACQU_01")] if protocol.private else []
    if "" in protocol.private:
        private.append(((0x0019, 0x109C), "LO", protocol.private[""]))
    if "internal" in protocol.private:
        private.append(((0x0019, 0x109E), "LO", protocol.private["internal"]))
    extra: dict[str, Any] = {"thickness": 7.0, "private": private}
    if key == "localizer":
        return [frame for stack in stacks
                for frame in _frames(stored(series_pixels(case, key, stack), signed), stack, extra)]
    assert grid is not None
    if key == "t1ce":
        extra.update(thickness=grid.spacing[2], step=grid.spacing[2])
    else:
        _columns, _rows, _pixel, thickness, step = LAYOUT["dwi" if key == "adc" else key]
        extra.update(thickness=thickness, step=step)
    if key != "dwi":
        return _frames(stored(series_pixels(case, key, grid), signed), grid, extra)
    frames: list[Frame] = []
    siemens = vendor.manufacturer.startswith("Siemens")
    for b_value, volume in zip((0.0, B_VALUE), dwi_pixels(case, grid)):
        name = f"*ep_b{int(b_value)}{'t' if b_value else ''}" if siemens else protocol.sequence_name
        b_extra = {**extra, "DiffusionBValue": b_value, "SequenceName": name}
        if private:
            b_extra["private"] = [*private, ((0x0043, 0x0010), "LO", "GEMS_PARM_01"),
                                  ((0x0043, 0x1039), "IS", [int(b_value), 8, 0, 0])]
        frames += _frames(stored(volume, signed), grid, b_extra)
    return frames


def build_study(case_dir: Path, out: Path, *, vendor: str = "siemens", enhanced: tuple[str, ...] = (),
                compress: dict[str, str] | None = None, drop_slices: dict[str, list[int]] | None = None,
                file_names: str = "uid", nested: bool = True, study_uid: str | None = None,
                patient_id: str = "BRAINSEG-TEST", thin: bool = False) -> BuiltStudy:
    """Write the BraTS case in `case_dir` as a clinical MR study under `out` (see the module docstring).

    `enhanced` names series written as one Enhanced MR file; `compress` maps series to 'jpeg2000',
    'jpeg-ls-lossless' or 'rle'; `drop_slices` maps series to slice indices left out (a gap; for the
    dwi the index is the position, both b-values go). `file_names`: 'uid' (SOPInstanceUID, no
    extension), 'numbered' (IM00001) or 'dcm' (1.dcm). `nested`: DICOM/PA000000/ST000000/SE00000n/
    per series, else one flat DICOM/ folder with every series mixed. UIDs derive from `study_uid`
    (random when None), so a given study_uid rebuilds the same UIDs. `thin` keeps THIN_SLICES t1ce
    slices through the tumour and shortens the 2D series to that slab (fast tests).
    """
    if vendor not in VENDOR_STYLES:
        raise ValueError(f"unknown vendor {vendor!r}; expected one of {VENDORS}")
    if file_names not in ("uid", "numbered", "dcm"):
        raise ValueError(f"file_names must be 'uid', 'numbered' or 'dcm', got {file_names!r}")
    compress, drop_slices = dict(compress or {}), dict(drop_slices or {})
    unknown = (set(enhanced) | set(compress) | set(drop_slices)) - set(SERIES_ORDER)
    bad = {name for name in compress.values() if name not in COMPRESSIONS}
    if unknown or bad:
        raise ValueError(f"unknown series {sorted(unknown)} or compressions {sorted(bad)}")
    style = VENDOR_STYLES[vendor]
    case = load_case(Path(case_dir))
    grids, stacks = series_grids(case, thin=thin)
    study_uid = study_uid or generate_uid()
    writer = _Writer(Path(out), style, study_uid, patient_id, file_names=file_names, nested=nested)
    built = []
    for index, key in enumerate(SERIES_ORDER, start=1):
        protocol = style.protocols[key]
        number = index * style.series_step + style.series_offset
        if key == "adc":  # a derived series numbered after its source, as consoles do
            number = (index - 1) * style.series_step + style.series_offset + 1
        series_uid = writer.uid("series", key)
        start_s = STUDY_TIME_S + 60 * START_MINUTES[key] + (90 if key == "adc" else 0)
        grid = None if key == "localizer" else grids[key]
        common = writer.common(key, protocol, series_uid, number, start_s, "3D" if key == "t1ce" else "2D")
        common["ImageType"] = protocol.image_type
        frames = _series_frames(case, key, grid, stacks, style, protocol)
        drop = set(drop_slices.get(key, ()))
        if key == "dwi":  # an index names a position: both b-values go
            drop |= {k + len(frames) // 2 for k in drop}
        args = (writer, key, index, common, frames, drop, compress.get(key), start_s, series_uid)
        paths = _enhanced(*args, protocol) if key in enhanced else _classic(*args)
        built.append(BuiltSeries(key, TRUE_CLASS.get(key, "other"), series_uid, number, protocol.description,
                                 tuple(paths), grid))
    truth = resample_to_grid(case.labels, case.grid, grids["t1ce"], nearest=True)
    return BuiltStudy(Path(out), study_uid, tuple(built), truth, grids["t1ce"])


def read_frames(paths: Sequence[Path]) -> np.ndarray:
    """(i, j, k) pixels of single-frame files (in the order given) or of one multi-frame file, via pydicom."""
    if len(paths) == 1:
        ds = pydicom.dcmread(paths[0])
        if int(ds.get("NumberOfFrames", 1)) > 1:
            return np.ascontiguousarray(ds.pixel_array.transpose(2, 1, 0))
    return np.stack([pydicom.dcmread(path).pixel_array.T for path in paths], axis=2)
