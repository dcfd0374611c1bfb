"""What BrainSeg agrees to read: regular files only, nothing outside the study, bounded sizes, plain names.

Every reader of a user's path (images, sidecars, journals, registry entries, model cards) asks
here first, so that a pipe never blocks the app, a symlink or detached header never pulls in a file
from elsewhere, and a header that declares a huge image is refused before anything is allocated.
Written by hand: these are a few `os.stat` checks and one limit, not worth a dependency.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from brainseg_gui.core.errors import BrainSegError, StudyLoadError

#: The most voxels one image may declare: 2^27 (512^3), above any clinical MR volume (a 0.5 mm
#: isotropic head is ~400^3), and at float32 a 512 MiB array, which keeps a whole read under ~2 GB.
MAX_IMAGE_VOXELS = 1 << 27


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


#: The most bytes one image's data may declare before decompression or conversion: 512 MiB, so
#: that the compressed stream, the decoded array and its float32 copy stay under ~2 GB together
#: (a 512^3 float32 image fits; the same grid as float64 does not); on a machine with less than
#: 4 GiB of memory, an eighth of it (never under 64 MiB, a 256^3 float32 volume).
MAX_IMAGE_BYTES = min(1 << 29, max(64 << 20, (physical_memory() or 1 << 32) // 8))
#: The most bytes of a small text or JSON file (sidecar, card, registry entry, clicks, record).
MAX_SMALL_FILE_BYTES = 16 << 20
#: Where an image's voxels may start at the latest (NIfTI vox_offset, NRRD byte skip, MetaImage
#: HeaderSize): skipping more of a compressed stream would decompress gigabytes only to discard them.
MAX_DATA_OFFSET = 64 << 20
#: The most bytes of a NRRD or MetaImage text header parsed for its data files; longer is refused.
MAX_HEADER_BYTES = 1 << 20
#: The most data files one detached header may name (a LIST, or a numbered file-name pattern).
MAX_DATA_FILES = 1 << 14


class OutsideStudyError(StudyLoadError):
    """A symlink or a detached header leads to a file outside the folder the user opened."""


class UnsafeNameError(BrainSegError):
    """A case id or model name that is not a plain name (a separator, '..', a control character)."""


def regular_file(path: Path, what: str = "file") -> Path:
    """`path` if it is a regular file (after symlinks); else StudyLoadError naming what it is.

    Pipes, sockets and devices are refused before they are opened: opening a FIFO for reading
    blocks until a writer comes, and /dev/zero never ends.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise StudyLoadError(f"{what} {path} does not exist") from None
    except PermissionError:
        raise StudyLoadError(f"{what} {path}: permission denied") from None
    except OSError as exc:
        raise StudyLoadError(f"{what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return path
    kind = _kind(mode)
    raise StudyLoadError(f"{what} {path} is {kind}, not a regular file; BrainSeg reads regular files only")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_small_bytes(path: Path, what: str = "file", limit: int = MAX_SMALL_FILE_BYTES) -> bytes:
    """The bytes of a small regular file, refused when larger than `limit`.

    The size is checked on the open handle before reading, and the read asks for one byte more
    than that size (never more than limit + 1), so no buffer larger than the file is reserved and a
    file that grows meanwhile is still refused without being held whole.
    """
    regular_file(path, what)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                raise StudyLoadError(f"{what} {path} is larger than {limit} bytes; not a BrainSeg {what}")
            data = handle.read(size + 1)
            if len(data) > size:  # it grew while being read: read on, up to the limit
                data += handle.read(limit + 1 - len(data))
    except PermissionError:
        raise StudyLoadError(f"{what} {path}: permission denied") from None
    except OSError as exc:
        raise StudyLoadError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise StudyLoadError(f"{what} {path} is larger than {limit} bytes; not a BrainSeg {what}")
    return data


def read_small_text(path: Path, what: str = "file", limit: int = MAX_SMALL_FILE_BYTES) -> str:
    """`read_small_bytes` decoded as UTF-8, with a one-line error when it is not text."""
    data = read_small_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StudyLoadError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def within(target: Path, folder: Path, *, what: str, allow_outside: bool = False) -> Path:
    """`target` resolved; OutsideStudyError when it lies outside `folder` (symlinks followed).

    `what` says who points there ("symlink x.nii.gz", "the data file of a.nhdr") for the message.
    """
    resolved = Path(os.path.realpath(target))
    root = Path(os.path.realpath(folder))
    if allow_outside or resolved == root or root in resolved.parents:
        return resolved
    raise OutsideStudyError(
        f"{what} leads outside {root} to {resolved}; BrainSeg reads only files inside the folder "
        "of the file you opened (copy the file there, or allow it explicitly)"
    )


def opened_inside_its_folder(path: Path, *, allow_outside: bool = False) -> Path:
    """`path` itself, refused when it is a symlink that leads outside its own folder."""
    path = Path(path)
    if path.is_symlink():
        within(path, path.parent, what=f"symlink {path}", allow_outside=allow_outside)
    return path


def regular_file_inside(path: Path, folder: Path, what: str = "file", *, allow_outside: bool = False) -> Path:
    """`path` if it is a regular file lying inside `folder` once symlinks are followed; else StudyLoadError.

    For every file a case folder lists before it is opened: a pipe named like an image, or a link
    to a file elsewhere, is refused with its name (OutsideStudyError for the link).
    """
    path = Path(path)
    within(path, folder, what=f"symlink {path}" if path.is_symlink() else f"{what} {path}",
           allow_outside=allow_outside)
    return regular_file(path, what)


def check_declared_size(path: Path | str, shape: tuple[int, ...], itemsize: int, *, offset: int = 0) -> int:
    """Refuse an image whose header declares more voxels or bytes than BrainSeg reads, before allocation.

    `offset` is where the header says the voxels start (NIfTI vox_offset): refused beyond MAX_DATA_OFFSET.
    Returns where the declared voxels end (offset + their bytes).
    """
    if not 0 <= offset <= MAX_DATA_OFFSET:
        raise StudyLoadError(f"{path}: the header puts the voxels {offset} bytes into the file; BrainSeg "
                             f"reads headers of at most {MAX_DATA_OFFSET} bytes")
    voxels = 1
    for size in shape:
        if size < 0:
            raise StudyLoadError(f"{path}: the header declares a negative size {tuple(shape)}")
        if size == 0:
            raise StudyLoadError(f"{path}: the header declares an empty image ({tuple(shape)} voxels)")
        voxels *= int(size)
    if voxels > MAX_IMAGE_VOXELS or voxels * max(int(itemsize), 1) > MAX_IMAGE_BYTES:
        raise StudyLoadError(
            f"{path}: the header declares {'x'.join(str(int(s)) for s in shape)} voxels of {itemsize} bytes "
            f"({voxels * itemsize / 2**20:.0f} MiB), more than BrainSeg reads "
            f"({MAX_IMAGE_VOXELS} voxels, {MAX_IMAGE_BYTES >> 20} MiB); not a brain MR image"
        )
    return offset + voxels * int(itemsize)


def plain_name(text: str, what: str) -> str:
    """`text` if it can name a file or folder on its own: no separator, not '.'/'..', no control character."""
    if (not text or text in (".", "..") or "/" in text or "\\" in text or os.sep in text
            or any(ord(c) < 32 for c in text) or text != text.strip()):
        raise UnsafeNameError(f"{what} {text!r} is not a plain name (no '/', '\\\\', '..', control characters "
                         "or surrounding spaces)")
    return text


# -- detached headers ------------------------------------------------------------------------------

_NRRD_SUFFIXES = (".nrrd", ".nhdr")
_METAIMAGE_SUFFIXES = (".mha", ".mhd")
#: A numbered file-name pattern with its one integer conversion ('slice%03d.raw').
_NUMBERED = re.compile(r"[^%]*%[0-9]*d[^%]*")
#: NRRD encodings read. Not the text ones (ascii, text, txt): ITK's NrrdIO crashes the whole process
#: (a segmentation fault) on a text-encoded file whose data is not text, and no MR scanner writes them.
NRRD_ENCODINGS = ("raw", "gzip", "gz", "bzip2", "bz2", "hex")


def check_data_files(path: Path, *, allow_outside: bool = False) -> list[Path]:
    """The data files of a NRRD / MetaImage header (`data_file_names`), each checked before ITK opens it.

    Each must lie inside the header's folder (OutsideStudyError naming it otherwise) and be a regular
    file; the header's byte skip (NRRD) or HeaderSize (MetaImage) must not pass MAX_DATA_OFFSET.
    """
    path = Path(path)
    files = []
    for name in data_file_names(path):
        file = _data_path(path, name)
        what = f"the data file {name!r} of {path}"
        within(file, path.parent, what=what, allow_outside=allow_outside)
        files.append(regular_file(file, what))
    return files


def data_file_names(path: Path) -> list[str]:
    """The data files a NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) header names, as written.

    [] when the voxels follow the header in the same file (or for other formats). Parsed here from
    the header text alone, as ITK's readers understand it (NrrdIO's `data file:`, MetaIO's
    `ElementDataFile =`): one name, `LIST` and the names on every following line, or a numbered
    pattern `name%03d.raw FIRST LAST STEP`. Keys are matched more loosely than ITK does, so that
    nothing ITK would follow is missed. Relative names are relative to the header's folder.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _NRRD_SUFFIXES:
        separator, key = ":", "datafile"
    elif suffix in _METAIMAGE_SUFFIXES:
        separator, key = "=", "elementdatafile"
    else:
        return []
    head, whole = _head(path)
    lines = [line.rstrip(b"\r").decode("latin-1") for line in head.split(b"\n")]
    if not whole:
        lines = lines[:-1]  # the last line may be cut
    for number, line in enumerate(lines):
        if not line and separator == ":":
            return []  # a NRRD header ends at its first empty line: its voxels follow
        name, found, value = line.partition(separator)
        field = "".join(name.split()).lower()
        if not found or line.startswith("#") or value.startswith("="):  # comments, NRRD key:=value pairs
            continue
        value = value.strip()
        _check_field(path, separator, field, name.strip(), value)
        if field == key:
            return _named_files(path, value, lines[number + 1:], whole)
    if not whole:
        raise StudyLoadError(f"{path}: no end of the image header in its first {MAX_HEADER_BYTES} bytes; "
                             "not a NRRD / MetaImage file BrainSeg reads")
    return []


def _head(path: Path) -> tuple[bytes, bool]:
    """The first MAX_HEADER_BYTES of a regular file, and whether that is the whole file."""
    regular_file(path, "image")
    try:
        with open(path, "rb") as handle:
            head = handle.read(MAX_HEADER_BYTES + 1)
    except OSError as exc:
        raise StudyLoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    return head[:MAX_HEADER_BYTES], len(head) <= MAX_HEADER_BYTES


def _check_field(path: Path, separator: str, field: str, name: str, value: str) -> None:
    """Refuse the header fields that would make ITK skip gigabytes, crash, or loop for ever."""
    if separator == ":" and field == "encoding" and value.lower() not in NRRD_ENCODINGS:
        raise StudyLoadError(f"{path}: NRRD encoding {value!r}; BrainSeg reads {', '.join(NRRD_ENCODINGS)} "
                             "(not text encodings)")
    if separator == "=" and field == "ndims" and value not in [str(n) for n in range(1, 17)]:
        # MetaIO takes NDims = -1 (or 2^31) as some four billion dimensions and never returns
        raise StudyLoadError(f"{path}: MetaImage NDims {value!r} is not a number of dimensions from 1 to 16")
    if field not in ("byteskip", "lineskip", "headersize"):
        return
    try:
        skip = int(value.split()[0]) if value else 0
    except ValueError:
        return  # ITK refuses it itself
    if skip > MAX_DATA_OFFSET:
        raise StudyLoadError(f"{path}: the header's {name} of {skip} bytes passes the {MAX_DATA_OFFSET} "
                             "BrainSeg reads")


def _named_files(path: Path, value: str, rest: list[str], whole: bool) -> list[str]:
    """The files one data-file value names: LOCAL (none), LIST (the following lines), a pattern, a name."""
    words = value.split()
    if not words:
        raise StudyLoadError(f"{path}: the header names an empty data file")
    if words[0].upper() == "LOCAL" and len(words) == 1:
        return []
    if words[0].upper() == "LIST":
        if not whole:
            raise StudyLoadError(f"{path}: a LIST header longer than {MAX_HEADER_BYTES} bytes")
        names = [line.strip() for line in rest if line.strip()]
        if len(names) > MAX_DATA_FILES:
            raise StudyLoadError(f"{path}: the header lists {len(names)} data files; BrainSeg reads at most "
                                 f"{MAX_DATA_FILES}")
        return names
    if "%" in value:
        return _numbered(path, words)
    return [value]


def _numbered(path: Path, words: list[str]) -> list[str]:
    """The names of a numbered pattern 'name%03d.raw FIRST LAST STEP [SUBDIM]'."""
    if not _NUMBERED.fullmatch(words[0]) or len(words) < 4:
        raise StudyLoadError(f"{path}: data file pattern {' '.join(words)!r} is not 'NAME%d FIRST LAST STEP' "
                             "with one integer conversion")
    try:
        first, last, step = (int(word) for word in words[1:4])
    except ValueError:
        raise StudyLoadError(f"{path}: data file pattern {' '.join(words)!r} has no integer FIRST LAST STEP") from None
    numbers = range(first, last + (1 if step > 0 else -1), step) if step else range(0)
    if not 0 < len(numbers) <= MAX_DATA_FILES:
        raise StudyLoadError(f"{path}: data file pattern {' '.join(words)!r} names no files or more than "
                             f"{MAX_DATA_FILES}")
    return [words[0] % number for number in numbers]


def _data_path(header: Path, name: str) -> Path:
    """Where ITK looks for a data file: relative to the header's folder, unless absolute."""
    if "\0" in name:
        raise StudyLoadError(f"{header}: the header names a data file with a NUL character")
    return Path(os.path.join(header.parent, name))
