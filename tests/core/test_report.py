"""The export report says what the viewer showed: absolute source paths, volumes, Dice and HD95
against the ground truth (only when there is one), three key slices drawn from the data through the
tumour at the physical aspect, the measurements with their values, the model, provenance, version.
On the toy study (LPS, 1.5 x 1.5 x 4 mm voxels) and on a real BraTS case."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainseg_gui import RESEARCH_USE_NOTE, __version__
from brainseg_gui.core.edit_session import EditSession
from brainseg_gui.core.export import provenance
from brainseg_gui.core.io import load_study
from brainseg_gui.core.key_slices import key_slices, tumour_centre
from brainseg_gui.core.labels import REGIONS, LabelConvention, convert, to_regions
from brainseg_gui.core.measurements import EllipseRoi, MeasurementError, MeasurementSet, Ruler, ellipse_mask
from brainseg_gui.core.metrics import evaluate_regions
from brainseg_gui.core.orientation import AXIS_OF_PLANE, Reorientation
from brainseg_gui.core.rano import rano
from brainseg_gui.core.region_colours import COLOURS
from brainseg_gui.core.report import report_html
from brainseg_gui.core.study import SEQUENCES, Study
from tests.ui.conftest import SCREENSHOTS, make_toy_study, toy_arrays, write_toy_case

BRATS = LabelConvention.BRATS
SLICE = re.compile(r'<img class="slice" width="(\d+)" height="(\d+)" alt="(\w+) slice (\d+) through the tumour" '
                   r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def key_pictures(text: str) -> dict[str, tuple[np.ndarray, int, int, int]]:
    """plane -> (RGB picture, shown width, shown height, slice number) of each key slice in a report."""
    out = {}
    for width, height, plane, number, data in SLICE.findall(text):
        picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
        out[plane] = (picture, int(width), int(height), int(number))
    return out


def coloured(picture: np.ndarray) -> np.ndarray:
    """Pixels the overlay tinted: the grey image has equal channels, the region colours do not."""
    return picture.max(axis=-1).astype(int) - picture.min(axis=-1) > 12


def on_screen(slice_2d: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A RAS slice (horizontal, vertical) as the viewer shows it: vertical up, the first axis flipped
    (patient's right / anterior on the left), stretched (nearest) to `shape`."""
    shown = slice_2d.T[::-1, ::-1]
    rows = (np.arange(shape[0]) * shown.shape[0] // shape[0])
    cols = (np.arange(shape[1]) * shown.shape[1] // shape[1])
    return shown[rows][:, cols]


def save_pictures(text: str, name: str) -> None:
    """The report's key slices as PNG files under screenshots/, to look at."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for plane, (picture, *_rest) in key_pictures(text).items():
        Image.fromarray(picture).save(SCREENSHOTS / f"report_{name}_{plane}.png")


def check_key_slices(text: str, study: Study, labels: np.ndarray) -> None:
    """Three pictures, each through the tumour, the overlay exactly on the tumour's voxels, square mm."""
    reorient = Reorientation(study.grid)
    wt = reorient.apply(to_regions(labels, BRATS))[0]
    pictures = key_pictures(text)
    assert sorted(pictures) == ["axial", "coronal", "sagittal"]
    for plane, (picture, width, height, number) in pictures.items():
        axis = AXIS_OF_PLANE[plane]
        key: list[slice | int] = [slice(None)] * 3
        key[axis] = number - 1
        tumour = wt[tuple(key)]
        assert tumour.any(), f"the {plane} key slice {number} misses the tumour"
        np.testing.assert_array_equal(coloured(picture), on_screen(tumour, picture.shape[:2]))
        horizontal, vertical = (a for a in range(3) if a != axis)
        extent = (reorient.shape[vertical] * reorient.spacing[vertical]) / (
            reorient.shape[horizontal] * reorient.spacing[horizontal])
        assert picture.shape[0] / picture.shape[1] == pytest.approx(extent, abs=0.04)  # square pixels in mm
        assert height / width == pytest.approx(extent, abs=0.04)  # and shown so


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Study, np.ndarray]:
    """The toy case opened from a relative path, with ET painted beside the tumour and some removed."""
    write_toy_case(tmp_path / "toy")
    monkeypatch.chdir(tmp_path)
    study = load_study(Path("toy"))
    session = EditSession(study.labels, study.grid)
    session.paint_disc(2, (20, 20, 10), 4.0, 4)
    session.erase_disc(2, (14, 16, 12), 3.0)
    return study, session.labels


def test_sources_are_absolute_with_model_provenance_version_and_note(toy, tmp_path: Path) -> None:
    study, labels = toy
    prov = provenance(study, labels, study.labels, model_version="m-7", base="model m-7")
    text = report_html(study, labels, prov, BRATS, device="CUDA (NVIDIA H200)")
    for name in SEQUENCES:
        assert f"<code>{tmp_path / 'toy' / f'toy_{name}.nii.gz'}</code>" in text
    assert f"label file: <code>{tmp_path / 'toy' / 'toy_seg.nii.gz'}</code>" in text
    assert "<code>toy/" not in text  # never the relative path the study was opened with
    assert "m-7, run on CUDA (NVIDIA H200)" in text and "model m-7" in text
    assert f"yes: {prov.comparison.changed:,} voxels changed" in text
    assert f"BrainSeg {__version__}" in text and prov.created in text and RESEARCH_USE_NOTE in text
    assert "data:image/png;base64," in text and "<img class=\"slice\"" in text


def test_volumes_dice_and_hd95_against_the_ground_truth(toy) -> None:
    study, labels = toy
    prov = provenance(study, labels, study.labels, model_version="m-7")
    text = report_html(study, labels, prov, BRATS)
    expected = evaluate_regions(to_regions(labels, BRATS), to_regions(study.labels, BRATS), study.grid.spacing)
    assert 0 < expected["ET"].dice < 1 and expected["ET"].hd95 > 0  # the edits show
    section = text[text.index("<h2>Against the ground truth</h2>"):]
    for region in REGIONS:
        m = expected[region]
        assert (f"<tr><td>{region}</td><td>{m.volume_pred_ml:.2f}</td><td>{m.volume_truth_ml:.2f}</td>"
                f"<td>{m.dice:.3f}</td><td>{m.hd95:.2f}</td></tr>") in section
        assert f"<td>{prov.comparison.voxels_corrected[region] * prov.voxel_ml:.2f}</td>" in text


def test_no_ground_truth_no_truth_columns() -> None:
    images, labels, _affine = toy_arrays()
    study = Study("toy", make_toy_study().grid, images)  # no labels
    prov = provenance(study, labels, None, model_version=None)
    text = report_html(study, labels, prov, BRATS)
    assert "ground truth" not in text.lower() and "HD95" not in text
    assert "Corrected mL" in text and f"{prov.comparison.voxels_corrected['WT'] * prov.voxel_ml:.2f}" in text
    assert "none: the study was not read from files" in text
    check_key_slices(text, study, labels)


def test_three_key_slices_through_the_tumour_at_the_physical_aspect(toy) -> None:
    study, labels = toy
    text = report_html(study, labels, provenance(study, labels, study.labels, model_version="m-7"), BRATS)
    save_pictures(text, "toy")
    check_key_slices(text, study, labels)
    pictures = key_pictures(text)
    # the toy's tumour lies right-anterior-superior: left and up on screen in every plane
    for plane, (picture, *_rest) in pictures.items():
        rows, cols = np.nonzero(coloured(picture))
        assert cols.mean() < picture.shape[1] / 2 and rows.mean() < picture.shape[0] / 2, plane
    assert pictures["coronal"][0].shape[0] > 1.5 * Reorientation(study.grid).shape[2]  # 4 mm slices stretched
    # the image is drawn from the data: the toy's brightest marker (right-anterior) is top-left in axial
    axial = pictures["axial"][0]
    rows, cols = np.nonzero((axial > 240).all(axis=-1))
    assert rows.size and cols.mean() < axial.shape[1] / 2 and rows.mean() < axial.shape[0] / 2


def test_key_slices_use_the_viewer_colours_innermost_on_top() -> None:
    study = make_toy_study()
    views = key_slices(study.images["t1ce"], study.grid, study.labels, opacity=1.0)
    reorient = Reorientation(study.grid)
    regions = reorient.apply(to_regions(study.labels, BRATS))
    centre = tumour_centre(regions[0])
    for view in views:
        assert view.index == centre[AXIS_OF_PLANE[view.plane]]
        colours = {tuple(int(c) for c in pixel) for pixel in view.rgb.reshape(-1, 3)}
        assert {COLOURS[r] for r in REGIONS} <= colours, view.plane
    axial = views[0]
    et_pixels = int((axial.rgb == COLOURS["ET"]).all(axis=-1).sum())
    assert et_pixels == int(regions[2][:, :, axial.index].sum())  # ET drawn over TC and WT


def test_measurements_are_listed_with_their_values(toy) -> None:
    study, labels = toy
    reorient = Reorientation(study.grid)
    et = reorient.apply(to_regions(labels, BRATS))[2]
    measured = rano(et, reorient.affine)
    assert measured is not None
    roi = EllipseRoi(2, 12, (25.0, 30.0), (6.0, 4.0))  # across the tumour's edge: a spread of values
    measurements = MeasurementSet(reorient.shape, tuple(map(tuple, reorient.affine)),
                                  rulers=(Ruler((10, 20, 12), (30, 20, 12)), Ruler((20, 30, 5), (20, 30, 15))),
                                  ellipses=(roi,), rano=measured)
    prov = provenance(study, labels, study.labels, model_version="m-7")
    text = report_html(study, labels, prov, BRATS, measurements=measurements)
    section = text[text.index("<h2>Measurements</h2>"):]
    assert "<tr><td>Ruler 1</td><td>axial</td><td>13</td><td>30.0</td></tr>" in section  # 20 x 1.5 mm
    assert "<tr><td>Ruler 2</td><td>coronal</td><td>31</td><td>40.0</td></tr>" in section  # 10 x 4 mm
    mask = ellipse_mask(reorient.shape, 2, 12, roi.centre, roi.radii)
    assert f"<td>ROI 3</td><td>axial</td><td>13</td><td>{int(mask.sum())}</td>" in section
    for name in SEQUENCES:
        values = reorient.apply(study.images[name])[mask].astype(np.float64)
        assert values.std() > 0
        title = {"t1": "T1", "t1ce": "T1ce", "t2": "T2", "flair": "FLAIR"}[name]
        assert (f"<td>{title}</td><td>{values.mean():.1f}</td><td>{values.std():.1f}</td>"
                f"<td>{values.min():.1f}</td><td>{values.max():.1f}</td>") in section
    assert "RANO" in section
    assert (f"<tr><td>{measured.slice_z + 1}</td><td>{measured.long_mm:.1f}</td><td>{measured.short_mm:.1f}</td>"
            f"<td>{measured.product_mm2:.0f}</td>") in section
    # without a RANO measurement there is no RANO table; without any measurement no section at all
    import dataclasses

    text = report_html(study, labels, prov, BRATS, measurements=dataclasses.replace(measurements, rano=None))
    assert "Ruler 1" in text and "RANO" not in text
    empty = MeasurementSet(reorient.shape, measurements.affine)
    for none in (None, empty):
        assert "<h2>Measurements</h2>" not in report_html(study, labels, prov, BRATS, measurements=none)


def test_measurements_of_another_study_are_refused(toy) -> None:
    study, labels = toy
    prov = provenance(study, labels, None, model_version=None)
    wrong = MeasurementSet((10, 10, 10), tuple(map(tuple, np.eye(4))), rulers=(Ruler((1, 1, 1), (2, 2, 1)),))
    with pytest.raises(MeasurementError, match="10x10x10"):
        report_html(study, labels, prov, BRATS, measurements=wrong)


@pytest.mark.slow
def test_a_real_case_report(real_case: Path) -> None:
    if not real_case.is_dir():
        pytest.skip(f"real case {real_case} not found")
    study = load_study(real_case)
    truth = convert(study.labels, study.label_convention, BRATS)
    reorient = Reorientation(study.grid)
    edited = reorient.apply(truth).copy()
    top = int(np.flatnonzero((edited == 4).any(axis=(0, 1))).mean())
    edited[:, :, top + 1:] = 0  # the top of the tumour lost
    labels = np.ascontiguousarray(reorient.undo(edited))
    measured = rano(reorient.apply(to_regions(labels, BRATS))[2], reorient.affine)
    measurements = MeasurementSet(reorient.shape, tuple(map(tuple, reorient.affine)), rano=measured,
                                  rulers=(Ruler((100, 120, 80), (140, 120, 80)),))
    prov = provenance(study, labels, truth, model_version="m-real")
    text = report_html(study, labels, prov, BRATS, measurements=measurements)
    save_pictures(text, "real")
    (SCREENSHOTS / "report_real.html").write_text(text, encoding="utf-8")
    check_key_slices(text, study, labels)
    for plane, (picture, *_rest) in key_pictures(text).items():  # the brain is there under the overlay
        assert len(np.unique(picture[~coloured(picture)])) > 50, plane
    expected = evaluate_regions(to_regions(labels, BRATS), to_regions(truth, BRATS), study.grid.spacing)
    for region in REGIONS:
        assert f"<td>{expected[region].dice:.3f}</td><td>{expected[region].hd95:.2f}</td>" in text
    assert expected["WT"].dice < 1
    for name in (*SEQUENCES, "seg"):
        assert f"<code>{study.sources[name].absolute()}</code>" in text
    assert measured is not None and f"<td>{measured.product_mm2:.0f}</td>" in text
    assert "<td>Ruler 1</td><td>axial</td><td>81</td><td>40.0</td>" in text
    assert len(text) < 1_500_000  # three PNGs, not a screenful of pixels
