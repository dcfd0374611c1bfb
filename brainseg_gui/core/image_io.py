"""Reading and writing single image files: NIfTI (nibabel), NRRD / MetaImage / DICOM (SimpleITK).

Every array leaves this module in the program's one axis order: nibabel's (i, j, k) with a voxel ->
RAS+ mm affine. SimpleITK's (z, y, x) arrays and LPS geometry are converted here and nowhere else
(`_from_sitk`, and the public pair `to_sitk` / `from_sitk` for code that runs SimpleITK filters).
SimpleITK is imported inside the functions that need it, so that importing `brainseg_gui.core`
(and starting the CLI) stays fast.

Reads go through `core/read_guard.py` first: regular files only, no symlink or detached data file
leading out of the file's folder, and the size a header declares checked before any voxel is read.
Writes are NIfTI only and all-or-nothing (`core/atomic.py`: an image and its sidecar appear together).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from brainseg_gui.core.atomic import FileSet
from brainseg_gui.core.errors import BrainSegError, LabelError, StudyLoadError
from brainseg_gui.core.nib import nib
from brainseg_gui.core.read_guard import (
    check_data_files,
    check_declared_size,
    opened_inside_its_folder,
    read_small_text,
    regular_file,
    regular_file_inside,
)
from brainseg_gui.core.study import Grid

if TYPE_CHECKING:
    import SimpleITK as sitk

log = logging.getLogger(__name__)


class _NibabelToDebugLog(logging.Handler):
    """nibabel reports its header checks ('vox offset 0 too low ...') through a stderr handler of its
    own; the CLI promises one line per error, and the error itself says what is wrong: keep them in the log."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("nibabel: %s", record.getMessage())


nib.imageglobals.logger.handlers = [_NibabelToDebugLog()]
nib.imageglobals.logger.propagate = False

NIFTI_SUFFIXES = (".nii.gz", ".nii")
SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_SUFFIXES = (".dcm", ".ima")
#: A JSON file naming the frames of one DICOM series in a study (`core/dicom_volume.py`).
SERIES_FILE_SUFFIXES = (".dcmseries",)
#: Every file name ending `read_image` accepts (besides a DICOM folder).
IMAGE_SUFFIXES = NIFTI_SUFFIXES + SITK_SUFFIXES + SERIES_FILE_SUFFIXES
#: Channel count of the only 4D images accepted: MSD Task01 (FLAIR, T1w, T1gd, T2w).
MSD_CHANNELS = 4
#: LPS <-> RAS: flip the first two world axes.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Bytes the NIfTI-1 header has for its description.
DESCRIPTION_BYTES = 80

#: What nibabel, gzip and SimpleITK raise on damaged or foreign files.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    nib.filebasedimages.ImageFileError, EOFError, zlib.error, gzip.BadGzipFile, OSError, RuntimeError, ValueError,
    struct.error, IndexError, TypeError, OverflowError, nib.spatialimages.HeaderDataError,
)
#: The one ITK reader each SimpleITK format is read with (never one ITK guesses from the content).
_SITK_IMAGE_IO = {".nrrd": "NrrdImageIO", ".nhdr": "NrrdImageIO", ".mha": "MetaImageIO", ".mhd": "MetaImageIO"}


