"""NIfTI export in each convention on the exact input grid, provenance, refusals, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_gui import RESEARCH_USE_NOTE
from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.edit_session import EditSession
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.export import (
    ExportExistsError,
    default_export_name,
    export_nifti,
    file_sha256,
    provenance,
)
from brainseg_gui.core.io import load_label_map, load_study
from brainseg_gui.core.labels import LabelConvention, convert
from brainseg_gui.core.report import encode_png, overview_png, report_html
from tests.ui.conftest import write_toy_case


@pytest.fixture
def toy(tmp_path: Path):
    folder = write_toy_case(tmp_path / "toy")
    study = load_study(folder)
    session = EditSession(study.labels, study.grid)
    session.paint_disc(2, (20, 20, 10), 4.0, 4)  # ET added
    session.erase_disc(2, (14, 16, 12), 3.0)  # tumour voxels removed
    return folder, study, session


@pytest.mark.parametrize("convention", list(LabelConvention))
def test_export_in_each_convention_keeps_grid_and_values(toy, tmp_path: Path, convention) -> None:
    folder, study, session = toy
    prov = provenance(study, session.labels, session.ai, model_version="v123", base="model v123")
    out = export_nifti(tmp_path / f"out_{convention.value}.nii.gz", session.labels, study, prov,
                       convention=convention)
    image = nib.load(out)
    np.testing.assert_array_equal(image.affine, nib.load(folder / "toy_seg.nii.gz").affine)
    assert image.header.get_data_dtype() == np.uint8
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    written = np.asarray(image.dataobj)
    np.testing.assert_array_equal(written, convert(session.labels, LabelConvention.BRATS, convention))
    labels, read_convention, grid = load_label_map(out, convention=convention, reference=study.grid)
    np.testing.assert_array_equal(convert(labels, read_convention, LabelConvention.BRATS), session.labels)
    assert grid.same_as(study.grid, tolerance=0)
    description = image.header["descrip"].item().decode()
    assert description.startswith("BrainSeg") and convention.value in description and "v123" in description
    assert "edited" in description


def test_sidecar_holds_the_provenance(toy, tmp_path: Path, monkeypatch) -> None:
    folder, study, session = toy
    monkeypatch.setattr("getpass.getuser", lambda: "dr_who")
    comparison = session.comparison()
    prov = provenance(study, session.labels, session.ai, model_version="v123")
    out = export_nifti(tmp_path / "mask.nii.gz", session.labels, study, prov, convention="msd")
    sidecar = json.loads((tmp_path / "mask.json").read_text())
    assert sidecar["model_version"] == "v123" and sidecar["edited"] is True
    assert sidecar["created_by"] == "dr_who" and sidecar["created_at"].endswith("+00:00")
    assert sidecar["label_convention"] == "msd" and sidecar["label_values"] == {"NCR": 2, "ED": 1, "ET": 3}
    assert sidecar["voxels_changed"] == comparison.changed > 0
    assert sidecar["voxels_changed_per_class"]["ET"]["added"] == comparison.tissues["ET"].added > 0
    assert sidecar["voxels_changed_per_region"]["WT"]["removed"] == comparison.regions["WT"].removed > 0
    assert set(sidecar["source_files"]) == {"t1", "t1ce", "t2", "flair", "seg"}
    assert sidecar["source_sha256"]["flair"] == file_sha256(folder / "toy_flair.nii.gz")
    assert sidecar["research_use"] == RESEARCH_USE_NOTE
    assert sidecar["volumes_ml_corrected"]["WT"] == pytest.approx(
        comparison.voxels_corrected["WT"] * study.grid.voxel_volume_ml, abs=1e-3)
    assert out.name == "mask.nii.gz"


def test_unedited_export_says_so(toy, tmp_path: Path) -> None:
    _folder, study, _session = toy
    prov = provenance(study, study.labels, None, model_version=None)
    assert not prov.edited
    out = export_nifti(tmp_path / "plain.nii", study.labels, study, prov)
    assert json.loads((tmp_path / "plain.json").read_text())["edited"] is False
    assert "unedited" in nib.load(out).header["descrip"].item().decode()


def test_refuses_inputs_existing_exports_and_other_formats(toy, tmp_path: Path) -> None:
    folder, study, session = toy
    prov = provenance(study, session.labels, session.ai, model_version="v1")
    seg = folder / "toy_seg.nii.gz"
    before = seg.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(BrainSegError, match="input"):
            export_nifti(seg, session.labels, study, prov, overwrite=overwrite)
    assert seg.read_bytes() == before
    out = export_nifti(tmp_path / "a.nii.gz", session.labels, study, prov)
    first = out.read_bytes()
    with pytest.raises(ExportExistsError, match="exists"):
        export_nifti(out, np.zeros_like(session.labels), study, prov)
    assert out.read_bytes() == first
    export_nifti(out, np.zeros_like(session.labels), study, prov, overwrite=True)
    assert not np.asarray(nib.load(out).dataobj).any()
    with pytest.raises(BrainSegError, match="NIfTI"):
        export_nifti(tmp_path / "a.nrrd", session.labels, study, prov)
    with pytest.raises(BrainSegError, match="does not exist"):
        export_nifti(tmp_path / "missing" / "a.nii.gz", session.labels, study, prov)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    assert default_export_name(study, "brats23") == "toy_seg_corrected_brats23.nii.gz"


def test_report_has_volumes_dice_and_the_picture(toy, tmp_path: Path) -> None:
    _folder, study, session = toy
    prov = provenance(study, session.labels, session.ai, model_version="v123")
    png = overview_png(study, session.labels)
    assert png.startswith(b"\x89PNG")
    text = report_html(study, session.labels, prov, LabelConvention.BRATS23)
    comparison = prov.comparison
    assert "toy" in text and "v123" in text and RESEARCH_USE_NOTE in text
    assert f"{comparison.dice['ET']:.3f}" in text
    assert f"{comparison.voxels_corrected['WT'] * prov.voxel_ml:.2f}" in text
    assert "data:image/png;base64," in text and prov.user in text
    assert "label 3" in text  # ET in BraTS 2023 values
    out = write_atomic(tmp_path / "report.html", text)
    assert out.read_text(encoding="utf-8") == text


def test_png_encoder_round_trips_through_qt_free_decoder() -> None:
    import zlib

    picture = np.zeros((3, 5, 3), np.uint8)
    picture[1, 2] = (10, 200, 30)
    data = encode_png(picture)
    # IHDR says 5 x 3, RGB 8 bit; IDAT inflates to filter byte + row for each row
    assert data[12:16] == b"IHDR" and int.from_bytes(data[16:20], "big") == 5
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8:start - 4], "big")
    raw = np.frombuffer(zlib.decompress(data[start:start + length]), np.uint8).reshape(3, 16)
    np.testing.assert_array_equal(raw[:, 1:].reshape(3, 5, 3), picture)
