"""What BrainSeg agrees to read: nothing outside the study, no pipes or devices, no huge declared images.

Each kind of hostile input is built here, in the test: detached NRRD / MetaImage headers whose data
files lie elsewhere (relative, absolute, LIST, numbered patterns), symlinks, headers declaring huge
images (NIfTI, .nii.gz, NRRD, MetaImage), pipes named like images, labels, sidecars and records,
single-slice images. Then property tests: mutated NIfTI-1 headers and random NRRD / MetaImage
header text either read (finite affine) or raise StudyLoadError, never anything else.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainseg_gui.core.cases import find_case, find_cases
from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.image_io import read_image, read_sidecar
from brainseg_gui.core.io import load_label_map
from brainseg_gui.core.read_guard import MAX_DATA_OFFSET, OutsideStudyError, check_data_files
from brainseg_gui.core.readiness import NotReadyError, assess_readiness, read_sequences

SHAPE = (16, 12, 10)
NRRD_HEAD = ("NRRD0004\ntype: uchar\ndimension: 3\nspace: left-posterior-superior\nsizes: {sizes}\n"
             "space directions: (1,0,0) (0,1,0) (0,0,1)\nencoding: raw\n")
META_HEAD = "ObjectType = Image\nNDims = 3\nDimSize = {sizes}\nElementType = MET_UCHAR\n"


def _in(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _nifti(path: Path, shape: tuple[int, ...] = SHAPE, dtype: type = np.int16) -> Path:
    array = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    nib.save(nib.Nifti1Image(array, np.diag([-1.0, -1.0, 1.0, 1.0])), path)
    return path


def _raw(path: Path, count: int = int(np.prod(SHAPE)), value: int = 7) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes([value]) * count)
    return path


def _header(path: Path, head: str, data_line: str, sizes: str = "16 12 10") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head.format(sizes=sizes) + data_line + "\n")
    return path


def _case(folder: Path, prefix: str = "P1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("t1", "t1ce", "t2", "flair"):
        _nifti(folder / f"{prefix}_{name}.nii.gz")
    return folder


@pytest.fixture
def pipe() -> Iterator[Callable[[Path], Path]]:
    """Make FIFOs that nobody may open: should a regression open one for reading, a writer comes and
    goes (the reader sees EOF) so that the test fails instead of hanging."""
    made: list[Path] = []
    opened: list[Path] = []
    stop = threading.Event()

    def release() -> None:
        while not stop.wait(0.2):
            for path in made:
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # succeeds only if a reader waits
                    opened.append(path)
                except OSError:
                    pass  # nobody is reading it: as it should be

    thread = threading.Thread(target=release, daemon=True)
    thread.start()

    def make(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        made.append(path)
        return path

    yield make
    stop.set()
    thread.join()
    assert not opened, f"opened for reading: {opened}"


# -- detached headers ------------------------------------------------------------------------------


@pytest.mark.parametrize("data_line", [
    "ElementDataFile = ../secret.raw",
    "ElementDataFile = {secret}",
    "ElementDataFile = LIST 2D\ninside.raw\n../secret.raw",
    "ElementDataFile = ../secret%d.raw 0 0 1",
])
def test_a_metaimage_never_reads_a_data_file_outside_its_folder(tmp_path: Path, data_line: str) -> None:
    secret = _raw(tmp_path / "secret.raw")
    _raw(tmp_path / "secret0.raw")
    _raw(tmp_path / "study" / "inside.raw")
    header = _header(tmp_path / "study" / "a.mhd", META_HEAD, data_line.format(secret=secret))
    with pytest.raises(OutsideStudyError, match="secret0?.raw") as error:
        read_image(header)
    assert "a.mhd" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("data_line", [
    "data file: ../secret.raw",
    "data file: {secret}",
    "datafile: ../secret.raw",
    "data file: LIST 2\ninside.raw\n\n../secret.raw",
    "data file: ../secret%d.raw 0 0 1 3",
])
def test_a_nrrd_header_never_reads_a_data_file_outside_its_folder(tmp_path: Path, data_line: str) -> None:
    secret = _raw(tmp_path / "secret.raw")
    _raw(tmp_path / "secret0.raw")
    _raw(tmp_path / "study" / "inside.raw")
    header = _header(tmp_path / "study" / "a.nhdr", NRRD_HEAD, data_line.format(secret=secret))
    with pytest.raises(OutsideStudyError, match="secret0?.raw"):
        read_image(header)


def test_an_attached_nrrd_naming_a_data_file_is_checked_too(tmp_path: Path) -> None:
    _raw(tmp_path / "secret.raw")
    header = _header(tmp_path / "study" / "a.nrrd", NRRD_HEAD, "data file: ../secret.raw\n")
    with pytest.raises(OutsideStudyError):
        read_image(header)


def test_detached_data_files_inside_the_folder_are_read(tmp_path: Path) -> None:
    study = tmp_path / "study"
    _raw(study / "one.raw")
    for k in range(SHAPE[2]):
        _raw(study / "slices" / f"s{k:03d}.raw", SHAPE[0] * SHAPE[1], value=k)
    names = "\n".join(f"slices/s{k:03d}.raw" for k in range(SHAPE[2]))
    headers = [
        _header(study / "one.nhdr", NRRD_HEAD, "data file: one.raw"),
        _header(study / "one.mhd", META_HEAD, "ElementDataFile = ./one.raw"),
        _header(study / "list.nhdr", NRRD_HEAD, f"data file: LIST 2\n{names}"),
        _header(study / "list.mhd", META_HEAD, f"ElementDataFile = LIST 2D\n{names}"),
        _header(study / "numbered.nhdr", NRRD_HEAD, f"data file: slices/s%03d.raw 0 {SHAPE[2] - 1} 1 2"),
        _header(study / "numbered.mhd", META_HEAD, f"ElementDataFile = slices/s%03d.raw 0 {SHAPE[2] - 1} 1"),
    ]
    for header in headers:
        array, grid = read_image(header)
        assert array.shape == SHAPE and grid.shape == SHAPE, header.name
    assert read_image(headers[2])[0][0, 0].tolist() == list(range(SHAPE[2]))
    assert len(check_data_files(headers[4])) == SHAPE[2]


def test_attached_voxels_past_the_header_limit_are_read(tmp_path: Path) -> None:
    """Only the header is parsed: NRRD up to its empty line, MetaImage up to ElementDataFile."""
    shape = (128, 128, 80)  # 1.25 MiB of voxels after the header
    voxels = bytes(range(256)) * (int(np.prod(shape)) // 256)
    sizes = " ".join(map(str, shape))
    (tmp_path / "a.nrrd").write_bytes((NRRD_HEAD.format(sizes=sizes) + "\n").encode() + voxels)
    (tmp_path / "a.mha").write_bytes((META_HEAD.format(sizes=sizes) + "ElementDataFile = LOCAL\n").encode() + voxels)
    for name in ("a.nrrd", "a.mha"):
        assert read_image(tmp_path / name)[0].shape == shape


def test_a_data_file_that_is_a_pipe_or_a_folder_is_refused(tmp_path: Path, pipe: Callable[[Path], Path]) -> None:
    study = tmp_path / "study"
    pipe(study / "data.raw")
    (study / "folder.raw").mkdir()
    for name in ("data.raw", "folder.raw"):
        header = _header(study / f"{name}.nhdr", NRRD_HEAD, f"data file: {name}")
        with pytest.raises(StudyLoadError, match="not a regular file"):
            read_image(header)


@pytest.mark.parametrize(("path", "text"), [
    ("a.nhdr", NRRD_HEAD + "byte skip: {skip}\ndata file: a.raw\n"),
    ("a.mhd", META_HEAD + "HeaderSize = {skip}\nElementDataFile = a.raw\n"),
])
def test_a_header_skipping_gigabytes_is_refused(tmp_path: Path, path: str, text: str) -> None:
    _raw(tmp_path / "a.raw")
    (tmp_path / path).write_text(text.format(sizes="16 12 10", skip=MAX_DATA_OFFSET + 1))
    with pytest.raises(StudyLoadError, match="passes the"):
        read_image(tmp_path / path)


@pytest.mark.parametrize("pattern", ["x%s.raw 0 3 1", "x%d%d.raw 0 3 1", "x%03d.raw 0 9999999 1", "x%d.raw a b c"])
def test_a_numbered_pattern_beyond_one_integer_is_refused(tmp_path: Path, pattern: str) -> None:
    header = _header(tmp_path / "a.nhdr", NRRD_HEAD, f"data file: {pattern}")
    with pytest.raises(StudyLoadError, match="pattern"):
        read_image(header)


@pytest.mark.parametrize(("name", "text", "words"), [
    # ITK's NrrdIO dies with a segmentation fault reading text-encoded voxels that are not text
    ("a.nhdr", NRRD_HEAD.replace("encoding: raw", "encoding: ascii") + "data file: a.raw\n", "encoding"),
    ("a.nrrd", NRRD_HEAD.replace("encoding: raw", "encoding: TEXT") + "\n", "encoding"),
    # MetaIO takes NDims = -1 for four billion dimensions and loops for ever
    ("a.mhd", META_HEAD.replace("NDims = 3", "NDims = -1") + "ElementDataFile = a.raw\n", "NDims"),
    ("a.mha", META_HEAD.replace("NDims = 3", "NDims = 2147483648") + "ElementDataFile = LOCAL\n", "NDims"),
])
def test_headers_that_crash_or_hang_itk_are_refused_before_it_reads_them(tmp_path: Path, name: str, text: str,
                                                                          words: str) -> None:
    _raw(tmp_path / "a.raw")
    (tmp_path / name).write_bytes(text.format(sizes="16 12 10").encode() + bytes(range(256)))
    with pytest.raises(StudyLoadError, match=words):
        check_data_files(tmp_path / name)  # the guard alone: without it ITK would take the test process down


def test_a_header_declaring_an_empty_axis_is_refused(tmp_path: Path) -> None:
    _raw(tmp_path / "a.raw")
    header = _header(tmp_path / "a.mhd", META_HEAD, "ElementDataFile = a.raw", sizes="-1 -1 0")
    with pytest.raises(StudyLoadError, match="empty image|negative"):
        read_image(header)


# -- symlinks --------------------------------------------------------------------------------------


def test_a_symlink_leading_outside_its_folder_is_refused_naming_the_target(tmp_path: Path) -> None:
    target = _nifti(_in(tmp_path / "elsewhere", "real.nii.gz"))
    (tmp_path / "study").mkdir()
    link = tmp_path / "study" / "x.nii.gz"
    link.symlink_to(target)
    with pytest.raises(OutsideStudyError, match=str(target)):
        read_image(link)
    with pytest.raises(OutsideStudyError, match=str(target)):
        find_case(link)


def test_a_symlink_inside_its_folder_is_read(tmp_path: Path) -> None:
    real = _nifti(_in(tmp_path / "sub", "real.nii.gz"))
    (tmp_path / "x.nii.gz").symlink_to(real)
    (tmp_path / "y.nii.gz").symlink_to("sub/real.nii.gz")
    for link in ("x.nii.gz", "y.nii.gz"):
        assert read_image(tmp_path / link)[0].shape == SHAPE


def test_a_symlink_to_dev_zero_is_refused(tmp_path: Path) -> None:
    for name in ("x.nii.gz", "x.nrrd"):
        (tmp_path / name).symlink_to("/dev/zero")
        with pytest.raises(StudyLoadError, match="/dev/zero"):
            read_image(tmp_path / name)


def test_a_case_folder_with_a_file_linked_from_elsewhere_is_refused(tmp_path: Path) -> None:
    case = _case(tmp_path / "case")
    elsewhere = _nifti(_in(tmp_path / "other", "labels.nii.gz"), dtype=np.uint8)
    (case / "P1_seg.nii.gz").symlink_to(elsewhere)
    with pytest.raises(OutsideStudyError, match="P1_seg.nii.gz"):
        find_case(case)
    with pytest.raises(OutsideStudyError, match="P1_seg.nii.gz"):
        find_cases(tmp_path / "case")


def test_a_linked_folder_leading_outside_a_batch_is_refused(tmp_path: Path) -> None:
    _case(tmp_path / "outside" / "case")
    (tmp_path / "batch").mkdir()
    _case(tmp_path / "batch" / "A", prefix="A")
    (tmp_path / "batch" / "B").symlink_to(tmp_path / "outside" / "case")
    with pytest.raises(OutsideStudyError, match="batch/B"):
        find_cases(tmp_path / "batch")


def test_nothing_reads_nifti_pairs(tmp_path: Path) -> None:
    """A .hdr/.img pair is not a format BrainSeg opens, so its .img is never followed."""
    nib.save(nib.Nifti1Pair(np.zeros(SHAPE, np.int16), np.eye(4)), tmp_path / "pair.hdr")
    with pytest.raises(StudyLoadError, match="unsupported file type"):
        read_image(tmp_path / "pair.hdr")


# -- huge declared images --------------------------------------------------------------------------


def _declared_nifti(path: Path, shape: tuple[int, ...], dtype: type = np.float32, offset: int = 352,
                    payload: bytes = b"") -> Path:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = offset
    data = header.binaryblock + b"\0" * 4 + payload
    path.write_bytes(gzip.compress(data, compresslevel=1) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_a_nifti_declaring_a_huge_image_is_refused_before_allocation(tmp_path: Path, name: str) -> None:
    path = _declared_nifti(tmp_path / name, (4000, 4000, 4000))
    with pytest.raises(StudyLoadError, match="more than BrainSeg reads") as error:
        read_image(path)
    assert "4000x4000x4000" in str(error.value)


def test_a_gzip_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    """1000x1000x600 float32 (2.4 GB) of zeros: refused before a byte of the voxels is decompressed."""
    path = _declared_nifti(tmp_path / "bomb.nii.gz", (1000, 1000, 600), payload=bytes(8 << 20))
    with pytest.raises(StudyLoadError, match="1000x1000x600"):
        read_image(path)


def test_a_nii_gz_longer_than_its_header_says_is_read_only_as_far_as_declared(tmp_path: Path) -> None:
    voxels = np.arange(int(np.prod(SHAPE)), dtype=np.int16)
    payload = voxels.tobytes(order="F") + bytes(64 << 20)  # 64 MiB the header does not declare
    path = _declared_nifti(tmp_path / "long.nii.gz", SHAPE, np.int16, payload=payload)
    array, grid = read_image(path)
    assert grid.shape == SHAPE and np.array_equal(array.ravel(order="F"), voxels)


def test_a_nii_gz_whose_voxels_start_gigabytes_in_is_refused(tmp_path: Path) -> None:
    path = _declared_nifti(tmp_path / "far.nii.gz", SHAPE, offset=1 << 34)
    with pytest.raises(StudyLoadError, match="bytes into the file"):
        read_image(path)


@pytest.mark.parametrize(("name", "text"), [
    ("huge.nrrd", NRRD_HEAD.replace("uchar", "float") + "endian: little\n\n"),
    ("huge.nhdr", NRRD_HEAD + "data file: huge.raw\n"),
    ("huge.mha", META_HEAD + "ElementDataFile = LOCAL\n"),
    ("huge.mhd", META_HEAD.replace("MET_UCHAR", "MET_DOUBLE") + "ElementDataFile = huge.raw\n"),
])
def test_a_nrrd_or_metaimage_declaring_a_huge_image_is_refused(tmp_path: Path, name: str, text: str) -> None:
    _raw(tmp_path / "huge.raw", 1024)
    (tmp_path / name).write_bytes(text.format(sizes="4000 4000 4000").encode() + bytes(1024))
    with pytest.raises(StudyLoadError, match="more than BrainSeg reads"):
        read_image(tmp_path / name)


# -- pipes -----------------------------------------------------------------------------------------


def test_a_pipe_named_like_an_image_is_never_opened(tmp_path: Path, pipe: Callable[[Path], Path]) -> None:
    for name in ("x.nii.gz", "x.nrrd", "x.mha", "x.dcmseries", "x.dcm", "x"):
        with pytest.raises(StudyLoadError, match="pipe"):
            read_image(pipe(tmp_path / name))


def test_a_pipe_as_the_labels_of_a_case_folder_is_refused(tmp_path: Path, pipe: Callable[[Path], Path]) -> None:
    case = _case(tmp_path / "case")
    pipe(case / "P1_seg.nii.gz")
    with pytest.raises(StudyLoadError, match=r"P1_seg.nii.gz is a pipe"):
        find_case(case)
    with pytest.raises(StudyLoadError, match=r"P1_seg.nii.gz is a pipe"):
        find_case(case / "P1_flair.nii.gz")
    with pytest.raises(StudyLoadError, match=r"P1_seg.nii.gz is a pipe"):
        find_cases(tmp_path)
    with pytest.raises(StudyLoadError, match="pipe"):
        load_label_map(case / "P1_seg.nii.gz")


def test_a_pipe_beside_another_case_does_not_stop_this_one(tmp_path: Path, pipe: Callable[[Path], Path]) -> None:
    case = _case(tmp_path / "flat")
    pipe(case / "P2_flair.nii.gz")  # another case's file, never opened
    assert find_case(case / "P1_flair.nii.gz").case_id == "P1"
    with pytest.raises(StudyLoadError, match=r"P2_flair.nii.gz is a pipe"):
        find_case(case / "P2_flair.nii.gz")


def test_a_pipe_as_an_msd_label_map_is_refused(tmp_path: Path, pipe: Callable[[Path], Path]) -> None:
    _nifti(_in(tmp_path / "imagesTr", "BRATS_001.nii.gz"), (*SHAPE, 4))
    pipe(tmp_path / "labelsTr" / "BRATS_001.nii.gz")
    with pytest.raises(StudyLoadError, match="pipe"):
        find_case(tmp_path / "imagesTr" / "BRATS_001.nii.gz")


def test_a_pipe_as_a_sidecar_or_a_prepare_record_is_never_opened(tmp_path: Path,
                                                               pipe: Callable[[Path], Path]) -> None:
    case = _case(tmp_path / "case")
    pipe(case / "P1_flair.json")
    with pytest.raises(StudyLoadError, match="pipe"):
        read_sidecar(case / "P1_flair.nii.gz")
    assert read_sidecar(case / "P1_t1.nii.gz") == {}
    pipe(case / "P1_prepare.json")
    assert assess_readiness(case).skull is not None  # the record is passed over, unopened: the skull is checked


def test_a_series_file_naming_a_pipe_is_refused(tmp_path: Path, pipe: Callable[[Path], Path]) -> None:
    frame = pipe(tmp_path / "frame.dcm")
    series = tmp_path / "P1_flair.dcmseries"
    series.write_text(json.dumps({"format": "brainseg-dicom-series", "version": 1, "series_uid": "1.2.3",
                                  "frames": [{"file": str(frame), "frame": None}]}))
    with pytest.raises(StudyLoadError, match="pipe"):
        read_image(series)


# -- single slices ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "words"), [((64, 64, 1), "single slice"), ((64, 64, 4), "4 along one axis")])
def test_a_slice_is_described_but_never_ready(tmp_path: Path, shape: tuple[int, ...], words: str) -> None:
    path = _nifti(tmp_path / "slice.nii.gz", shape)
    assert read_image(path)[0].shape == shape  # info may describe it
    readiness = assess_readiness(path, check_skull=False)
    assert not readiness.ready and any(words in problem for problem in readiness.problems)
    assert "3D volume" in readiness.describe() and "prepare it first" not in readiness.describe()
    with pytest.raises(NotReadyError, match=words):  # what preparing reads with
        read_sequences(find_case(path))


# -- property tests --------------------------------------------------------------------------------
# Each example starts from a valid file and mutates up to three of its header fields (or cuts it), so
# that most examples get deep into the readers and some read: the property is about both outcomes.

PROPERTIES = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from([0.0, 1.0, -1.0, 1e-30, 1e30]))
NIFTI_CODES = [2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304]
DTYPES = [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64]
WORDS = st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\n\r"), max_size=12)
DATA_FILES = st.sampled_from([
    "data.raw", "./data.raw", "../outside.raw", "{outside}", "LIST\ndata.raw", "LIST 2\n../outside.raw",
    "data%d.raw 0 1 1", "../outside%d.raw 0 0 1", "%s 0 1 1", "", "LOCAL", "missing.raw", "data.raw\0x",
])


def _read_or_refuse(path: Path, *, outside: bool = False) -> None:
    """The property: an array on a finite grid, or StudyLoadError (always, for a file outside)."""
    try:
        array, grid = read_image(path)
    except StudyLoadError as exc:
        assert "\n" not in str(exc), "the CLI prints an error as one line"
        return
    assert not outside, f"{path} read a data file outside its folder"
    assert np.all(np.isfinite(grid.affine)) and array.shape[:3] == grid.shape
    assert array.nbytes <= 2 << 30


def _voxel_bytes(draw: st.DrawFn, shape: tuple[int, ...], dtype: type) -> bytes:
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).bytes(int(np.prod(shape)) * np.dtype(dtype).itemsize)


def _nifti_mutations(draw: st.DrawFn, fields: np.ndarray) -> None:
    mutations = {
        "dim": lambda: [draw(st.integers(-2, 9)), *draw(st.lists(
            st.one_of(st.integers(0, 24), st.sampled_from([-1, 32767, -32768, 4000])), min_size=7, max_size=7))],
        "datatype": lambda: draw(st.one_of(st.sampled_from(NIFTI_CODES), st.integers(-32768, 32767))),
        "bitpix": lambda: draw(st.integers(-8, 128)),
        "vox_offset": lambda: draw(st.one_of(FLOATS, st.integers(0, 1 << 40).map(float))),
        "scl_slope": lambda: draw(FLOATS),
        "scl_inter": lambda: draw(FLOATS),
        "pixdim": lambda: draw(st.lists(FLOATS, min_size=8, max_size=8)),
        "qform_code": lambda: draw(st.integers(-1, 5)),
        "sform_code": lambda: draw(st.integers(-1, 5)),
        "quatern_b": lambda: draw(FLOATS),
        "qoffset_x": lambda: draw(FLOATS),
        "srow_x": lambda: draw(st.lists(FLOATS, min_size=4, max_size=4)),
        "magic": lambda: draw(st.sampled_from([b"ni1", b"n+2", b"", b"xyz"])),
        "sizeof_hdr": lambda: draw(st.sampled_from([0, 540, 1 << 24, -348])),
    }
    for name in draw(st.lists(st.sampled_from(sorted(mutations)), max_size=3, unique=True)):
        fields[name] = mutations[name]()


@st.composite
def nifti_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid NIfTI-1 file (random shape, dtype, affine), up to three header fields mutated, maybe cut."""
    shape = tuple(draw(st.lists(st.integers(1, 12), min_size=3, max_size=4)))
    dtype = draw(st.sampled_from(DTYPES))
    affine = np.diag([*draw(st.lists(st.sampled_from([-1.0, 0.5, 1.0, 3.0]), min_size=3, max_size=3)), 1.0])
    header = nib.Nifti1Image(np.zeros(shape, dtype), affine).header
    header["vox_offset"] = 352
    block = bytearray(header.binaryblock)
    _nifti_mutations(draw, np.ndarray((), dtype=header.template_dtype, buffer=block))
    data = bytes(block) + b"\0" * 4 + _voxel_bytes(draw, shape, dtype)
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return draw(st.sampled_from(["x.nii", "x.nii.gz"])), data


@PROPERTIES
@given(nifti_files())
def test_any_nifti_header_reads_or_raises_study_load_error(file: tuple[str, bytes]) -> None:
    name, data = file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(gzip.compress(data, compresslevel=1) if name.endswith(".gz") else data)
        _read_or_refuse(path)


SIZES = st.lists(st.one_of(st.integers(0, 20), st.sampled_from([-1, 4000, 10**12])), max_size=5).map(
    lambda sizes: " ".join(map(str, sizes)))
NRRD_FIELDS = {
    "type": st.sampled_from(["uchar", "short", "float", "double", "int64", "block", "rgb"]) | WORDS,
    "dimension": st.integers(-1, 20).map(str) | WORDS,
    "sizes": SIZES | WORDS,
    "encoding": st.sampled_from(["raw", "gzip", "ascii", "text", "hex", "bzip2"]) | WORDS,
    "endian": st.sampled_from(["little", "big"]) | WORDS,
    "space": st.sampled_from(["left-posterior-superior", "RAS", "3D-right-handed"]) | WORDS,
    "space directions": st.sampled_from(["(0,0,0) (0,1,0) (0,0,1)", "(nan,0,0) (0,1,0) (0,0,1)",
                                          "none (1,0,0) (0,1,0)", "(1e308,0,0) (0,1e308,0) (0,0,1e308)"]) | WORDS,
    "space origin": st.sampled_from(["(0,0,0)", "(inf,0,0)", "(1e308,1e308,1e308)"]) | WORDS,
    "byte skip": st.integers(-2, 1 << 40).map(str),
    "line skip": st.integers(-2, 100).map(str),
    "kinds": st.sampled_from(["domain domain domain", "RGB-color"]) | WORDS,
    "data file": DATA_FILES,
}
META_FIELDS = {
    "ObjectType": st.sampled_from(["Image", "Mesh"]) | WORDS,
    "NDims": st.integers(-1, 20).map(str) | WORDS,
    "DimSize": SIZES | WORDS,
    "ElementType": st.sampled_from(["MET_UCHAR", "MET_SHORT", "MET_FLOAT", "MET_DOUBLE", "MET_OTHER"]) | WORDS,
    "ElementSpacing": st.sampled_from(["1 1 1", "0 0 0", "nan 1 1", "-1 1 1"]) | WORDS,
    "Offset": st.sampled_from(["0 0 0", "inf 0 0"]) | WORDS,
    "TransformMatrix": st.sampled_from(["1 0 0 0 1 0 0 0 1", "0 0 0 0 0 0 0 0 0"]) | WORDS,
    "CompressedData": st.sampled_from(["True", "False"]) | WORDS,
    "HeaderSize": st.integers(-2, 1 << 40).map(str),
    "ElementNumberOfChannels": st.integers(-1, 8).map(str),
    "ElementDataFile": DATA_FILES,
}