def image_suffix(path: Path) -> str:
    """The format-defining ending of a file name ('.nii.gz', '.nrrd', ...), lower case; '' if none."""
    name = path.name.lower()
    for suffix in IMAGE_SUFFIXES + DICOM_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def strip_image_suffix(path: Path) -> str:
    """File name without its image ending: 'X_flair.nii.gz' -> 'X_flair'."""
    suffix = image_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.stem


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file: 'DICM' at byte 128 (also true for .dcm files without the preamble check)."""
    if not path.is_file():  # never open a pipe or a device to look
        return False
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_image(path: Path) -> tuple[np.ndarray, Grid]:
    """Read one image: (i, j, k) array (or (i, j, k, 4) for an MSD 4D file) and its RAS grid.

    The array keeps the file's own dtype (after NIfTI scl_slope/scl_inter, which may make it float).
    A folder (or a single .dcm file) is read as a DICOM series with SimpleITK's GDCM reader.
    Raises StudyLoadError naming the file for anything unreadable or of the wrong dimensionality,
    and before reading anything for what `core/read_guard.py` refuses: a pipe or device, a symlink
    or detached header leading outside the file's folder, a header declaring a huge image.
    """
    path = Path(path)
    if not path.exists():
        raise StudyLoadError(f"{path} does not exist")
    if path.is_dir():
        return _read_dicom_series(path, None)
    opened_inside_its_folder(path)
    regular_file(path, "image")
    suffix = image_suffix(path)
    if path.stat().st_size == 0:
        raise StudyLoadError(f"{path} is empty (0 bytes)")
    if suffix in NIFTI_SUFFIXES:
        array, affine = _read_nifti(path)
    elif suffix in SITK_SUFFIXES:
        array, affine = _read_sitk_file(path)
    elif suffix in SERIES_FILE_SUFFIXES:
        from brainseg_gui.core.dicom_volume import read_series_volume

        array, grid = read_series_volume(path)
        return _checked(path, array, grid.affine)
    elif suffix in DICOM_SUFFIXES or is_dicom_file(path):
        return _read_dicom_series(path.parent, path)
    else:
        known = ", ".join(IMAGE_SUFFIXES)
        raise StudyLoadError(
            f"{path}: unsupported file type {path.suffix!r}; BrainSeg reads {known} and DICOM folders"
        )
    return _checked(path, array, affine)


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        # mmap=False: read everything now (nibabel is lazy), so damage shows here and no file stays open.
        image = nib.load(path, mmap=False)
        if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
            raise StudyLoadError(f"{path} is a {type(image).__name__}, not a NIfTI image")
        header = image.header  # the header alone first: nothing of a refused size is decompressed
        data_end = check_declared_size(path, header.get_data_shape(), header.get_data_dtype().itemsize,
                                       offset=int(getattr(image.dataobj, "offset", 0)))  # nibabel zeroes the header's
        if path.name.lower().endswith(".gz"):
            image = _decompressed_at_once(path, image, data_end) or image
        with np.errstate(over="ignore", invalid="ignore"):  # a wild scl_slope: inf/NaN voxels, reported later
            array = np.asanyarray(image.dataobj)
        affine = np.array(image.affine, dtype=np.float64)
    except _READ_ERRORS as exc:
        raise StudyLoadError(f"cannot read {path}: {_explain(path, exc)}") from exc
    return np.asarray(array), affine


def _decompressed_at_once(path: Path, image: Any, expected: int) -> Any | None:
    """The .nii.gz image again, from its whole file decompressed in one zlib call; None: let nibabel read it.

    Why not nibabel's own reading: it decompresses through Python's gzip module in 8 KB pieces with a
    Python-level CRC, ~0.18 s of the ~0.3 s a BraTS case takes to load; one zlib call takes about half
    that and releases the GIL, so the GUI builds its window beside it (issue 19's cold start). It also
    checks more: nibabel stops at the declared size and never reaches the gzip trailer, so a damaged
    stream read as garbage voxels; here the stream is decompressed up to its trailer, whose CRC-32 zlib
    checks (zlib.error: "compression is damaged"), and a stream cut before it is truncated (EOFError).
    The header's size was checked first (`expected`: where its voxels end). A file larger than its declared data could compress to, a
    first gzip member shorter than the data (several members, or a truncated file) and a bomb behind
    the data go back to nibabel, which reads them or explains the damage as before.
    """
    if path.stat().st_size > expected + expected // 100 + 4096:  # deflate never grows data by that much
        return None
    raw = _gunzip_exactly(path, expected)
    return None if raw is None else type(image).from_bytes(raw)


def _gunzip_exactly(path: Path, expected: int) -> bytes | None:
    """The first `expected` bytes of the gzip file, its whole stream checked; None where nibabel should read.

    A function of its own so that the compressed bytes are freed before nibabel copies the voxels out."""
    decompressor = zlib.decompressobj(wbits=31)  # gzip framing
    raw = decompressor.decompress(path.read_bytes(), expected)
    if len(raw) < expected:
        return None
    beyond = 0  # bytes after the declared data (nibabel ignores them; so does this), bounded
    while not decompressor.eof and decompressor.unconsumed_tail:
        beyond += len(decompressor.decompress(decompressor.unconsumed_tail, 1 << 20))
        if beyond > 4 * expected:  # a decompression bomb behind the voxels: not worth checking
            return None
    if not decompressor.eof:
        raise EOFError("the gzip stream ends before its trailer (checksum and size)")
    return raw


def _explain(path: Path, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError | zlib.error) or "end-of-stream" in text:
        return "the file is truncated or its compression is damaged"
    if "not a gzip file" in text.lower():
        return "the file is not gzip-compressed as its .gz name says (a text file, or mis-named?)"
    if "Cannot work out file type" in text:
        return "not a NIfTI image (unrecognised header; truncated, or another format?)"
    text = " ".join(text.replace(f"{path}", "the file").split())  # one line
    if text.startswith("Expected") and "bytes" in text:
        return f"the file is truncated ({text})"
    return text


def _checked(path: Path, array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, Grid]:
    """Squeeze trailing singleton axes; accept 3D, or 4D with MSD's 4 channels; build the grid."""
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    shape = "x".join(map(str, array.shape))
    if array.ndim < 3:
        raise StudyLoadError(f"{path} is a {array.ndim}D image ({shape}); BrainSeg needs 3D volumes")
    if array.ndim > 4:
        raise StudyLoadError(f"{path} is a {array.ndim}D image ({shape}); BrainSeg reads 3D volumes "
                             "and MSD-style 4D files")
    if array.ndim == 4 and array.shape[3] != MSD_CHANNELS:
        raise StudyLoadError(
            f"{path} is a 4D image with {array.shape[3]} volumes ({shape}); the only 4D input read is "
            f"MSD Task01's {MSD_CHANNELS} channels (FLAIR, T1w, T1gd, T2w)"
        )
    if array.dtype.kind not in "biuf":
        raise StudyLoadError(f"{path} holds {array.dtype} voxels; BrainSeg reads integer or real scalars")
    try:
        grid = Grid(array.shape[:3], affine)
    except StudyLoadError as exc:  # one line: the message may hold the affine's repr
        raise StudyLoadError(f"{path}: {' '.join(str(exc).split())}") from exc
    return array, grid


def _read_sitk_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """NRRD / MetaImage: data files checked from the header text, then the size from ITK's header read."""
    import SimpleITK as sitk

    check_data_files(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(_SITK_IMAGE_IO[image_suffix(path)])
    said: list[str] = []
    try:
        with _itk_stderr(said):
            reader.ReadImageInformation()
            check_declared_size(path, tuple(reader.GetSize()), _pixel_bytes(reader))
            image = reader.Execute()
        return _from_sitk(image)
    except _READ_ERRORS as exc:
        reason = _first_line(exc)
        if said and (reason.endswith("Success") or reason.startswith("Reason:")):
            reason = said[0]  # MetaIO's own complaint says more than errno's 'Success'
        raise StudyLoadError(f"cannot read {path}: {reason}") from exc


@contextmanager
def _itk_stderr(said: list[str]) -> Iterator[None]:
    """Catch what ITK's MetaIO prints straight to the process's stderr: one log line, and `said` for errors.

    The CLI's promise is one line per error; MetaIO would add its own lines below it.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = " ".join(sink.read(4096).decode("utf-8", errors="replace").split())
            if text:
                said.append(text)
                log.debug("ITK said: %s", text)


def _pixel_bytes(reader: sitk.ImageFileReader) -> int:
    """Bytes per pixel an ITK reader's header declares (all components), without reading pixels."""
    import SimpleITK as sitk

    try:
        component = sitk.Image([1, 1], reader.GetPixelID()).GetSizeOfPixelComponent()
    except RuntimeError:
        component = 8  # a pixel type SimpleITK cannot make: assume the widest
    return max(int(component), 1) * max(int(reader.GetNumberOfComponents()), 1)


def _first_line(exc: BaseException) -> str:
    """SimpleITK errors are multi-line C++ traces; keep the informative line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "description:" in line.lower():
            return line.split(":", 1)[1].strip()
    return lines[-1] if lines else type(exc).__name__


def _from_sitk(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK image -> ((i, j, k[, c]) array, voxel -> RAS affine). The only LPS -> RAS step.

    SimpleITK arrays are (z, y, x); its geometry is LPS: world = origin + D @ (spacing * index).
    The RAS affine is diag(-1, -1, 1, 1) @ [[D * spacing, origin], [0, 1]].
    """
    import SimpleITK as sitk

    dimension = image.GetDimension()
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:  # (z, y, x, c) -> (x, y, z, c)
        spatial = array.ndim - 1
        array = np.moveaxis(array, list(range(spatial)), list(range(spatial))[::-1])
    else:
        array = array.transpose(tuple(range(array.ndim))[::-1])
    if dimension < 3:
        return array, np.eye(4)  # rejected by _checked as 2D
    size = min(dimension, 3)
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(dimension, dimension)[:size, :size]
    spacing = np.array(image.GetSpacing(), dtype=np.float64)[:size]
    origin = np.array(image.GetOrigin(), dtype=np.float64)[:size]
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing[None, :]
    lps[:3, 3] = origin
    return array, LPS_TO_RAS @ lps


def from_sitk(image: sitk.Image) -> tuple[np.ndarray, Grid]:
    """A 3D SimpleITK image as the program's (i, j, k) array and RAS grid (see `_from_sitk`)."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise StudyLoadError(f"expected a 3D scalar SimpleITK image, got dimension {image.GetDimension()} "
                             f"with {image.GetNumberOfComponentsPerPixel()} components")
    array, affine = _from_sitk(image)
    return array, Grid(array.shape, affine)


def to_sitk(array: np.ndarray, grid: Grid) -> sitk.Image:
    """An (i, j, k) array on a RAS grid as a SimpleITK image: (z, y, x) voxels, LPS geometry.

    The inverse of `from_sitk`: the LPS affine is diag(-1, -1, 1, 1) @ grid.affine, split into
    origin, spacing (column norms) and direction (unit columns). The voxels are copied.
    """
    import SimpleITK as sitk

    if array.shape != grid.shape:
        raise BrainSegError(f"array shape {array.shape} is not the grid's {grid.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    lps = LPS_TO_RAS @ grid.affine
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(d) for d in (lps[:3, :3] / spacing[None, :]).ravel()])
    image.SetOrigin([float(o) for o in lps[:3, 3]])
    return image


def _read_dicom_series(folder: Path, member: Path | None) -> tuple[np.ndarray, Grid]:
    """Read the one DICOM series in `folder` (or the series `member` belongs to)."""
    import SimpleITK as sitk

    # GDCM prints its own warnings on stderr (e.g. "No Series were found"); ours say it in one line.
    sitk.ProcessObject.SetGlobalWarningDisplay(False)

    try:
        series_ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except _READ_ERRORS as exc:
        raise StudyLoadError(f"cannot list DICOM series in {folder}: {_first_line(exc)}") from exc
    if not series_ids:
        raise StudyLoadError(f"{folder} holds no DICOM series (and no image file BrainSeg recognises)")
    files_by_series = {
        sid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid)) for sid in series_ids
    }
    if member is not None:
        wanted = [sid for sid, files in files_by_series.items()
                  if any(Path(f).resolve() == member.resolve() for f in files)]
        if not wanted:
            raise StudyLoadError(f"{member} is not part of a readable DICOM series in {folder}")
        series_ids = wanted
    if len(series_ids) > 1:
        listing = "; ".join(f"{sid} ({len(files_by_series[sid])} files)" for sid in series_ids)
        raise StudyLoadError(
            f"{folder} holds {len(series_ids)} DICOM series: {listing}. Put each series in its own "
            "folder, or open one of its files"
        )
    files = files_by_series[series_ids[0]]
    for file in files:
        regular_file_inside(Path(file), folder, "DICOM file")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        first = sitk.ImageFileReader()
        first.SetFileName(files[0])
        first.ReadImageInformation()
        size = tuple(first.GetSize())
        check_declared_size(folder, (*size[:2], len(files) * int(np.prod(size[2:]))), _pixel_bytes(first))
        array, affine = _from_sitk(reader.Execute())
    except _READ_ERRORS as exc:
        raise StudyLoadError(f"cannot read the DICOM series in {folder}: {_first_line(exc)}") from exc
    if array.ndim == 3 and array.shape[2] == 1 and len(files) == 1:
        raise StudyLoadError(f"{folder} holds a single DICOM slice ({files[0]}); BrainSeg needs a 3D series")
    return _checked(folder, array, affine)


# -- writing -------------------------------------------------------------------------------------


def sidecar_path(path: Path) -> Path:
    """Where the JSON sidecar of an image goes: 'X.nii.gz' -> 'X.json'."""
    return path.with_name(strip_image_suffix(path) + ".json")


def read_sidecar(path: Path) -> dict[str, Any]:
    """The JSON sidecar of the image `path` (see `sidecar_path`); {} when there is none or it is not JSON.

    A pipe, a device, a file over 16 MiB or a link leading out of the folder named like the
    sidecar raises StudyLoadError instead of being opened (`core/read_guard.py`).
    """
    sidecar = sidecar_path(Path(path))
    if not (sidecar.exists() or sidecar.is_symlink()):
        return {}
    opened_inside_its_folder(sidecar)
    try:
        data = json.loads(read_small_text(sidecar, "sidecar"))
    except ValueError as exc:
        log.warning("ignored the sidecar %s: not JSON (%s)", sidecar, exc)
        return {}
    return data if isinstance(data, dict) else {}


def write_image(
    path: Path,
    array: np.ndarray,
    grid: Grid,
    *,
    description: str = "",
    sidecar: Mapping[str, Any] | None = None,
    protect: Iterable[Path] = (),
    files: FileSet | None = None,
) -> None:
    """Write a 3D array as NIfTI (.nii or .nii.gz), all-or-nothing, with `grid.affine` kept exactly.

    qform and sform are both set from the affine with code 1 (scanner), as nibabel does; the
    description goes into the header (cut to 80 bytes); `sidecar`, if given, is written as JSON to
    `<name>.json` beside the image, in the same set. Paths in `protect` (the inputs) are never
    overwritten. With `files`, image and sidecar join that set (see core/atomic.py).
    """
    path = Path(path)
    suffix = image_suffix(path)
    if suffix not in NIFTI_SUFFIXES:
        raise BrainSegError(f"cannot write {path}: BrainSeg writes NIfTI (.nii.gz or .nii) only")
    if array.shape != grid.shape:
        raise BrainSegError(f"cannot write {path}: array shape {array.shape} is not the grid's {grid.shape}")
    targets = [path] + ([sidecar_path(path)] if sidecar is not None else [])
    _refuse_protected(targets, protect)
    if files is None and not path.parent.is_dir():  # a set makes its folders (and removes them on failure)
        raise BrainSegError(f"cannot write {path}: the folder {path.parent} does not exist")

    image = nib.Nifti1Image(np.asarray(array), grid.affine)
    image.set_qform(grid.affine, code=1)
    image.set_sform(grid.affine, code=1)
    image.header.set_data_dtype(array.dtype)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = _description_bytes(description)
    try:
        with FileSet() if files is None else nullcontext(files) as into:
            into.add(path, lambda temporary: nib.save(image, temporary))
            if sidecar is not None:
                into.add(targets[1], json.dumps(dict(sidecar), indent=2, sort_keys=True, default=str) + "\n")
    except (ValueError, TypeError, RuntimeError) as exc:
        raise BrainSegError(f"cannot write {path}: {exc}") from exc
    log.info("wrote %s (%s, %s)", path, grid.describe(), array.dtype)


def save_label_map(
    path: Path,
    labels: np.ndarray,
    grid: Grid,
    *,
    description: str = "",
    sidecar: Mapping[str, Any] | None = None,
    protect: Iterable[Path] = (),
    files: FileSet | None = None,
) -> None:
    """Write a label map as uint8 NIfTI on `grid` (see `write_image`); values must fit 0..255."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biu":
        raise LabelError(f"cannot write {path}: labels must be integers, got {labels.dtype}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) > 255):
        raise LabelError(f"cannot write {path}: label values {int(labels.min())}..{int(labels.max())} "
                         "do not fit uint8 (0..255)")
    write_image(path, labels.astype(np.uint8, copy=False), grid, description=description,
                sidecar=sidecar, protect=protect, files=files)


def _refuse_protected(targets: list[Path], protect: Iterable[Path]) -> None:
    protected = {_identity(Path(p)) for p in protect}
    for target in targets:
        if _identity(target) in protected:
            raise BrainSegError(f"refusing to overwrite {target}: it is one of the input files")


def _identity(path: Path) -> Path:
    return path.expanduser().resolve()


def _description_bytes(description: str) -> bytes:
    encoded = description.encode("utf-8")[:DESCRIPTION_BYTES]
    return encoded.decode("utf-8", errors="ignore").encode("utf-8")


def peek_shape(path: Path) -> tuple[int, ...] | None:
    """Shape from a NIfTI header without reading the voxels (None for other formats)."""
    if image_suffix(path) not in NIFTI_SUFFIXES:
        return None
    regular_file(path, "image")
    if path.stat().st_size == 0:
        raise StudyLoadError(f"{path} is empty (0 bytes)")
    try:
        image = nib.load(path)
        if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
            raise StudyLoadError(f"{path} is a {type(image).__name__}, not a NIfTI image")
        shape = tuple(int(n) for n in image.shape)
    except _READ_ERRORS as exc:
        raise StudyLoadError(f"cannot read {path}: {_explain(path, exc)}") from exc
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape
