"""What BrainSeg agrees to read: regular files only, nothing outside the study, bounded sizes, plain names.

Every reader of a user's path (images, sidecars, journals, registry entries, model cards) asks
here first, so that a pipe never blocks the app, a symlink or detached header never pulls in a file
from elsewhere, and a header that declares a huge image is refused before anything is allocated.
Written by hand: these are a few `os.stat` checks and one limit, not worth a dependency.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from brainseg_gui.core.errors import BrainSegError, StudyLoadError

#: The most voxels one image may declare: 2^27 (512^3), above any clinical MR volume (a 0.5 mm
#: isotropic head is ~400^3), and at float32 a 512 MiB array, which keeps a whole read under ~2 GB.
MAX_IMAGE_VOXELS = 1 << 27
#: The most bytes one image's data may declare before decompression or conversion.
MAX_IMAGE_BYTES = 1 << 30
#: The most bytes of a small text or JSON file (sidecar, card, registry entry, clicks, record).
MAX_SMALL_FILE_BYTES = 16 << 20


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
    """The bytes of a small regular file, refused when larger than `limit` (read at most limit + 1)."""
    regular_file(path, what)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
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


def check_declared_size(path: Path, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse an image whose header declares more voxels or bytes than BrainSeg reads, before allocation."""
    voxels = 1
    for size in shape:
        if size < 0:
            raise StudyLoadError(f"{path}: the header declares a negative size {tuple(shape)}")
        voxels *= int(size)
    if voxels > MAX_IMAGE_VOXELS or voxels * max(int(itemsize), 1) > MAX_IMAGE_BYTES:
        raise StudyLoadError(
            f"{path}: the header declares {'x'.join(str(int(s)) for s in shape)} voxels of {itemsize} bytes "
            f"({voxels * itemsize / 2**30:.1f} GiB), more than BrainSeg reads "
            f"({MAX_IMAGE_VOXELS} voxels, {MAX_IMAGE_BYTES / 2**30:.0f} GiB); not a brain MR image"
        )


def plain_name(text: str, what: str) -> str:
    """`text` if it can name a file or folder on its own: no separator, not '.'/'..', no control character."""
    if (not text or text in (".", "..") or "/" in text or "\\" in text or os.sep in text
            or any(ord(c) < 32 for c in text) or text != text.strip()):
        raise UnsafeNameError(f"{what} {text!r} is not a plain name (no '/', '\\\\', '..', control characters "
                         "or surrounding spaces)")
    return text
