"""Loading studies: every real BraTS case, case discovery from any file, BraTS 2023, MSD, batches."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import brats_case_dirs
from io_builders import cropped, read_case, write_brats, write_nifti

from brainseg_gui.core.errors import Cancelled, StudyLoadError
from brainseg_gui.core.io import CaseFiles, find_case, find_cases, load_label_map, load_study
from brainseg_gui.core.labels import LabelConvention, convert
from brainseg_gui.core.progress import CancelToken
from brainseg_gui.core.study import SEQUENCES

# Label voxel counts 0/1/2/4 of every real case, from ../shared/data/README.md.
LABEL_COUNTS = {
    "BraTS2021_00003": (8828761, 17214, 57773, 24252),
    "BraTS2021_00005": (8803217, 24187, 76742, 23854),
    "BraTS2021_00014": (8889642, 2, 35799, 2557),
    "BraTS2021_00019": (8785003, 1605, 131017, 10375),
    "Brats17_2013_27_1": (8845265, 11727, 50571, 20437),
    "Brats18_2013_2_1": (8866915, 4514, 34894, 21677),
    "Brats18_2013_3_1": (8827114, 10430, 67269, 23187),
    "Brats18_CBICA_AQR_1": (8913170, 585, 9079, 5166),
    "Brats18_CBICA_AQT_1": (8738989, 9752, 164048, 15211),
    "Brats18_CBICA_ASE_1": (8891658, 163, 34822, 1357),
    "Brats18_CBICA_ATB_1": (8872636, 8872, 21364, 25128),
    "Brats18_TCIA01_425_1": (8889686, 384, 36268, 1662),
    "Brats18_TCIA02_370_1": (8820806, 24961, 51852, 30381),
    "Brats18_TCIA03_265_1": (8867644, 21996, 21263, 17097),
    "Brats18_TCIA10_637_1": (8696049, 91349, 139017, 1585),
    "Brats18_TCIA13_623_1": (8695902, 100036, 127388, 4674),
}
# Image maxima t1/t1ce/t2/flair from the README (BraTS 2018 table).
MAXIMA = {
    "Brats18_2013_2_1": (1461, 1674, 1478, 1252),
    "Brats18_2013_3_1": (540, 279, 1779, 422),
    "Brats18_CBICA_AQR_1": (540, 1875, 1745, 760),
    "Brats18_CBICA_AQT_1": (622, 2242, 1535, 722),
    "Brats18_CBICA_ASE_1": (1178, 1935, 2372, 1317),
    "Brats18_CBICA_ATB_1": (979, 2395, 375, 1049),
    "Brats18_TCIA01_425_1": (502, 1162, 828, 470),
    "Brats18_TCIA02_370_1": (619, 905, 988, 454),
    "Brats18_TCIA03_265_1": (800, 431, 800, 624),
    "Brats18_TCIA10_637_1": (32767, 32767, 32767, 32767),
    "Brats18_TCIA13_623_1": (3667, 3416, 3783, 968),
}
SEG_DTYPES = {"BraTS2021_00019": np.uint16, "Brats17_2013_27_1": np.int16, "Brats18_2013_2_1": np.int16,
              "Brats18_2013_3_1": np.int16}


def _link(source: Path, target: Path) -> None:
    """A hard link (or a copy): a symlink leading out of the folder is refused (core/read_guard.py)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


