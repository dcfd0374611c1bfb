"""Classing series from their headers: the naming of five vendors, the physics alone, the traps.

Headers are written here as the scanners write them (descriptions, TR/TE/TI, sequence types,
ImageType, contrast tags); no pixels are needed, so this runs without the shared data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from brainseg_gui.core.dicom_classify import choose, classify_series, classify_study
from brainseg_gui.core.dicom_geometry import check_stack
from brainseg_gui.core.dicom_index import (
    MR_IMAGE,
    DicomFrame,
    DicomSeries,
    DicomStack,
    DicomStudy,
    SeriesHeader,
)

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def series(description: str, tr: float | None, te: float | None, ti: float | None = None, *, scanning: str = "SE",
           acquisition: str = "2D", agent: str = "", image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M"),
           slices: int = 24, step: float = 5.0, number: int = 1, time: str = "", uid: str | None = None,
           modality: str = "MR", sop_class: str = MR_IMAGE, sequence_name: str = "") -> DicomSeries:
    frames = [DicomFrame(Path(f"/s{number}/{k}"), None, f"{number}.{k}", (0.0, 0.0, k * step), AXIAL, (0.9, 0.9),
                         256, 256, step, instance_number=k + 1) for k in range(slices)]
    header = SeriesHeader(modality=modality, sop_class_uid=sop_class, description=description,
                          sequence_name=sequence_name, scanning_sequence=scanning, acquisition_type=acquisition,
                          repetition_time=tr, echo_time=te, inversion_time=ti, contrast_agent=agent,
                          image_type=image_type, series_number=number, time=time)
    return DicomSeries(uid or f"1.2.{number}", "1.2", header, (DicomStack(*check_stack(frames)),), files=slices)


CASES = [
    # Siemens
    (("t1_mprage_sag_p2_iso", 2300, 2.98, 900), {"scanning": "GR\\IR", "acquisition": "3D"}, "t1"),
    (("t1_mprage_sag_p2_iso_KM", 2300, 2.98, 900), {"scanning": "GR\\IR", "acquisition": "3D"}, "t1ce"),
    (("t1_se_tra", 550, 8.4), {}, "t1"),
    (("t1_se_tra_KM", 550, 8.4), {}, "t1ce"),
    (("t1_fl2d_tra", 250, 2.5), {"scanning": "GR"}, "t1"),
    (("t1_vibe_fs_tra_post", 4.9, 2.4), {"scanning": "GR", "acquisition": "3D"}, "t1ce"),
    (("t2_tse_tra_512", 6000, 99), {}, "t2"),
    (("t2_tirm_tra_dark-fluid", 9000, 81, 2500), {"scanning": "SE\\IR"}, "flair"),
    (("t2_space_dark-fluid_sag_p2_iso", 5000, 387, 1800), {"acquisition": "3D"}, "flair"),
    (("ep2d_diff_3scan_trace_p2", 4000, 89), {"scanning": "EP"}, "other"),
    (("ep2d_diff_3scan_trace_p2_ADC", 4000, 89), {"scanning": "EP", "image_type": ("DERIVED", "PRIMARY", "DIFFUSION",
                                                                                "ADC")}, "other"),
    (("t2_swi3d_tra_1.5mm", 27, 20), {"scanning": "GR", "acquisition": "3D"}, "other"),
    (("t2_fl2d_tra_hemo", 700, 20), {"scanning": "GR"}, "other"),
    (("AAHead_Scout_32ch-head-coil", 3.15, 1.37), {"scanning": "GR", "acquisition": "3D"}, "other"),
    (("tof_fl3d_tra_p3", 21, 3.4), {"scanning": "GR", "acquisition": "3D"}, "other"),
    (("ep2d_perf_p2", 1500, 30), {"scanning": "EP"}, "other"),
    (("t1_mprage_sag_p2_iso_MPR_tra", 2300, 2.98, 900), {"image_type": ("DERIVED", "PRIMARY", "MPR")}, "other"),
    # GE
    (("Ax T1 SE", 500, 14), {}, "t1"),
    (("Sag T1 FLAIR", 2200, 9, 750), {"scanning": "SE\\IR"}, "t1"),
    (("Ax T2 FSE", 4500, 102), {}, "t2"),
    (("Ax T2 FRFSE", 4500, 102), {}, "t2"),
    (("Ax T2 FLAIR", 9000, 140, 2250), {"scanning": "SE\\IR"}, "flair"),
    (("Sag CUBE FLAIR", 6000, 120, 1800), {"acquisition": "3D"}, "flair"),
    (("PU:Ax T2 FLAIR", 9000, 140, 2250), {}, "flair"),
    (("Ax T2 GRE", 650, 20), {"scanning": "GR"}, "other"),
    (("Ax DWI 1000b", 6000, 80), {"scanning": "EP\\SE"}, "other"),
    (("Ax T1 +C", 500, 14), {}, "t1ce"),
    (("Ax T1 POST GAD", 500, 14), {}, "t1ce"),
    (("3D T1 BRAVO", 8.2, 3.2, 450), {"scanning": "GR\\IR", "acquisition": "3D"}, "t1"),
    (("Sag 3D BRAVO post gad", 8.2, 3.2, 450), {"scanning": "GR\\IR", "acquisition": "3D"}, "t1ce"),
    (("Ax SWAN", 40, 25), {"scanning": "GR", "acquisition": "3D"}, "other"),
    (("3-Plane Loc", 5, 1.5), {"scanning": "GR"}, "other"),
    (("ASSET Cal", 150, 1.5), {"scanning": "GR"}, "other"),
    # Philips
    (("T1W_SE", 550, 15), {}, "t1"),
    (("T1W_3D_TFE", 8.1, 3.7), {"scanning": "GR", "acquisition": "3D"}, "t1"),
    (("sT1W_3D_TFE_+C", 8.1, 3.7), {"scanning": "GR", "acquisition": "3D"}, "t1ce"),
    (("T1W_3D_TFE_Gd", 8.1, 3.7), {"scanning": "GR", "acquisition": "3D"}, "t1ce"),
    (("T2W_TSE", 3000, 80), {}, "t2"),
    (("T2W_FLAIR", 11000, 125, 2800), {"scanning": "SE\\IR"}, "flair"),
    (("3D Brain VIEW FLAIR SENSE", 4800, 310, 1650), {"acquisition": "3D"}, "flair"),
    (("DWI_SENSE", 3000, 70), {"scanning": "SE"}, "other"),
    (("dADC", 3000, 70), {"image_type": ("DERIVED", "PRIMARY", "ADC")}, "other"),
    (("Survey", 11, 4.6), {"scanning": "GR"}, "other"),
    (("SmartBrain", 3, 1), {"scanning": "GR"}, "other"),
    (("T2W_FFE", 700, 16), {"scanning": "GR"}, "other"),
    (("SWIp", 31, 7.2), {"scanning": "GR", "acquisition": "3D"}, "other"),
    (("T1W_IR", 2000, 15, 800), {"scanning": "SE\\IR"}, "t1"),
    # Canon (Toshiba)
    (("T1_SE_AX", 500, 10), {}, "t1"),
    (("T1_SE_AX_CE", 500, 10), {}, "t1ce"),
    (("T2_FSE_AX", 4000, 100), {}, "t2"),
    (("FLAIR_AX", 10000, 100, 2600), {}, "flair"),
    (("FLAIR_3D_SAG", 6000, 390, 2000), {"acquisition": "3D"}, "flair"),
    (("DWI_AX", 5000, 85), {"scanning": "EP"}, "other"),
    (("Locator", 20, 5), {"scanning": "GR"}, "other"),
    (("T2*_AX", 600, 18), {"scanning": "GR"}, "other"),
    (("T1_3D_MPRAGE_CE", 2200, 3, 1000), {"scanning": "GR\\IR", "acquisition": "3D"}, "t1ce"),
    # United Imaging
    (("t1_gre_fsp_3d_sag", 7, 3), {"scanning": "GR", "acquisition": "3D"}, "t1"),
    (("t1_gre_fsp_3d_sag_+C", 7, 3), {"scanning": "GR", "acquisition": "3D"}, "t1ce"),
    (("t2_fse_tra", 4000, 100), {}, "t2"),
    (("t2_flair_tra", 9000, 120, 2500), {}, "flair"),
    (("t1_flair_tra", 2000, 10, 800), {}, "t1"),
    (("dwi_b1000_tra", 5000, 80), {"scanning": "EP"}, "other"),
    (("t1_mprage_sag_post", 2000, 3, 900), {"acquisition": "3D"}, "t1ce"),
    # other languages, the physics alone, contrast from the tags
    (("T1 nativ tra", 500, 10), {}, "t1"),
    (("T1 mit KM tra", 500, 10), {}, "t1ce"),
    (("", 9000, 90, 2500), {}, "flair"),
    (("", 4000, 100), {}, "t2"),
    (("", 500, 10), {}, "t1"),
    (("", 500, 10), {"agent": "Gadovist"}, "t1ce"),
    (("Ax T1 SE", 500, 14), {"agent": "DOTAREM"}, "t1ce"),
    (("Ax T1 SE", 500, 14), {"agent": "NONE"}, "t1"),
    (("Ax T2 FLAIR", 9000, 140, 2250), {"agent": "Gadovist"}, "flair"),  # a post-contrast FLAIR is a FLAIR
    (("T2 map", 2000, 10), {}, "other"),
    (("epiRT IntAsc GD0", 2000, 30), {"scanning": "EP\\GR"}, "other"),
]


@pytest.mark.parametrize(("header", "extra", "expected"), CASES,
                         ids=[f"{c[0][0] or 'no description'}-{c[2]}" for c in CASES])
def test_vendor_naming_and_physics(header: tuple, extra: dict, expected: str) -> None:
    found = classify_series(series(*header, **extra))
    assert found.sequence == expected, (found.describe(), found.evidence)
    assert found.evidence


def test_not_mr_screen_captures_and_too_few_slices_are_other() -> None:
    assert classify_series(series("Ax T1 SE", 500, 14, modality="CT")).reason == "not MR (modality CT)"
    capture = classify_series(series("Ax T1 SE", 500, 14, sop_class="1.2.840.10008.5.1.4.1.1.7"))
    assert capture.reason == "screen capture or colour picture"
    assert classify_series(series("Ax T1 SE", 500, 14, slices=3)).reason == "too few slices"


def test_a_t1_after_the_contrast_series_is_after_contrast() -> None:
    """The acquisition order: a plain T1 acquired after a series carrying an agent is a T1ce."""
    pre = series("T1 3D", 2300, 3, 900, acquisition="3D", number=2, time="101000")
    dsc = series("ep2d_perf", 1500, 30, scanning="EP", agent="Gadovist", number=5, time="102000")
    post = series("T1 3D", 2300, 3, 900, acquisition="3D", number=7, time="103000")
    study = DicomStudy("1.2", "P", "P", "20240101", "", "", (pre, dsc, post))
    assignment = classify_study(study)
    assert assignment.classes[pre.uid].sequence == "t1"
    assert assignment.classes[post.uid].sequence == "t1ce"
    assert "acquired after" in assignment.classes[post.uid].evidence[-1]


def test_the_rule_picks_3d_then_thin_then_axial_and_says_so() -> None:
    thick = series("Ax T2 FLAIR", 9000, 140, 2250, number=3, step=5.0)
    thin = series("Ax T2 FLAIR 3mm", 9000, 140, 2250, number=4, step=3.0)
    three_d = series("Sag CUBE FLAIR", 6000, 120, 1800, acquisition="3D", number=9, step=1.2)
    study = DicomStudy("1.2", "P", "P", "20240101", "", "", (thick, thin, three_d))
    assignment = classify_study(study)
    assert assignment.chosen["flair"] == three_d.uid
    assert "3 candidates" in assignment.reasons["flair"] and "3D over 2D" in assignment.reasons["flair"]
    without_3d = choose(study, {k: v for k, v in assignment.classes.items()}, {"flair": thin.uid})
    assert without_3d.chosen["flair"] == thin.uid and without_3d.reasons["flair"] == "chosen by the user"


def test_a_series_moved_to_another_sequence_leaves_its_old_one_to_the_rule() -> None:
    """One series serves one sequence: choosing the 3D T1 as T1ce frees T1 for the next T1 (or none)."""
    from brainseg_gui.core.dicom_classify import reassign

    three_d = series("T1 MPRAGE", 2300, 3, 900, acquisition="3D", number=2, step=1.0)
    spin_echo = series("Ax T1 SE", 500, 14, number=3)
    study = DicomStudy("1.2", "P", "P", "20240101", "", "", (three_d, spin_echo))
    assignment = classify_study(study)
    assert assignment.chosen["t1"] == three_d.uid and "t1ce" not in assignment.chosen
    moved = reassign(assignment, {"t1ce": "2"})
    assert moved.chosen == {"t1ce": three_d.uid, "t1": spin_echo.uid}
    assert moved.reasons["t1ce"] == "chosen by the user" and moved.reasons["t1"] == "the only candidate"
    assert moved.classes[spin_echo.uid].evidence[0] != "chosen by the user as t1"
    emptied = reassign(moved, {"t1": None})
    assert "t1" not in emptied.chosen and emptied.chosen["t1ce"] == three_d.uid
