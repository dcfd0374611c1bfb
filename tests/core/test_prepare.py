"""Preparing raw studies: what is written, the transform record, mapping back, cancel, real data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from fault_injection import FailOnCall, listing
from raw_builders import RawCase, dice, shared_prepared, unpack_dicom

from brainseg_gui.core import atomic
from brainseg_gui.core.brain_extraction import erode_mask
from brainseg_gui.core.errors import BrainSegError, Cancelled, StudyLoadError
from brainseg_gui.core.image_io import read_image
from brainseg_gui.core.io import load_study
from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.core.prepare import PreparedStudy, apply_brain_mask, brain_sequence, prepare_study
from brainseg_gui.core.prepared_space import PrepareRecord, map_to_original, prepared_grid, resample_through
from brainseg_gui.core.progress import CancelToken
from brainseg_gui.core.readiness import MAX_BRAIN_ML, assess_readiness, skull_check
from brainseg_gui.core.registration import mean_displacement_mm, rotation_angle
from brainseg_gui.core.study import SEQUENCES, Grid

pytest.importorskip("SimpleITK")

Shared = tuple[RawCase, PreparedStudy, list[tuple[float, str]]]


@pytest.fixture(scope="module")
def shared(real_case: Path, tmp_path_factory: pytest.TempPathFactory) -> Shared:
    return shared_prepared(real_case, tmp_path_factory.getbasetemp() / "issue8")  # type: ignore[return-value]


# -------------------------------------------------------------------------------- prepared space


def test_the_prepared_grid_of_a_brats_like_reference_is_that_grid() -> None:
    reference = Grid((240, 240, 155), np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]]))
    assert prepared_grid(reference, 1.0).same_as(reference, tolerance=1e-9)
    coarse = prepared_grid(reference, 2.0)
    assert coarse.spacing == (2.0, 2.0, 2.0) and coarse.axcodes == ("L", "P", "S")
    low, high = coarse.world_bounds()
    ref_low, ref_high = reference.world_bounds()
    assert np.all(low >= ref_low) and np.all(high <= ref_high) and np.all(ref_high - high < 2.0)


def test_an_oblique_thick_reference_gets_a_1mm_lps_grid_over_its_box() -> None:
    from brainseg_gui.core.registration import rigid_matrix

    reference = Grid((256, 256, 25), rigid_matrix((0, 0, 15.0), (0, 0, 0)) @ np.diag([0.78, 0.78, 6.5, 1.0]))
    grid = prepared_grid(reference)
    assert grid.spacing == (1.0, 1.0, 1.0) and grid.axcodes == ("L", "P", "S")
    low, high = reference.world_bounds()
    assert np.allclose(np.array(grid.shape) - 1, np.floor(high - low), atol=1)
    with pytest.raises(BrainSegError, match="positive number of mm"):
        prepared_grid(reference, 0.0)


def test_resample_through_the_identity_copies_and_nearest_keeps_labels() -> None:
    grid = Grid((8, 9, 10), np.diag([-1.0, -1.0, 1.0, 1.0]))
    labels = np.random.default_rng(0).choice(np.array([0, 1, 2, 4], dtype=np.uint8), grid.shape)
    np.testing.assert_array_equal(resample_through(labels, grid, grid, np.eye(4), nearest=True), labels)
    shifted = np.eye(4)
    shifted[0, 3] = -1.0  # the target's voxel i is the source's i + 1 (x = -i)
    moved = resample_through(labels, grid, grid, shifted, nearest=True)
    assert moved.dtype == np.uint8
    np.testing.assert_array_equal(moved[:-1], labels[1:])
    assert not moved[-1].any()


# ------------------------------------------------------------------------------- the raw BraTS case


@pytest.mark.slow
def test_prepare_writes_brats_named_files_and_a_record_of_every_transform(shared: Shared) -> None:
    raw, prepared, _ = shared
    case_id = raw.case_id
    names = sorted(path.name for path in prepared.out_dir.iterdir())
    assert names == sorted([*(f"{case_id}_{name}.nii.gz" for name in SEQUENCES), f"{case_id}_brainmask.nii.gz",
                            f"{case_id}_prepare.json"])
    data = json.loads(prepared.record_path.read_text())
    assert data["format"] == "brainseg-prepare" and data["reference"] == "t1ce" and data["missing"] == []
    assert data["orientation"] == "LPS" and data["resolution_mm"] == 2.0
    assert set(data["sequences"]) == set(SEQUENCES)
    for name, entry in data["sequences"].items():
        assert entry["source"] == str(raw.files[name])
        assert Grid(tuple(entry["original_grid"]["shape"]), np.array(entry["original_grid"]["affine"])).same_as(
            raw.grids[name], tolerance=1e-9)
        assert entry["registered"] == (name != "t1ce")
        assert set(entry["transform"]) >= {"matrix", "rotation_deg", "translation_mm", "metric", "initialisation"}
    assert data["brain_extraction"]["sequence"] == "t1"  # a T1 with thin slices
    assert data["brain_extraction"]["params"]["fractional_threshold"] == 0.5
    assert any("slice thickness 5 mm" in problem for problem in data["readiness_before"])
    assert data["timings_s"]["total"] > 0
    for name in SEQUENCES:
        image = nib.load(prepared.files[name])
        assert image.shape == prepared.grid.shape and image.get_data_dtype() == np.float32
        np.testing.assert_array_equal(image.affine, prepared.grid.affine)
    mask = np.asarray(nib.load(prepared.brain_mask).dataobj)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    flair = np.asarray(nib.load(prepared.files["flair"]).dataobj)
    assert not flair[mask == 0].any() and (flair[mask == 1] > 0).mean() > 0.99


@pytest.mark.slow
def test_the_recorded_transforms_are_the_known_motions(shared: Shared) -> None:
    raw, prepared, _ = shared
    voxels = np.argwhere(raw.brain)[::40]
    points = (raw.reference_grid.affine @ np.c_[voxels, np.ones(len(voxels))].T).T[:, :3]
    for name, truth in raw.motions.items():
        found = prepared.record.sequences[name].matrix
        assert rotation_angle(found[:3, :3] @ truth[:3, :3].T) < 1.0, name
        assert mean_displacement_mm(found, truth, points) < 1.0, name
    np.testing.assert_array_equal(prepared.record.sequences["t1ce"].matrix, np.eye(4))


@pytest.mark.slow
def test_the_prepared_study_is_brats_ready_and_its_brain_is_the_known_one(shared: Shared) -> None:
    raw, prepared, reports = shared
    assert prepared.grid.same_as(raw.reference_grid)  # a 2 mm LPS reference is kept as it is
    score = dice(np.asarray(nib.load(prepared.brain_mask).dataobj) > 0, raw.brain)
    print(f"prepare: brain Dice vs the known brain {score:.4f}")
    assert score > 0.93
    readiness = assess_readiness(prepared.out_dir)
    assert readiness.ready and readiness.skull is None  # prepared by BrainSeg: its mask is trusted
    for name in SEQUENCES:  # ... and the masked images would pass the skull check anyway
        image, grid = read_image(prepared.files[name])
        assert skull_check(image, grid).stripped, name
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert any(message == "registering flair to t1ce" for _, message in reports)


@pytest.mark.slow
def test_masks_map_back_onto_each_original_grid_exactly(shared: Shared) -> None:
    """Labels predicted in prepared space land on every sequence's own grid, on its anatomy."""
    raw, prepared, _ = shared
    labels = (raw.labels > 0).astype(np.uint8) * 2  # "predicted" on the prepared (= reference) grid
    for name in SEQUENCES:
        mapped, grid = map_to_original(labels, prepared.record_path, name)
        file_grid = read_image(raw.files[name])[1]
        assert grid.shape == file_grid.shape and np.array_equal(grid.affine, file_grid.affine)
        assert mapped.shape == grid.shape and mapped.dtype == np.uint8 and set(np.unique(mapped)) <= {0, 2}
        truth = raw.labels_on(name) > 0
        overlap = dice(mapped > 0, truth)
        assert overlap > (0.999 if name == "t1ce" else 0.85), (name, overlap)
    mapped, _ = map_to_original(labels, prepared.record, "t1ce")
    np.testing.assert_array_equal(mapped, labels)  # the reference: identity, exact
    with pytest.raises(BrainSegError, match="the labels have shape"):
        map_to_original(labels[:-1], prepared.record, "t1")