@pytest.mark.parametrize("case_dir", brats_case_dirs(), ids=lambda p: p.name)
def test_every_real_case_loads_exactly(case_dir: Path) -> None:
    study = load_study(case_dir)
    case_id = case_dir.name
    assert study.case_id == case_id
    assert study.missing == ()
    assert study.warnings == ()
    assert study.grid.shape == (240, 240, 155)
    assert study.grid.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert study.grid.axcodes == ("L", "P", "S")
    assert study.label_convention is LabelConvention.BRATS
    assert study.labels is not None and study.labels.dtype == np.uint8
    counts = np.bincount(study.labels.ravel(), minlength=5)
    assert (counts[0], counts[1], counts[2], counts[4]) == LABEL_COUNTS[case_id]
    assert counts[3] == 0
    assert {name: image.dtype for name, image in study.images.items()} == dict.fromkeys(SEQUENCES, np.float32)
    if case_id in MAXIMA:
        assert tuple(float(study.images[name].max()) for name in SEQUENCES) == MAXIMA[case_id]
    # One sequence per case (a different one each time) compared voxel for voxel with nibabel's raw data.
    name = SEQUENCES[sorted(LABEL_COUNTS).index(case_id) % 4]
    raw = np.asanyarray(nib.load(case_dir / f"{case_id}_{name}.nii.gz").dataobj)
    assert raw.dtype == np.int16
    assert np.array_equal(study.images[name], raw.astype(np.float32))
    assert study.sources[name] == case_dir / f"{case_id}_{name}.nii.gz"
    assert study.sources["seg"] == case_dir / f"{case_id}_seg.nii.gz"


def test_seg_dtypes_of_the_real_cases_are_mixed(shared_data: Path) -> None:
    """The loader is tested on uint8, uint16 and int16 label files (see the README)."""
    for case_dir in brats_case_dirs():
        seg = nib.load(case_dir / f"{case_dir.name}_seg.nii.gz")
        assert seg.get_data_dtype() == SEG_DTYPES.get(case_dir.name, np.uint8), case_dir.name


@pytest.mark.parametrize("name", ["t1", "t1ce", "t2", "flair", "seg"])
def test_any_file_of_a_case_opens_the_whole_case(real_case: Path, name: str) -> None:
    case = find_case(real_case / f"{real_case.name}_{name}.nii.gz")
    assert case.case_id == "BraTS2021_00003"
    assert case.layout == "brats"
    assert dict(case.files) == {s: real_case / f"BraTS2021_00003_{s}.nii.gz" for s in SEQUENCES}
    assert case.seg == real_case / "BraTS2021_00003_seg.nii.gz"
    assert find_case(real_case) == case


def test_t1_does_not_match_t1ce(tmp_path: Path) -> None:
    volumes = cropped(read_case(brats_case_dirs()[0])) if brats_case_dirs() else None
    if volumes is None:
        pytest.skip("real data absent")
    write_brats(tmp_path, "X", volumes, suffix=".nii", names=("t1ce", "flair"))
    case = find_case(tmp_path / "X_t1ce.nii")
    assert set(case.files) == {"t1ce", "flair"}
    assert case.files["t1ce"].name == "X_t1ce.nii"
    study = load_study(case)
    assert study.missing == ("t1", "t2")
    assert study.warnings == ("missing sequences: t1, t2",)
    assert np.array_equal(study.images["t1ce"], volumes.arrays["t1ce"].astype(np.float32))


def test_flat_folder_resolves_the_clicked_case(shared_data: Path, tmp_path: Path) -> None:
    chosen = brats_case_dirs()[:3]
    for case_dir in chosen:
        for file in case_dir.iterdir():
            _link(file, tmp_path / file.name)
    second = chosen[1].name
    case = find_case(tmp_path / f"{second}_t2.nii.gz")
    assert case.case_id == second
    assert {p.name for p in case.files.values()} == {f"{second}_{s}.nii.gz" for s in SEQUENCES}
    assert case.seg == tmp_path / f"{second}_seg.nii.gz"
    assert [c.case_id for c in find_cases(tmp_path)] == sorted(d.name for d in chosen)
    with pytest.raises(StudyLoadError, match=f"3 cases.*{second}"):
        find_case(tmp_path)


