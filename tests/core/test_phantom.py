"""Synthetic phantoms: determinism, nested tumour geometry, MRI-like contrasts, BraTS files round trip."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from brainseg_gui.core.labels import LabelConvention, convert
from brainseg_gui.core.phantom import (
    DEMO_CASE_ID,
    PHANTOM_WARNING,
    demo_study,
    make_phantom,
    write_phantom_case,
)
from brainseg_gui.core.study import SEQUENCES, Study

SMALL = (64, 64, 48)


@pytest.fixture(scope="module")
def phantom() -> Study:
    return make_phantom()  # the default 120x144x112 at 1 mm


def _arrays(study: Study) -> dict[str, np.ndarray]:
    assert study.labels is not None
    return {**study.images, "labels": study.labels, "affine": study.grid.affine}


def test_same_seed_same_phantom_other_seed_other_phantom() -> None:
    first, again, other = make_phantom(SMALL, seed=3), make_phantom(SMALL, seed=3), make_phantom(SMALL, seed=4)
    for name, array in _arrays(first).items():
        np.testing.assert_array_equal(array, _arrays(again)[name], err_msg=name)
    for name in (*SEQUENCES, "labels"):
        assert not np.array_equal(_arrays(first)[name], _arrays(other)[name]), name


def test_study_fields_and_geometry() -> None:
    study = make_phantom((48, 56, 40), seed=7, spacing=(1.0, 1.5, 3.0))
    assert study.case_id == "demo-phantom-seed7"
    assert study.warnings == (PHANTOM_WARNING,)
    assert "synthetic" in study.warnings[0]
    assert study.label_convention is LabelConvention.BRATS
    assert study.missing == ()
    assert study.grid.shape == (48, 56, 40)
    assert study.grid.axcodes == ("L", "P", "S")
    assert study.grid.spacing == pytest.approx((1.0, 1.5, 3.0))
    # BraTS-like affine: diag(-1, -1, 1) * spacing, voxel (0, 0, 0) at (0, (nj - 1) * sj, 0).
    np.testing.assert_allclose(study.grid.affine, [[-1, 0, 0, 0], [0, -1.5, 0, 55 * 1.5], [0, 0, 3, 0],
                                                   [0, 0, 0, 1]])
    assert make_phantom((40, 40, 32), case_id="x").case_id == "x"


@pytest.mark.parametrize(("shape", "seed", "spacing"), [
    (SMALL, 0, (1.0, 1.0, 1.0)), (SMALL, 1, (1.0, 1.0, 1.0)), (SMALL, 2, (1.0, 1.0, 1.0)),
    ((96, 64, 40), 5, (1.0, 1.5, 3.0)),
])
def test_labels_are_present_and_nested(shape: tuple[int, int, int], seed: int,
                                       spacing: tuple[float, float, float]) -> None:
    study = make_phantom(shape, seed=seed, spacing=spacing)
    _check_nested(study)


def test_default_phantom_labels_nested(phantom: Study) -> None:
    _check_nested(phantom)
    assert phantom.labels is not None
    counts = {v: int((phantom.labels == v).sum()) for v in (1, 2, 4)}
    # Proportions like a glioblastoma: edema the largest, a core of a few mL, necrosis inside.
    assert counts[2] > counts[4] > counts[1] > 0
    assert 2_000 < counts[1] + counts[4] < 60_000


def _check_nested(study: Study) -> None:
    labels = study.labels
    assert labels is not None and labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 4}
    ncr, tc, wt = labels == 1, np.isin(labels, (1, 4)), labels > 0
    # ET rims the necrosis: no face neighbour of NCR lies outside the core.
    assert not (ndimage.binary_dilation(ncr) & ~tc).any()
    # Edema surrounds the core: no face neighbour of the core lies outside the tumour.
    assert not (ndimage.binary_dilation(tc) & ~wt).any()
    brain = study.images["t1"] > 0
    assert not (wt & ~brain).any()


def test_background_is_zero_and_values_are_mri_like(phantom: Study) -> None:
    brain = phantom.images["t1"] > 0
    assert 0.2 < brain.mean() < 0.7
    for name, image in phantom.images.items():
        assert image.dtype == np.float32
        np.testing.assert_array_equal(image > 0, brain, err_msg=name)  # same skull-stripped mask
        assert not image.flags.writeable
        assert np.array_equal(image, np.rint(image)), name  # integer-valued, as BraTS int16 scans
        assert image[brain].min() >= 1
        assert 500 < image.max() < 2500, name
    # The outer face of the volume is background, as in BraTS.
    t1 = phantom.images["t1"]
    assert not t1[0].any() and not t1[-1].any() and not t1[:, :, 0].any() and not t1[:, :, -1].any()


def test_contrasts_follow_real_mri(phantom: Study) -> None:
    images, labels = phantom.images, phantom.labels
    assert labels is not None
    brain = images["t1"] > 0
    normal = brain & (labels == 0)
    ncr, ed, et = labels == 1, labels == 2, labels == 4

    def mean(name: str, where: np.ndarray) -> float:
        return float(images[name][where].mean())

    assert mean("flair", ed) > 1.5 * mean("flair", normal)  # edema bright on FLAIR
    assert mean("t2", ed) > 1.5 * mean("t2", normal)  # and on T2
    assert mean("t1ce", et) > 2 * mean("t1ce", ncr)  # the rim enhances, the necrosis does not
    assert mean("t1ce", et) > 2 * mean("t1ce", normal)
    assert mean("t2", ncr) > mean("t2", et)  # fluid-like necrosis bright on T2
    assert mean("t1", ncr) < mean("t1", normal)  # and dark on T1
    # CSF (the brightest T2 voxels of the normal brain) is dark on FLAIR and T1.
    csf = normal & (images["t2"] > np.percentile(images["t2"][normal], 95))
    assert mean("flair", csf) < 0.5 * mean("flair", normal)
    assert mean("t1", csf) < 0.6 * mean("t1", normal)
    # White matter (the brightest T1 voxels) is darker than average on T2.
    wm = normal & (images["t1"] > np.percentile(images["t1"][normal], 60))
    assert mean("t2", wm) < mean("t2", normal)


@pytest.mark.parametrize("naming", ["brats", "brats23"])
def test_written_case_reads_back_identically(tmp_path: Path, naming: str) -> None:
    folder = write_phantom_case(tmp_path, seed=5, shape=(40, 48, 32), naming=naming, spacing=(1.2, 1.0, 2.5))
    study = make_phantom((40, 48, 32), seed=5, spacing=(1.2, 1.0, 2.5))
    assert folder == tmp_path / "demo-phantom-seed5"
    suffixes = {"brats": ["_t1", "_t1ce", "_t2", "_flair", "_seg"],
                "brats23": ["-t1n", "-t1c", "-t2w", "-t2f", "-seg"]}[naming]
    expected = sorted(f"demo-phantom-seed5{s}.nii.gz" for s in suffixes)
    assert sorted(p.name for p in folder.iterdir()) == expected  # and no temporary files left
    for name, suffix in zip(SEQUENCES, suffixes):
        image = nib.load(folder / f"demo-phantom-seed5{suffix}.nii.gz")
        assert image.get_data_dtype() == np.int16
        np.testing.assert_array_equal(image.affine, study.grid.affine)  # exact, float32-held
        assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
        np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), study.images[name])
    seg = nib.load(folder / f"demo-phantom-seed5{suffixes[-1]}.nii.gz")
    assert seg.get_data_dtype() == np.uint8
    values = np.asanyarray(seg.dataobj)
    convention = LabelConvention.BRATS if naming == "brats" else LabelConvention.BRATS23
    assert set(np.unique(values).tolist()) == {0, *convention.tissue_values.values()}
    assert study.labels is not None
    np.testing.assert_array_equal(convert(values, convention, LabelConvention.BRATS), study.labels)
    np.testing.assert_array_equal(seg.affine, study.grid.affine)


def test_write_rejects_unknown_naming(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'msd'.*brats, brats23"):
        write_phantom_case(tmp_path, naming="msd", shape=(16, 16, 16))
    assert not any(tmp_path.iterdir())


def test_demo_study() -> None:
    demo = demo_study()
    assert demo.case_id == DEMO_CASE_ID == "BrainSeg demo (synthetic phantom)"
    assert demo.grid.shape == (160, 192, 144)
    assert demo.grid.spacing == (1.0, 1.0, 1.0)
    assert demo.warnings == (PHANTOM_WARNING,)
    assert demo.labels is not None
    assert set(np.unique(demo.labels).tolist()) == {0, 1, 2, 4}