@pytest.mark.slow
def test_an_edited_brain_mask_is_applied_from_the_sources(shared: Shared, tmp_path: Path) -> None:
    import shutil

    _, prepared, _ = shared
    copy = tmp_path / "prepared"
    shutil.copytree(prepared.out_dir, copy)
    record = copy / prepared.record_path.name
    smaller = erode_mask(np.asarray(prepared.brain), prepared.grid, 4.0)
    updated = apply_brain_mask(record, smaller)
    written = np.asarray(nib.load(updated.brain_mask).dataobj) > 0
    np.testing.assert_array_equal(written, smaller)
    t1 = np.asarray(nib.load(updated.files["t1"]).dataobj)
    assert not t1[~smaller].any() and (t1[smaller] > 0).mean() > 0.99
    np.testing.assert_allclose(t1[smaller], np.asarray(prepared.images["t1"])[smaller], atol=1e-3)
    data = json.loads(record.read_text())
    assert data["brain_extraction"]["method"] == "edited by the user"
    assert data["sequences"]["flair"]["transform"]["matrix"] == \
        prepared.record.data["sequences"]["flair"]["transform"]["matrix"]
    with pytest.raises(BrainSegError, match="the brain mask has shape"):
        apply_brain_mask(record, smaller[:-1])


# -------------------------------------------------------------------------------- small and fast


