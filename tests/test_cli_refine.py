"""`brainseg refine`: clicks applied in order, the result on the study's grid with the clicks listed; bad
clicks, files and grids fail in one line with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from brainseg_gui.core.click_refine import read_clicks
from brainseg_gui.core.phantom import write_phantom_case
from tests.cli_support import run


def _centre(mask: np.ndarray) -> tuple[int, int, int]:
    from scipy import ndimage

    inside = ndimage.distance_transform_edt(mask)
    return tuple(int(v) for v in np.unravel_index(int(inside.argmax()), mask.shape))  # type: ignore[return-value]



def test_refine_writes_the_corrected_mask_on_the_study_grid(capsys, tmp_path: Path) -> None:
    case = write_phantom_case(tmp_path, seed=2, shape=(64, 72, 56))
    seg = next(case.glob("*_seg.nii.gz"))
    image = nib.load(seg)
    truth = np.asarray(image.dataobj).astype(np.uint8)
    mask = np.where(np.arange(64)[:, None, None] > 32, 0, truth).astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, image.affine), tmp_path / "mask.nii.gz")
    voxel = _centre((truth > 0) & (np.arange(64)[:, None, None] > 32))
    clicks = tmp_path / "clicks.json"
    clicks.write_text(json.dumps([{"voxel": list(voxel), "label": "WT", "positive": True}]))
    out = tmp_path / "refined.nii.gz"
    status, stdout, err = run(capsys, "refine", case, "--mask", tmp_path / "mask.nii.gz", "--clicks", clicks,
                              "-o", out, "--no-prior", "--labels", "msd")
    assert status == 0, err
    written = nib.load(out)
    np.testing.assert_allclose(written.affine, image.affine)
    assert (np.asarray(written.dataobj) > 0).sum() > (mask > 0).sum()
    sidecar = json.loads((tmp_path / "refined.json").read_text())
    assert sidecar["clicks"][0]["voxel"] == list(voxel) and sidecar["clicks"][0]["voxels_changed"] > 0
    assert sidecar["label_convention"] == "msd" and "click 1: WT + at" in stdout
    assert read_clicks(clicks)[0].voxel == voxel

    # bad input: one line, exit 2, nothing written
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps([{"voxel": [64, 0, 0], "label": "WT", "positive": True}]))
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(mask[:-1], image.affine), tmp_path / "small.nii.gz")
    status, _, err = run(capsys, "refine", case, "--mask", tmp_path / "mask.nii.gz", "--clicks", outside,
                         "-o", other, "--no-prior")
    assert status == 2 and "outside the grid" in err and not other.exists()
    status, _, err = run(capsys, "refine", case, "--mask", tmp_path / "small.nii.gz", "--clicks", clicks,
                         "-o", other, "--no-prior")
    assert status == 2 and "grid" in err and not other.exists()
    status, _, err = run(capsys, "refine", case, "--mask", tmp_path / "mask.nii.gz", "--clicks",
                         tmp_path / "mask.nii.gz", "-o", other, "--no-prior")
    assert status == 2 and "not a JSON file of clicks" in err
    assert not other.exists()