def test_brats2023_naming(real_case: Path, tmp_path: Path) -> None:
    case_id = "BraTS-GLI-00003-000"
    folder = tmp_path / case_id
    folder.mkdir()
    for name, tag in (("t1", "t1n"), ("t1ce", "t1c"), ("t2", "t2w"), ("flair", "t2f")):
        shutil.copyfile(real_case / f"BraTS2021_00003_{name}.nii.gz", folder / f"{case_id}-{tag}.nii.gz")
    seg = nib.load(real_case / "BraTS2021_00003_seg.nii.gz")
    labels23 = convert(np.asarray(seg.dataobj), LabelConvention.BRATS, LabelConvention.BRATS23)
    write_nifti(folder / f"{case_id}-seg.nii.gz", labels23, seg.affine)

    case = find_case(folder / f"{case_id}-t2f.nii.gz")
    assert case.layout == "brats23"
    assert case.case_id == case_id
    assert case.files["flair"].name == f"{case_id}-t2f.nii.gz"
    assert case.files["t1"].name == f"{case_id}-t1n.nii.gz"
    assert case.files["t1ce"].name == f"{case_id}-t1c.nii.gz"
    assert find_case(folder / f"{case_id}-seg.nii.gz") == case
    study = load_study(folder)
    assert study.label_convention is LabelConvention.BRATS23
    assert np.array_equal(np.bincount(study.labels.ravel(), minlength=4), [8828761, 17214, 57773, 24252])
    flair = np.asanyarray(nib.load(real_case / "BraTS2021_00003_flair.nii.gz").dataobj)
    assert np.array_equal(study.images["flair"], flair.astype(np.float32))