def test_brain_sequence_prefers_thin_slices_then_t1() -> None:
    thin, thick = Grid((4, 4, 4), np.eye(4)), Grid((4, 4, 4), np.diag([1.0, 1.0, 5.0, 1.0]))
    assert brain_sequence({"t1": thin, "t1ce": thin, "flair": thin}) == "t1"
    assert brain_sequence({"t1": thick, "t1ce": thin, "flair": thin}) == "t1ce"
    assert brain_sequence({"t1": thick, "flair": Grid((4, 4, 4), np.diag([1.0, 1.0, 3.0, 1.0]))}) == "flair"


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom_case(tmp_path_factory.mktemp("phantom8"), seed=3, shape=(40, 48, 36))


def test_a_skull_stripped_study_is_registered_and_kept_as_it_is(phantom_case: Path, tmp_path: Path) -> None:
    prepared = prepare_study(phantom_case, tmp_path / "out")
    brats = load_study(phantom_case)
    again = load_study(prepared.out_dir)
    assert again.grid.same_as(brats.grid)
    for name in SEQUENCES:
        transform = prepared.record.data["sequences"][name]["transform"]
        print(name, transform["rotation_total_deg"], transform["translation_mm"])
        assert transform["rotation_total_deg"] < 1.0 and np.linalg.norm(transform["translation_mm"]) < 1.0, name
    np.testing.assert_allclose(again.images["t1ce"], brats.images["t1ce"])  # the reference: not interpolated
    assert prepared.record.data["brain_extraction"]["method"].startswith("already skull-stripped")


