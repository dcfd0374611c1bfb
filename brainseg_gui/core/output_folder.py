"""Which files in an output folder a command wrote: the rule that a user's own files are never touched.

`train`, `finetune`, `prepare`, `crossval` and `experiment` write into a folder the user names. Each
claims it first (`claim`): a missing or empty folder, or one a previous run of the same command
wrote, is accepted; anything else is refused before any work, unless `force` is given, and then
the command writes beside the other entries without touching them. What a command creates is
recorded, before it is written, in a hidden marker file in the folder (`MARKER_NAME`: command,
version, created time, relative paths), so a rerun or a resume may replace exactly those paths
and nothing else. Nothing is created by `claim` itself: the folder appears with the first `own`,
so a command refused later by its argument or data checks leaves no folder behind.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from brainseg_gui import __version__
from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.read_guard import read_small_text

MARKER_NAME = ".brainseg-output.json"
MARKER_FORMAT = "brainseg-output"
#: How many of a refused folder's entries the error names.
SHOWN_ENTRIES = 3


class OutputFolderError(BrainSegError):
    """An output folder holds files this command did not write (or a file is where the folder goes)."""


@dataclass
class OutputFolder:
    """A folder claimed by one command: the paths it owns (relative, '/'-separated) and its marker.

    A path is owned when it, or a folder above it, was recorded with `own`.
    """

    folder: Path
    command: str
    paths: set[str] = field(default_factory=set)
    created: str = ""

    @property
    def marker(self) -> Path:
        return self.folder / MARKER_NAME

    def relative(self, path: Path | str) -> str:
        """`path` (absolute, or relative to the folder) as the marker records it; ValueError outside."""
        full = Path(path) if Path(path).is_absolute() else self.folder / path
        relative = os.path.relpath(os.path.abspath(full), os.path.abspath(self.folder))
        parts = PurePosixPath(Path(relative).as_posix())
        if relative in (".", "") or ".." in parts.parts:
            raise ValueError(f"{path} is not inside the output folder {self.folder}")
        return parts.as_posix()

    def owns(self, path: Path | str) -> bool:
        relative = PurePosixPath(self.relative(path))
        return any(str(p) in self.paths for p in (relative, *relative.parents) if str(p) != ".")

    def may_replace(self, path: Path | str) -> bool:
        """Whether this command may write or delete `path`: it is not there yet, or it is owned."""
        full = self.folder / self.relative(path)
        return self.owns(path) or not (full.exists() or full.is_symlink())

    def refuse_foreign(self, *paths: Path | str) -> None:
        """Raise OutputFolderError for the first of `paths` that is there and not owned (a user's
        file is never overwritten, even with --force); records nothing, so it can run before the work."""
        foreign = [path for path in paths if not self.may_replace(path)]
        if foreign:
            raise OutputFolderError(
                f"{self.folder / self.relative(foreign[0])} was not written by `brainseg {self.command}`: it is "
                f"not overwritten; choose an empty or new folder")

    def own(self, *paths: Path | str) -> None:
        """Record `paths` as this command's before writing them (the folder and marker appear now).

        Refuses, before recording any, a path that is there already and is not owned.
        """
        self.refuse_foreign(*paths)
        relatives = [self.relative(path) for path in paths]
        new = {r for r in relatives if not self.owns(r)}
        if self.marker.is_file() and not new:
            return
        self.paths.update(r for r in new if not any(str(p) in new for p in PurePosixPath(r).parents))
        self._write_marker()

    def remove(self, path: Path | str) -> None:
        """Delete an owned file or folder (a missing one is fine); refuses anything else."""
        full = self.folder / self.relative(path)
        if not (full.exists() or full.is_symlink()):
            return
        if not self.owns(path):
            raise OutputFolderError(f"{full} was not written by `brainseg {self.command}`: it is not deleted")
        if full.is_dir() and not full.is_symlink():
            shutil.rmtree(full)
        else:
            full.unlink()

    def _write_marker(self) -> None:
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self.created = self.created or now
        document = {"format": MARKER_FORMAT, "command": self.command, "brainseg_version": __version__,
                    "created": self.created, "updated": now, "paths": sorted(self.paths)}
        write_atomic(self.marker, json.dumps(document, indent=1) + "\n")


def claim(folder: Path | str, command: str, *, force: bool = False, resume: bool = False,
          nested: Mapping[str, str] | None = None) -> OutputFolder:
    """Accept `folder` as `command`'s output folder, or raise OutputFolderError saying what to do.

    Accepted: a missing folder (created by the first `own`), an empty one, one whose marker says
    `command` (a rerun or resume: its own paths may be replaced), one holding only `nested` entries
    (name -> the command whose output folder it is: `brainseg crossval` takes over the `fold<k>`
    folders `brainseg train --folds K --fold k` wrote, as model/README.md does it), and, with `force`,
    one holding other entries that carry no marker (they are left alone). Refused even with `force`: a
    file where the folder goes, another command's folder, an unreadable marker. `resume` only words
    the refusal for a user who asked to continue a run.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"the output {folder} is a file; give a folder for `brainseg {command}`")
    if not folder.is_dir():
        return OutputFolder(folder, command)
    marker = folder / MARKER_NAME
    if marker.exists() or marker.is_symlink():
        document = _read_marker(marker, command)
        if document["command"] != command:
            raise OutputFolderError(
                f"{folder} holds the output of `brainseg {document['command']}`, not of `brainseg {command}`: "
                f"choose an empty or new folder")
        return OutputFolder(folder, command, set(document["paths"]), str(document.get("created", "")))
    entries = sorted(os.listdir(folder))
    taken_over = {entry for entry in entries if _output_of(folder / entry, (nested or {}).get(entry))}
    entries = [entry for entry in entries if entry not in taken_over]
    if entries and not force:
        shown = ", ".join(entries[:SHOWN_ENTRIES]) + (f" and {len(entries) - SHOWN_ENTRIES} more"
                                                      if len(entries) > SHOWN_ENTRIES else "")
        start = f"nothing of `brainseg {command}` to resume in {folder}" if resume else f"{folder} is not empty"
        raise OutputFolderError(
            f"{start}: it holds {shown}, not written by `brainseg {command}`; choose an empty or new folder, "
            f"or add --force to write beside them (nothing there is deleted or overwritten)")
    return OutputFolder(folder, command, taken_over)