@pytest.fixture
def msd_root(real_case: Path, tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """MSD Task01 layout built from a cropped real case: 4D (FLAIR, T1w, T1gd, T2w) + MSD labels."""
    volumes = cropped(read_case(real_case))
    stacked = np.stack([volumes.arrays[n] for n in ("flair", "t1", "t1ce", "t2")], axis=-1)
    labels = convert(volumes.arrays["seg"], LabelConvention.BRATS, LabelConvention.MSD)
    root = tmp_path / "Task01_BrainTumour"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    write_nifti(root / "imagesTr" / "BRATS_001.nii.gz", stacked, volumes.affine)
    write_nifti(root / "labelsTr" / "BRATS_001.nii.gz", labels, volumes.affine)
    (root / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    return root, stacked, labels


def test_msd_4d_image_and_its_label(msd_root: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, stacked, labels = msd_root
    image = root / "imagesTr" / "BRATS_001.nii.gz"
    case = find_case(image)
    assert case.layout == "msd"
    assert case.case_id == "BRATS_001"
    assert case.msd_image == image
    assert case.seg == root / "labelsTr" / "BRATS_001.nii.gz"
    assert find_case(root / "labelsTr" / "BRATS_001.nii.gz") == case
    study = load_study(image)
    for channel, name in enumerate(("flair", "t1", "t1ce", "t2")):
        assert np.array_equal(study.images[name], stacked[..., channel].astype(np.float32)), name
    assert study.label_convention is LabelConvention.MSD
    assert np.array_equal(study.labels, labels)
    assert find_cases(root) == [case]


def test_msd_label_passed_explicitly(msd_root: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    root, _, labels = msd_root
    elsewhere = tmp_path / "mine.nii.gz"
    shutil.copyfile(root / "labelsTr" / "BRATS_001.nii.gz", elsewhere)
    (root / "labelsTr" / "BRATS_001.nii.gz").unlink()
    assert find_case(root / "imagesTr" / "BRATS_001.nii.gz").seg is None
    study = load_study(root / "imagesTr" / "BRATS_001.nii.gz", seg=elsewhere)
    assert study.label_convention is LabelConvention.MSD
    assert np.array_equal(study.labels, labels)
    assert study.sources["seg"] == elsewhere


def test_find_cases_one_and_two_levels_down(shared_data: Path) -> None:
    cases = find_cases(shared_data)  # brats20xx/<case>/ : two levels down; dicom/ and nrrd/ are not cases
    assert [c.case_id for c in cases] == sorted(d.name for d in brats_case_dirs())
    assert all(c.layout == "brats" and c.seg is not None and len(c.files) == 4 for c in cases)
    one_level = find_cases(shared_data / "brats2018")
    assert len(one_level) == 11


def test_find_cases_empty_folder_names_it(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(StudyLoadError, match=str(tmp_path)):
        find_cases(tmp_path)


def test_find_cases_ignores_folders_of_label_maps_only(real_case: Path, tmp_path: Path) -> None:
    _link(real_case / "BraTS2021_00003_seg.nii.gz", tmp_path / "BraTS2021_00003_seg.nii.gz")
    with pytest.raises(StudyLoadError, match="no case found"):
        find_cases(tmp_path)
    with pytest.raises(StudyLoadError, match="only a label map"):
        find_case(tmp_path / "BraTS2021_00003_seg.nii.gz")


def test_explicit_files_and_convention(real_case: Path) -> None:
    files = {"flair": real_case / "BraTS2021_00003_flair.nii.gz", "t2": real_case / "BraTS2021_00003_t2.nii.gz"}
    study = load_study(None, files=files, seg=real_case / "BraTS2021_00003_seg.nii.gz",
                       label_convention=LabelConvention.BRATS)
    assert study.case_id == "BraTS2021_00003_flair"
    assert study.missing == ("t1", "t1ce")
    assert dict(study.sources) == {**files, "seg": real_case / "BraTS2021_00003_seg.nii.gz"}
    case = CaseFiles(case_id="mine", layout="files", files=files)
    assert load_study(case).case_id == "mine"


def test_progress_and_cancel(real_case: Path, tmp_path: Path) -> None:
    write_brats(tmp_path, "Small", cropped(read_case(real_case)), suffix=".nii")
    calls: list[tuple[float, str]] = []
    load_study(tmp_path, progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert len(calls) == 6  # four sequences, labels, done
    assert "t1 (Small_t1.nii)" in calls[0][1]
    assert "labels (Small_seg.nii)" in calls[4][1]

    token = CancelToken()
    seen: list[str] = []

    def cancel_after_first(fraction: float, message: str) -> None:
        seen.append(message)
        token.cancel()

    with pytest.raises(Cancelled):
        load_study(tmp_path, progress=cancel_after_first, cancel=token)
    assert len(seen) == 1  # stopped before the second file


def test_load_label_map(real_case: Path) -> None:
    path = real_case / "BraTS2021_00003_seg.nii.gz"
    labels, convention, grid = load_label_map(path)
    assert labels.dtype == np.uint8 and convention is LabelConvention.BRATS
    assert grid.shape == (240, 240, 155)
    assert np.array_equal(labels, np.asanyarray(nib.load(path).dataobj))
    again, _, _ = load_label_map(path, convention="brats", reference=grid)
    assert np.array_equal(again, labels)


def test_a_known_seg_convention_beats_the_guess(tmp_path: Path) -> None:
    """1/2/3 masks are ambiguous (BraTS 2023 vs MSD): a case that knows its mask's convention says so."""
    from brainseg_gui.core.phantom import write_phantom_case

    case = find_case(write_phantom_case(tmp_path, seed=2, shape=(24, 24, 20)))
    truth = load_study(case)
    assert truth.labels is not None
    msd = convert(truth.labels, truth.label_convention, LabelConvention.MSD)
    mask = write_nifti(tmp_path / "corrected_msd.nii.gz", msd, truth.grid.affine)
    guessed = load_study(CaseFiles(case.case_id, case.layout, dict(case.files), seg=mask))
    known = load_study(CaseFiles(case.case_id, case.layout, dict(case.files), seg=mask, seg_convention="msd"))
    assert guessed.label_convention is not LabelConvention.MSD  # the guess takes 1/2/3 as BraTS 2023
    assert known.label_convention is LabelConvention.MSD
    back = convert(known.labels, LabelConvention.MSD, truth.label_convention)
    np.testing.assert_array_equal(back, truth.labels)