def test_the_ground_truth_comes_along_so_the_prepared_case_can_be_scored(phantom_case: Path, tmp_path: Path) -> None:
    brats = load_study(phantom_case)
    assert brats.labels is not None
    prepared = prepare_study(phantom_case, tmp_path / "out")
    truth_file = prepared.out_dir / f"{prepared.case_id}_seg.nii.gz"
    assert truth_file.is_file()
    assert prepared.record.data["truth"]["on"] == "t1ce" and prepared.record.data["truth"]["file"] == truth_file.name
    again = load_study(prepared.out_dir)  # found as the prepared case's own label map
    assert again.labels is not None and set(np.unique(again.labels)) == set(np.unique(brats.labels))
    back, grid = map_to_original(np.asarray(again.labels), prepared.record, "t1ce")
    assert grid.same_as(brats.grid)
    for value in (1, 2, 4):
        assert dice(back == value, brats.labels == value) > 0.95, value


def test_a_truth_on_no_sequence_grid_is_not_carried_and_said(phantom_case: Path, tmp_path: Path) -> None:
    import shutil

    case = Path(shutil.copytree(phantom_case, tmp_path / "case"))
    seg = next(case.glob("*_seg.nii.gz"))
    image = nib.load(seg)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:-2], image.affine), seg)  # another grid
    prepared = prepare_study(case, tmp_path / "out", skull_strip=False)
    assert not (prepared.out_dir / f"{prepared.case_id}_seg.nii.gz").exists()
    assert any("ground truth" in warning for warning in prepared.record.data["warnings"])


def test_a_faint_rim_of_a_thick_sequence_does_not_grow_a_stripped_brain(phantom_case: Path, tmp_path: Path) -> None:
    """Thick slices interpolated onto 1 mm leave faint values past the brain's edge: the brain is the
    thin sequence's non-zero region, not the union (which gave a 15 % larger brain and worse Dice)."""
    from scipy import ndimage

    case = tmp_path / "case"
    case.mkdir()
    for path in phantom_case.iterdir():
        (case / path.name).write_bytes(path.read_bytes())
    flair_path = next(case.glob("*_flair.nii.gz"))
    image = nib.load(flair_path)
    flair = np.asarray(image.dataobj).astype(np.float32)
    rim = ndimage.binary_dilation(flair > 0, iterations=2) & (flair == 0)
    flair[rim] = 1.0
    nib.save(nib.Nifti1Image(flair, image.affine), flair_path)
    prepared = prepare_study(case, tmp_path / "out")
    brain = np.asarray(nib.load(prepared.brain_mask).dataobj) > 0
    t1ce = load_study(phantom_case).images["t1ce"]
    assert brain.sum() == pytest.approx(ndimage.binary_fill_holes(t1ce > 0).sum(), rel=0.02)
    assert not brain[rim].all()


def test_cancel_stops_before_anything_is_written(phantom_case: Path, tmp_path: Path) -> None:
    token = CancelToken()

    def progress(fraction: float, message: str) -> None:
        if message.startswith("registering"):
            token.cancel()

    with pytest.raises(Cancelled):
        prepare_study(phantom_case, tmp_path / "out", progress=progress, cancel=token)
    assert list((tmp_path / "out").glob("*_prepare.json")) == []