def _output_of(path: Path, command: str | None) -> bool:
    """Whether `path` is a folder whose readable marker says `command` wrote it."""
    marker = path / MARKER_NAME
    if command is None or path.is_symlink() or not path.is_dir() or not marker.is_file():
        return False
    try:
        return _read_marker(marker, command)["command"] == command
    except OutputFolderError:
        return False


def _read_marker(marker: Path, command: str) -> dict:
    """The marker's document, checked; anything unreadable makes the folder a foreign one."""
    problem = ""
    try:
        document = json.loads(read_small_text(marker, "output marker"))
    except BrainSegError as error:
        problem = str(error)
    except ValueError as error:
        problem = f"not JSON ({error})"
    else:
        if not _valid(document):
            problem = "not a BrainSeg output marker"
    if problem:
        raise OutputFolderError(
            f"{marker.parent} holds an unreadable output marker {MARKER_NAME} ({problem}): it is not treated as "
            f"a folder of `brainseg {command}`; choose an empty or new folder")
    return document


def _valid(document: object) -> bool:
    if not isinstance(document, dict) or document.get("format") != MARKER_FORMAT:
        return False
    paths = document.get("paths")
    return isinstance(document.get("command"), str) and isinstance(paths, list) and all(
        _plain_relative(p) for p in paths)


def _plain_relative(path: object) -> bool:
    """A path the marker may grant: relative, inside the folder, not the folder itself."""
    if not isinstance(path, str) or not path or "\\" in path:
        return False
    parts = PurePosixPath(path)
    return not parts.is_absolute() and ".." not in parts.parts and str(parts) != "."