def _mutated(draw: st.DrawFn, fields: dict[str, str], choices: dict[str, st.SearchStrategy[str]]) -> dict[str, str]:
    """`fields` with up to three of them changed to a drawn value, dropped, or added."""
    fields = dict(fields)
    for key in draw(st.lists(st.sampled_from(sorted(choices)), max_size=3, unique=True)):
        if draw(st.integers(0, 4)) == 0:
            fields.pop(key, None)
        else:
            fields[key] = draw(choices[key])
    return fields


@st.composite
def nrrd_files(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    """A valid NRRD (attached .nrrd, or .nhdr with data.raw), up to three fields changed."""
    shape = tuple(draw(st.lists(st.integers(1, 10), min_size=3, max_size=3)))
    name = draw(st.sampled_from(["x.nrrd", "x.nhdr"]))
    fields = {"type": "short", "dimension": "3", "space": "left-posterior-superior",
              "sizes": " ".join(map(str, shape)), "space directions": "(1,0,0) (0,2,0) (0,0,1.5)",
              "encoding": "raw", "endian": "little", "space origin": "(1,2,3)"}
    if name == "x.nhdr":
        fields["data file"] = "data.raw"
    fields = _mutated(draw, fields, NRRD_FIELDS)
    text = "NRRD0004\n" + "".join(f"{key}: {value}\n" for key, value in fields.items()) + "\n"
    voxels = _voxel_bytes(draw, shape, np.int16) if name == "x.nrrd" else b""
    return name, text.encode("latin-1") + voxels, "outside" in fields.get("data file", "")


@st.composite
def metaimage_files(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    """A valid MetaImage (.mha with LOCAL voxels, or .mhd with data.raw), up to three fields changed."""
    shape = tuple(draw(st.lists(st.integers(1, 10), min_size=3, max_size=3)))
    name = draw(st.sampled_from(["x.mha", "x.mhd"]))
    fields = {"ObjectType": "Image", "NDims": "3", "DimSize": " ".join(map(str, shape)),
              "ElementType": "MET_SHORT", "ElementSpacing": "1 2 1.5", "Offset": "1 2 3",
              "ElementDataFile": "LOCAL" if name == "x.mha" else "data.raw"}
    fields = _mutated(draw, fields, META_FIELDS)
    if "ElementDataFile" in fields:  # MetaIO reads it last
        fields["ElementDataFile"] = fields.pop("ElementDataFile")
    text = "".join(f"{key} = {value}\n" for key, value in fields.items())
    voxels = _voxel_bytes(draw, shape, np.int16) if name == "x.mha" else b""
    return name, text.encode("latin-1") + voxels, "outside" in fields.get("ElementDataFile", "")


@PROPERTIES
@given(st.one_of(nrrd_files(), metaimage_files()))
def test_any_nrrd_or_metaimage_header_reads_or_raises_study_load_error(file: tuple[str, bytes, bool]) -> None:
    name, content, outside = file
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for data in ("outside.raw", "outside0.raw", "study/data.raw", "study/data0.raw", "study/data1.raw"):
            _raw(root / data, 2 * 10**3)
        path = root / "study" / name
        path.write_bytes(content.replace(b"{outside}", str(root / "outside.raw").encode()))
        _read_or_refuse(path, outside=outside)
