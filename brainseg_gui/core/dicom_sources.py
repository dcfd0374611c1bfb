"""Where the files of a DICOM study are: a folder tree, a zip of one, a DICOMDIR, or one of its files.

`list_dicom_files` returns the candidate files (DICOM Part 10 files: 'DICM' at byte 128, any name),
the files a DICOMDIR names that are missing, and notes. A zip is unpacked once into the user's
cache (`cache_root()/zips/<key>`), never beside it, with every bound checked while reading, not
trusted from the zip's own header: member count, total bytes, compression ratio, and member names
that would land outside the folder (`..`, absolute paths). Symbolic links are not followed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress

#: A study holds hundreds to a few tens of thousands of files; more is not a study.
MAX_FILES = 200_000
#: Uncompressed bytes a zip may unpack to.
MAX_ZIP_BYTES = 32 * 1024**3
#: A member compressed more than this (and over 1 MiB unpacked) is a zip bomb, not a DICOM file.
MAX_ZIP_RATIO = 200
DICOMDIR_NAME = "DICOMDIR"
#: Unpacked zips kept in the cache; older ones are removed when another is unpacked.
KEEP_UNPACKED = 8


@dataclass(frozen=True)
class DicomFiles:
    """Candidate DICOM files under a path, what was skipped, and notes for the user."""

    files: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...] = ()
    looked_at: int = 0
    notes: tuple[str, ...] = field(default=())


def cache_root() -> Path:
    """The user's BrainSeg cache ($BRAINSEG_CACHE_DIR, else $XDG_CACHE_HOME/brainseg, else ~/.cache/brainseg)."""
    explicit = os.environ.get("BRAINSEG_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "brainseg"


def is_part10(path: Path) -> bool:
    """A DICOM Part 10 file: the 'DICM' magic at byte 128 (only regular files are opened)."""
    try:
        if not path.is_file():
            return False
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def holds_dicom(path: Path, *, sample: int = 50) -> bool:
    """Cheap: is `path` a zip, a DICOMDIR, a DICOM file, or a folder with a DICOM file among the first ones?"""
    path = Path(path)
    if path.is_file():
        return path.name.upper() == DICOMDIR_NAME or zipfile.is_zipfile(path) and path.suffix.lower() == ".zip" \
            or is_part10(path)
    if not path.is_dir():
        return False
    if (path / DICOMDIR_NAME).is_file():
        return True
    looked = 0
    for root, folders, files in os.walk(path):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            looked += 1
            candidate = Path(root) / name
            if not candidate.is_symlink() and candidate.is_file() and is_part10(candidate):
                return True
            if looked >= sample:
                return False
    return False


def list_dicom_files(path: Path, *, progress: ProgressFn = no_progress,
                     cancel: CancelToken | None = None) -> DicomFiles:
    """The DICOM files of the study at `path` (folder, zip, DICOMDIR, or one file of the study's folder)."""
    path = Path(path)
    if not path.exists():
        raise StudyLoadError(f"{path} does not exist")
    if path.is_file() and path.suffix.lower() == ".zip":
        folder = unpack_zip(path, progress=progress, cancel=cancel)
        found = list_dicom_files(folder, progress=progress, cancel=cancel)
        return DicomFiles(found.files, found.skipped, found.looked_at,
                          (f"unpacked {path.name} into {folder}",) + found.notes)
    if path.is_file() and path.name.upper() == DICOMDIR_NAME:
        return _from_dicomdir(path)
    if path.is_file():
        if not is_part10(path):
            raise StudyLoadError(f"{path} is not a DICOM file (no 'DICM' marker), a zip or a DICOMDIR")
        path = study_root(path)
        if path.is_file():
            return _from_dicomdir(path)
    if (path / DICOMDIR_NAME).is_file():
        return _from_dicomdir(path / DICOMDIR_NAME)
    return _walk(path, cancel)


#: How far above a double-clicked file the study's folder is looked for (PACS trees: patient/study/series).
STUDY_ROOT_LEVELS = 3
#: A folder with more entries than this is not part of a study's tree (a home folder, a share).
MAX_TREE_ENTRIES = 500


def study_root(file: Path) -> Path:
    """Where the study of one DICOM file lies: a DICOMDIR above it, else the highest of its
    STUDY_ROOT_LEVELS parent folders whose every entry belongs to the same study (DICOM files of it,
    or folders whose first DICOM file is of it). A PACS export tree puts each series in its own
    folder, so the file's own folder is one series only; a folder of many patients stops the climb."""
    folder = file.parent
    for ancestor in [folder, *folder.parents][: STUDY_ROOT_LEVELS + 2]:
        if (ancestor / DICOMDIR_NAME).is_file():
            return ancestor / DICOMDIR_NAME
    study = study_uid_of(file)
    if study is None:
        return folder
    for _ in range(STUDY_ROOT_LEVELS):
        parent = folder.parent
        if parent == folder or not _all_of_study(parent, study):
            break
        folder = parent
    return folder


def study_uid_of(file: Path) -> str | None:
    """The StudyInstanceUID of one DICOM file (None when unreadable or absent)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        value = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["StudyInstanceUID"]).get(
            "StudyInstanceUID")
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return None  # an unreadable file says nothing about its study
    return str(value) if value else None


def _all_of_study(folder: Path, study: str) -> bool:
    """Whether every entry of `folder` is a DICOM file of `study` or a folder whose first one is."""
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError:
        return False
    if len(entries) > MAX_TREE_ENTRIES:
        return False
    for entry in entries:
        if entry.is_symlink():
            return False
        sample = entry if entry.is_file() else _first_dicom(entry)
        if sample is None or not is_part10(sample) or study_uid_of(sample) != study:
            return False
    return True


def _first_dicom(folder: Path, budget: int = 30) -> Path | None:
    for root, folders, names in os.walk(folder):
        folders.sort()
        for name in sorted(names):
            budget -= 1
            candidate = Path(root) / name
            if is_part10(candidate):
                return candidate
            if budget <= 0:
                return None
    return None


def _walk(folder: Path, cancel: CancelToken | None) -> DicomFiles:
    files: list[Path] = []
    looked = 0
    for root, folders, names in os.walk(folder):  # os.walk does not follow symlinked folders
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            candidate = Path(root) / name
            if candidate.is_symlink() or not candidate.is_file():  # links, FIFOs, devices: never opened
                continue
            looked += 1
            if looked > MAX_FILES:
                raise StudyLoadError(f"{folder} holds more than {MAX_FILES} files; open the study's own folder")
            if cancel is not None and looked % 1000 == 0:
                cancel.raise_if_cancelled()
            if is_part10(candidate):
                files.append(candidate)
    return DicomFiles(tuple(files), looked_at=looked)


def _from_dicomdir(dicomdir: Path) -> DicomFiles:
    """The image files a DICOMDIR names (its directory records); named files that are missing are listed."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        directory = pydicom.dcmread(dicomdir)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise StudyLoadError(f"cannot read {dicomdir}: {exc}") from exc
    root = dicomdir.parent.resolve()
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for record in directory.get("DirectoryRecordSequence", []):
        parts = record.get("ReferencedFileID")
        if not parts:
            continue
        parts = [parts] if isinstance(parts, str) else list(parts)
        target = _case_insensitive(root, [str(p) for p in parts])
        if target is None or not target.resolve().is_relative_to(root):
            skipped.append((root.joinpath(*[str(p) for p in parts]), "named in the DICOMDIR but missing"))
            continue
        files.append(target)
    if not files and not skipped:
        raise StudyLoadError(f"{dicomdir} names no files")
    notes = (f"{len(skipped)} file(s) named in {dicomdir.name} are missing",) if skipped else ()
    return DicomFiles(tuple(dict.fromkeys(files)), tuple(skipped), len(files) + len(skipped), notes)


def _case_insensitive(root: Path, parts: list[str]) -> Path | None:
    """CD file systems upper-case names; copies to a disk may lower-case them: find either."""
    current = root
    for part in parts:
        exact = current / part
        if exact.exists():
            current = exact
            continue
        try:
            match = next((child for child in current.iterdir() if child.name.lower() == part.lower()), None)
        except OSError:
            return None
        if match is None:
            return None
        current = match
    return current if current.is_file() else None


def unpack_zip(path: Path, *, progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> Path:
    """Unpack a study zip once into the cache (bounded, atomically); the folder it lives in."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    target = cache_root() / "zips" / key
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
    try:
        _extract(path, staging, progress, cancel)
        try:
            os.replace(staging, target)
        except OSError:
            if not target.is_dir():  # another process won the race: use its copy
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    _evict(target.parent, keep=target)
    return target


def _evict(folder: Path, *, keep: Path) -> None:
    """Remove the oldest unpacked zips beyond KEEP_UNPACKED (they are copies; the zips stay)."""
    unpacked = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: p.stat().st_mtime, reverse=True)
    for old in unpacked[KEEP_UNPACKED:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def _extract(path: Path, out: Path, progress: ProgressFn, cancel: CancelToken | None) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise StudyLoadError(f"cannot read {path} as a zip: {exc}") from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_FILES:
            raise StudyLoadError(f"{path} holds {len(members)} files (more than {MAX_FILES}); not a study")
        total = 0
        for count, member in enumerate(members):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if count % 200 == 0:
                progress(0.1 * count / max(len(members), 1), f"unpacking {path.name} ({count} of {len(members)})")
            name = Path(member.filename)
            if name.is_absolute() or ".." in name.parts or member.filename.startswith(("/", "\\")):
                raise StudyLoadError(f"{path}: member {member.filename!r} would be written outside the folder")
            if member.file_size > 1 << 20 and member.file_size > MAX_ZIP_RATIO * max(member.compress_size, 1):
                raise StudyLoadError(f"{path}: member {member.filename!r} unpacks {member.compress_size} bytes to "
                                     f"{member.file_size} (a zip bomb?); refused")
            destination = out / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member) as source, destination.open("wb") as sink:
                    written = 0
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        total += len(chunk)
                        if written > member.file_size or total > MAX_ZIP_BYTES:
                            raise StudyLoadError(f"{path}: unpacks to more than it declares or than "
                                                 f"{MAX_ZIP_BYTES >> 30} GiB (a zip bomb?); refused")
                        sink.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise StudyLoadError(f"cannot unpack {member.filename!r} from {path}: {exc}") from exc