def test_a_failed_write_leaves_the_earlier_preparation_whole(phantom_case: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Images, brain mask and record are one set: a rename failing half-way restores every old file."""
    out = tmp_path / "out"
    prepare_study(phantom_case, out)
    before = listing(out)
    monkeypatch.setattr(atomic, "_replace", FailOnCall(atomic._replace, 4))  # after 3 of the 6 files
    with pytest.raises(BrainSegError, match="the disk is full"):
        prepare_study(phantom_case, out, resolution_mm=1.5)
    assert listing(out) == before
    monkeypatch.setattr(atomic, "_replace", FailOnCall(atomic._replace.function, 4))
    with pytest.raises(BrainSegError, match="the disk is full"):
        prepare_study(phantom_case, tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()  # a failed first preparation leaves no folder either


def test_bad_inputs_are_named(phantom_case: Path, tmp_path: Path) -> None:
    with pytest.raises(BrainSegError, match="unknown reference sequence 't1c'"):
        prepare_study(phantom_case, tmp_path, reference="t1c")
    with pytest.raises(StudyLoadError, match="does not exist"):
        prepare_study(tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(BrainSegError, match="nothing to prepare"):
        prepare_study(None, tmp_path / "out")
    with pytest.raises(StudyLoadError, match="not a BrainSeg prepare record"):
        PrepareRecord.from_dict({"format": "other"})
    broken = tmp_path / "broken_prepare.json"
    broken.write_text("{")
    with pytest.raises(StudyLoadError, match="cannot read the prepare record"):
        map_to_original(np.zeros((2, 2, 2)), broken)


# ------------------------------------------------------------------------------------ real studies


def _check_written(prepared: PreparedStudy, sequence: str, min_ml: float, max_ml: float) -> dict[str, Any]:
    assert prepared.files.keys() == {sequence}
    assert prepared.grid.spacing == (1.0, 1.0, 1.0) and prepared.grid.axcodes == ("L", "P", "S")
    assert prepared.files[sequence].name == f"{prepared.case_id}_{sequence}.nii.gz"
    data = json.loads(prepared.record_path.read_text())
    assert data["missing"] == [name for name in SEQUENCES if name != sequence]
    assert data["brain_extraction"]["method"].startswith("BET-style")
    volume = data["brain_extraction"]["volume_ml"]
    print(f"{prepared.case_id}: brain {volume:.0f} mL, {data['timings_s']['total']:.1f} s")
    assert min_ml < volume < max_ml
    image = nib.load(prepared.files[sequence])
    assert image.shape == prepared.grid.shape
    # Prepared by BrainSeg: ready (the brain mask is the user's to check; the record lists the files).
    assert assess_readiness(prepared.out_dir).ready
    if volume > MAX_BRAIN_ML:  # too large to be a brain: the user is told
        assert any(w.startswith(f"the extracted brain is {volume:.0f} mL, more than a brain") for w in data["warnings"])
        # ... and without the record the image would not pass for skull-stripped
        prepared.record_path.unlink()
        assert assess_readiness(prepared.out_dir).problems[0].startswith("tissue outside the brain")
    return data


@pytest.mark.slow
def test_the_thick_slice_clinical_nrrd_is_prepared(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "nrrd" / "brain1_image.nrrd"
    prepared = prepare_study(source, tmp_path)
    data = _check_written(prepared, "flair", 1000.0, 3000.0)
    assert data["reference"] == "flair" and "reference t1ce is missing; registered to flair instead" in data["warnings"]
    tumour, tumour_grid = read_image(shared_data / "nrrd" / "brain1_label.nrrd")
    # The expert mask, taken into prepared space and back, is where it was (nearest neighbour, 6.5 mm slices).
    forward = resample_through(tumour.astype(np.uint8), tumour_grid, prepared.grid,
                               prepared.record.sequences["flair"].matrix, nearest=True)
    back, grid = map_to_original(forward, prepared.record, "flair")
    assert grid.same_as(tumour_grid, tolerance=1e-9)
    assert dice(back > 0, tumour > 0) > 0.9


@pytest.mark.slow
def test_the_dicom_head_is_prepared_as_a_t1(shared_data: Path, tmp_path_factory: pytest.TempPathFactory,
                                            tmp_path: Path) -> None:
    series = unpack_dicom(shared_data, tmp_path_factory.getbasetemp())
    prepared = prepare_study(None, tmp_path, files={"t1": series}, case_id="SAG-anon")
    data = _check_written(prepared, "t1", 1000.0, 2000.0)  # a 3-year-old's brain
    assert data["sequences"]["t1"]["original_grid"]["orientation"] == "PIR"
    assert data["brain_extraction"]["sequence"] == "t1"
