"""All-or-nothing writing: one file, or a set of files that appear together or not at all.

Every file BrainSeg writes for the user goes through here (`write_atomic` for one, `FileSet` for
several), so that a failure part-way (disk full, permission denied, a folder in the way, SIGKILL)
leaves the old files exactly as they were and no new file behind.

How a set commits (hand-written: the standard library has only the single-file `os.replace`, and
the packages that do more, e.g. atomicwrites, are unmaintained and single-file too):

1. each file is written to a hidden temporary beside its target (`.NAME.bsw-TOKEN.tmp`) and fsynced;
2. an intent record (`.bsw-TOKEN.commit`) listing every (temporary, target) is written and fsynced
   in the first target's folder: from here on the set is decided;
3. each existing target is hard-linked to a backup, then the temporary renamed over it; the folders
   are fsynced; the record and the backups are deleted.

An error in step 3 rolls back from the backups. A SIGKILL in step 3 leaves the record: the next
`recover` of that folder (every FileSet recovers the folders it writes to; `cases` recovers a case
folder before reading it) finishes the renames. Temporaries of a process that died before step 2
are deleted by the same `recover`. Folders a set had to create are removed again when it fails.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.read_guard import read_small_text

log = logging.getLogger(__name__)

#: What a file's content may be given as: bytes, text (UTF-8), or a function writing to a path.
Content = bytes | str | Callable[[Path], object]

_TAG = ".bsw-"
_RECORD_SUFFIX = ".commit"

# The system calls a failure can hit, one name each so that tests can make any of them fail.
_replace = os.replace
_link = os.link
_unlink = os.unlink


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some file systems do not open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_content(path: Path, content: Content, mode: int = 0o644) -> None:
    if callable(content):
        content(path)
        if not path.is_file():
            raise OSError(f"the writer did not create {path}")
        return
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


class WriteError(BrainSegError, OSError):
    """A file of a set could not be written; nothing of the set was kept.

    Also an OSError, so that callers which already handle failed writes keep handling it.
    """


def describe_os_error(exc: OSError, path: Path) -> str:
    """One line naming the problem and the path: 'permission denied', 'the disk is full', ..."""
    import errno

    reasons = {
        errno.EACCES: "permission denied", errno.EPERM: "permission denied",
        errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only", errno.EISDIR: "a folder is in the way",
        errno.ENOTDIR: "a file is in the way of a folder", errno.ENAMETOOLONG: "the name is too long",
        errno.EEXIST: "something is in the way",
    }
    reason = reasons.get(exc.errno or 0) or (exc.strerror or str(exc) or type(exc).__name__)
    where = exc.filename or path
    return f"cannot write {path}: {reason} ({where})" if str(where) != str(path) else f"cannot write {path}: {reason}"


class FileSet:
    """Files written together: all of them replace their targets, or none does.

        with FileSet() as files:
            files.add(case / "mask.nii.gz", lambda temp: nib.save(image, temp))
            files.add(case / "mask.json", json_text)
        # committed here; an exception inside the block discards every file

    Targets' folders are created when missing (and removed again if the set fails). The
    temporary keeps the target's suffixes, so writers that choose a format by name still work.
    """

    def __init__(self) -> None:
        self._token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._staged: list[tuple[Path | None, Path]] = []  # (temporary, target); None: remove the target
        self._created_folders: list[Path] = []
        self._done = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    @property
    def targets(self) -> list[Path]:
        return [target for _, target in self._staged]

    def temporary_for(self, target: Path) -> Path:
        """The hidden temporary a target is staged in (the target's name and suffixes kept)."""
        target = Path(target)
        return target.with_name(f".{target.name}{_TAG}{self._token}.tmp{_suffixes(target)}")

    def add(self, target: Path, content: Content, *, private: bool = False) -> Path:
        """Write `content` for `target` into its temporary now (fsynced); the target is untouched.

        `private`: readable by the owner alone (0600) from the first byte written (secrets).
        """
        if self._done:
            raise RuntimeError("this FileSet has already been committed or discarded")
        target = Path(os.path.abspath(target))
        if target in self.targets:
            raise ValueError(f"{target} is added twice to one set")
        if target.is_dir() and not target.is_symlink():
            raise WriteError(f"cannot write {target}: a folder is in the way")
        self._make_folder(target.parent)
        recover(target.parent)
        temporary = self.temporary_for(target)
        self._staged.append((temporary, target))
        try:
            _write_content(temporary, content, 0o600 if private else 0o644)
            os.chmod(temporary, 0o600 if private else _mode_for(target))
            _fsync_file(temporary)
        except OSError as exc:
            self.discard()
            raise WriteError(describe_os_error(exc, target)) from exc
        except BaseException:
            self.discard()
            raise
        return target

    def remove(self, target: Path) -> None:
        """Remove `target` when the set commits (a file an earlier write of the same set made, now stale)."""
        target = Path(os.path.abspath(target))
        if target in self.targets or _TAG in target.name:
            raise ValueError(f"{target} is added twice to one set, or is a temporary of a set")
        if target.is_file():
            self._staged.append((None, target))

    def _make_folder(self, folder: Path) -> None:
        missing: list[Path] = []
        probe = folder
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                self.discard()
                raise WriteError(describe_os_error(exc, path)) from exc
            self._created_folders.append(path)
        if not folder.is_dir():
            self.discard()
            raise WriteError(f"cannot write into {folder}: a file is in the way of the folder")

    def commit(self) -> list[Path]:
        """Put every staged file in place at once; on failure restore the old files and raise."""
        if self._done:
            return self.targets
        if not self._staged:
            self._done = True
            return []
        record = self._record_path()
        backups: list[tuple[Path, Path | None]] = []  # (target, its backup or None when it is new)
        current = self._staged[0][1]
        try:
            _write_content(record, json.dumps(
                {"files": [[None if temp is None else str(temp), str(target)] for temp, target in self._staged]}))
            _fsync_file(record)
            _fsync_folder(record.parent)
            for temporary, target in self._staged:
                current = target
                backup = None
                if target.exists() or target.is_symlink():
                    backup = target.with_name(f".{target.name}{_TAG}{self._token}.bak")
                    _keep_copy(target, backup)
                backups.append((target, backup))
                if temporary is None:
                    _unlink(target)
                else:
                    _replace(temporary, target)
            for folder in {target.parent for _, target in self._staged}:
                _fsync_folder(folder)
        except BaseException as exc:
            self._roll_back(backups)
            _quietly_unlink(record)
            self.discard()
            if isinstance(exc, OSError):
                raise WriteError(describe_os_error(exc, current)) from exc
            raise
        _quietly_unlink(record)
        for _, backup in backups:
            if backup is not None:
                _quietly_unlink(backup)
        self._done = True
        return self.targets

    def _record_path(self) -> Path:
        return self._staged[0][1].parent / f"{_TAG}{self._token}{_RECORD_SUFFIX}"

    def _roll_back(self, backups: list[tuple[Path, Path | None]]) -> None:
        for target, backup in reversed(backups):
            try:
                if backup is None:
                    if target.exists():
                        os.unlink(target)
                elif not target.exists():
                    os.replace(backup, target)
                elif os.path.samefile(backup, target):
                    os.unlink(backup)  # not replaced yet; and rename() between two links of one file does nothing
                else:
                    os.replace(backup, target)
            except OSError as exc:  # pragma: no cover - the disk failed under the rollback too
                log.error("could not restore %s from %s: %s", target, backup, exc)

    def discard(self) -> None:
        """Delete every temporary, and the folders this set created; targets stay as they were."""
        for temporary, _ in self._staged:
            if temporary is not None:
                _quietly_unlink(temporary)
        for folder in reversed(self._created_folders):
            try:
                folder.rmdir()
            except OSError:
                pass
        self._created_folders.clear()
        self._done = True


def write_atomic(path: Path, content: Content, *, private: bool = False) -> Path:
    """Write one file all-or-nothing (see FileSet; `private`: mode 0600 throughout); returns the path."""
    with FileSet() as files:
        files.add(path, content, private=private)
    return Path(path)


def _mode_for(target: Path) -> int:
    """Keep a replaced file's permissions; a new file gets rw-r--r--."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        return 0o644


def _suffixes(target: Path) -> str:
    name = target.name.lower()
    for double in (".nii.gz", ".tar.gz"):
        if name.endswith(double):
            return target.name[-len(double):]
    return target.suffix


def _keep_copy(target: Path, backup: Path) -> None:
    try:
        _link(target, backup, follow_symlinks=False)
    except OSError:
        shutil.copy2(target, backup, follow_symlinks=False)


def _quietly_unlink(path: Path) -> None:
    try:
        _unlink(path)
    except OSError:
        pass


def recover(folder: Path) -> None:
    """Finish sets a killed process had decided to commit in `folder`; delete its dead temporaries."""
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    if not any(_TAG in name for name in names):
        return
    for name in names:
        if name.startswith(_TAG) and name.endswith(_RECORD_SUFFIX):
            _finish(folder / name)
    for name in os.listdir(folder):
        if _TAG in name and (name.endswith(".bak") or ".tmp" in name):
            token = name.split(_TAG, 1)[1].split(".", 1)[0]
            if not _alive(token):
                _quietly_unlink(folder / name)


def _finish(record: Path) -> None:
    try:
        pairs = json.loads(read_small_text(record, "commit record"))["files"]
    except (OSError, BrainSegError, ValueError, KeyError, TypeError):
        return  # written only after every temporary was complete: unreadable means not decided
    token = record.name[len(_TAG):-len(_RECORD_SUFFIX)]
    if _alive(token):
        return  # its writer is still committing
    for temporary, target in pairs:
        if temporary is None:
            _quietly_unlink(Path(target))
        elif os.path.exists(temporary):
            try:
                _replace(temporary, target)
            except OSError as exc:
                log.error("could not finish writing %s: %s", target, exc)
                return
        backup = Path(target).with_name(f".{Path(target).name}{_TAG}{token}.bak")
        _quietly_unlink(backup)
    _quietly_unlink(record)
    log.warning("finished writing %d file(s) that an interrupted BrainSeg had committed", len(pairs))


def _alive(token: str) -> bool:
    try:
        pid = int(token.split("-", 1)[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_into(files: FileSet | None, path: Path, content: Content) -> Path:
    """Add `path` to `files` when it is written as part of a set, else write it on its own."""
    return files.add(path, content) if files is not None else write_atomic(path, content)
