"""A crash-safe, append-only journal of one edit session, so a killed app loses no correction.

The file starts with the mask the edits began from (and the AI mask), then one record per stroke
(or part of a long stroke), undo and redo, each written and fsynced when it happens. Recovery reads
the records up to the first damaged one (a write torn by the crash) and replays them onto the
starting mask, which gives back exactly the mask and the undo history the user had.

Journals live in a per-user state folder (`state_dir()`), one per study, named by the case id and
a hash of the source files and grid (`journal_path`).

Record layout: MAGIC (2 bytes), type (1), payload length (uint32 LE), CRC-32 of the payload
(uint32 LE), payload.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import sys
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from brainseg_gui.core.edit_session import Delta, EditError, EditSession
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.study import Grid, Study

log = logging.getLogger(__name__)

FILE_MAGIC = b"BSJOURNAL1\n"
RECORD_MAGIC = b"\xb5\x4a"
_RECORD_HEADER = struct.Struct("<2sBII")
HEADER, PART, END, UNDO, REDO, SAVED = 1, 2, 3, 4, 5, 6
_NAMES = {HEADER: "header", PART: "part", END: "end", UNDO: "undo", REDO: "redo", SAVED: "saved"}
JOURNAL_SUFFIX = ".bsjournal"
FORMAT_VERSION = 1


class JournalError(BrainSegError):
    """A journal that cannot be read, or that belongs to another study or grid."""


def state_dir() -> Path:
    """The per-user folder for BrainSeg's state (journals): $BRAINSEG_STATE_DIR, else the platform's."""
    override = os.environ.get("BRAINSEG_STATE_DIR")
    if override:
        return Path(override)
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "BrainSeg"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "BrainSeg"
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return base / "brainseg"


def study_key(study: Study) -> str:
    """A stable name for a study: its case id, its source files and its grid."""
    digest = hashlib.sha256()
    digest.update(study.case_id.encode("utf-8"))
    for name in sorted(study.sources):
        digest.update(f"\0{name}={Path(study.sources[name]).expanduser().resolve()}".encode())
    digest.update(repr(study.grid.shape).encode())
    digest.update(np.round(study.grid.affine, 5).tobytes())
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study.case_id)[:60] or "study"
    return f"{safe}-{digest.hexdigest()[:16]}"


def journal_path(study: Study, folder: Path | None = None) -> Path:
    """Where the journal of `study` lives (whether or not it exists)."""
    return (folder or state_dir()) / "journals" / (study_key(study) + JOURNAL_SUFFIX)


# ---- writing -----------------------------------------------------------------------------------


class Journal:
    """Appends a session's changes to its file; implements `edit_session.Recorder`.

    Create with `Journal.create` (new session) or `Journal.resume` (after recovery); attach with
    `session.recorder = journal`. Every record is flushed and fsynced when written.
    """

    def __init__(self, path: Path, handle: BinaryIO) -> None:
        self.path = path
        self._handle: BinaryIO | None = handle

    @classmethod
    def create(cls, path: Path, session: EditSession, meta: Mapping[str, Any]) -> Journal:
        """Start a journal for a fresh session (no strokes yet): header with both masks, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = dict(meta)
        header.update(format_version=FORMAT_VERSION, shape=list(session.grid.shape),
                      affine=session.grid.affine.tolist(),
                      created=header.get("created") or datetime.now(UTC).isoformat(timespec="seconds"))
        payload = _header_payload(header, session.initial, session.ai)
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(FILE_MAGIC)
                out.write(_record(HEADER, payload))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        _fsync_folder(path.parent)
        return cls(path, open(path, "ab"))

    @classmethod
    def resume(cls, contents: JournalContents) -> Journal:
        """Keep appending to a recovered journal: cut off a torn last record, and close a stroke
        the crash left open (as `replay` did), so the file and the session agree."""
        handle = open(contents.path, "r+b")  # noqa: SIM115
        handle.truncate(contents.valid_length)
        handle.seek(contents.valid_length)
        journal = cls(Path(contents.path), handle)
        if contents.open_stroke:
            journal.record_end(None)
        return journal

    # Recorder
    def record_part(self, delta: Delta) -> None:
        self._write(PART, _delta_payload(delta))

    def record_end(self, delta: Delta | None) -> None:
        self._write(END, _delta_payload(delta) if delta is not None else b"")

    def record_undo(self) -> None:
        self._write(UNDO, b"")

    def record_redo(self) -> None:
        self._write(REDO, b"")

    def record_saved(self, what: Mapping[str, Any]) -> None:
        """Note an export (path, revision), so a recovery can say what was already saved."""
        self._write(SAVED, json.dumps(dict(what), default=str).encode("utf-8"))

    def checkpoint(self, session: EditSession) -> None:
        """Write what an open stroke has changed so far (called every few seconds while painting)."""
        if session.in_stroke:
            session.take_part()

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def discard(self) -> None:
        """Close and delete the journal (the edits were exported or thrown away on purpose)."""
        self.close()
        self.path.unlink(missing_ok=True)

    def _write(self, kind: int, payload: bytes) -> None:
        if self._handle is None:
            raise JournalError(f"the journal {self.path} is closed")
        try:
            self._handle.write(_record(kind, payload))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            raise JournalError(f"cannot write the edit journal {self.path}: {exc}") from exc


def _record(kind: int, payload: bytes) -> bytes:
    return _RECORD_HEADER.pack(RECORD_MAGIC, kind, len(payload), zlib.crc32(payload)) + payload


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _header_payload(meta: Mapping[str, Any], base: np.ndarray, ai: np.ndarray) -> bytes:
    text = json.dumps(dict(meta), default=str).encode("utf-8")
    same = np.array_equal(base, ai)
    blobs = [zlib.compress(np.ascontiguousarray(base).tobytes(), 6),
             b"" if same else zlib.compress(np.ascontiguousarray(ai).tobytes(), 6)]
    out = struct.pack("<I", len(text)) + text
    for blob in blobs:
        out += struct.pack("<Q", len(blob)) + blob
    return out


def _delta_payload(delta: Delta) -> bytes:
    name = delta.name.encode("utf-8")
    wide = delta.indices.dtype == np.int64
    body = zlib.compress(delta.indices.tobytes() + delta.old.tobytes() + delta.new.tobytes(), 1)
    return struct.pack("<HBQ", len(name), int(wide), delta.size) + name + body


# ---- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalContents:
    """A journal as read: its metadata, starting masks, good records, and whether a tail was torn."""

    path: Path
    meta: dict[str, Any]
    base: np.ndarray
    ai: np.ndarray
    records: tuple[tuple[int, Delta | dict[str, Any] | None], ...]
    valid_length: int
    torn: bool

    @property
    def grid(self) -> Grid:
        return Grid(tuple(self.meta["shape"]), np.array(self.meta["affine"]))  # type: ignore[arg-type]

    @property
    def strokes(self) -> int:
        """Finished strokes recorded (an unfinished last stroke counts too)."""
        ends = sum(1 for kind, _ in self.records if kind == END)
        return ends + int(self.open_stroke)

    @property
    def open_stroke(self) -> bool:
        """The last stroke has parts on disk but never ended (the app died while painting)."""
        return any(kind == PART for kind, _ in self.records[self._last_end() + 1:])

    @property
    def saved(self) -> list[dict[str, Any]]:
        return [info for kind, info in self.records if kind == SAVED and isinstance(info, dict)]

    @property
    def unsaved(self) -> bool:
        """True when something changed after the last export (or nothing was exported)."""
        last_saved = max((i for i, (kind, _) in enumerate(self.records) if kind == SAVED), default=-1)
        return any(kind in (PART, END, UNDO, REDO) for kind, _ in self.records[last_saved + 1:])

    def _last_end(self) -> int:
        return max((i for i, (kind, _) in enumerate(self.records) if kind == END), default=-1)


def read_journal(path: Path) -> JournalContents:
    """Read a journal, stopping quietly at a torn or damaged record (the crash's last write)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JournalError(f"cannot read the edit journal {path}: {exc}") from exc
    if not data.startswith(FILE_MAGIC):
        raise JournalError(f"{path} is not a BrainSeg edit journal (no {FILE_MAGIC!r} at the start)")
    offset = len(FILE_MAGIC)
    records: list[tuple[int, Delta | dict[str, Any] | None]] = []
    header: tuple[dict[str, Any], np.ndarray, np.ndarray] | None = None
    torn = False
    while offset < len(data):
        parsed = _next_record(data, offset)
        if parsed is None:
            torn = True
            log.warning("%s: ignoring a damaged or incomplete record at byte %d (%d bytes)",
                        path, offset, len(data) - offset)
            break
        kind, payload, offset_next = parsed
        if kind == HEADER:
            if header is not None:
                raise JournalError(f"{path} holds two headers")
            header = _parse_header(path, payload)
        elif header is None:
            raise JournalError(f"{path} has records before its header")
        elif kind in (PART, END):
            records.append((kind, _parse_delta(payload) if payload else None))
        elif kind == SAVED:
            records.append((kind, json.loads(payload.decode("utf-8"))))
        else:
            records.append((kind, None))
        offset = offset_next
    if header is None:
        raise JournalError(f"{path} has no complete header: the session started but nothing was saved")
    meta, base, ai = header
    return JournalContents(path, meta, base, ai, tuple(records), offset, torn)


def _next_record(data: bytes, offset: int) -> tuple[int, bytes, int] | None:
    end_header = offset + _RECORD_HEADER.size
    if end_header > len(data):
        return None
    magic, kind, length, crc = _RECORD_HEADER.unpack_from(data, offset)
    if magic != RECORD_MAGIC or kind not in _NAMES or end_header + length > len(data):
        return None
    payload = data[end_header:end_header + length]
    if zlib.crc32(payload) != crc:
        return None
    return kind, payload, end_header + length


def _parse_header(path: Path, payload: bytes) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    try:
        (text_length,) = struct.unpack_from("<I", payload, 0)
        meta = json.loads(payload[4:4 + text_length].decode("utf-8"))
        offset = 4 + text_length
        blobs = []
        for _ in range(2):
            (length,) = struct.unpack_from("<Q", payload, offset)
            blobs.append(payload[offset + 8:offset + 8 + length])
            offset += 8 + length
        shape = tuple(int(n) for n in meta["shape"])
        base = np.frombuffer(zlib.decompress(blobs[0]), dtype=np.uint8).reshape(shape)
        ai = np.frombuffer(zlib.decompress(blobs[1]), dtype=np.uint8).reshape(shape) if blobs[1] else base
    except (struct.error, ValueError, KeyError, zlib.error, json.JSONDecodeError) as exc:
        raise JournalError(f"{path}: unreadable journal header ({exc})") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise JournalError(f"{path}: journal format {meta.get('format_version')!r}, "
                           f"this BrainSeg reads {FORMAT_VERSION}")
    return meta, base, ai


def _parse_delta(payload: bytes) -> Delta:
    name_length, wide, size = struct.unpack_from("<HBQ", payload, 0)
    offset = struct.calcsize("<HBQ")
    name = payload[offset:offset + name_length].decode("utf-8")
    body = zlib.decompress(payload[offset + name_length:])
    dtype = np.int64 if wide else np.int32
    width = np.dtype(dtype).itemsize * size
    indices = np.frombuffer(body, dtype=dtype, count=size)
    old = np.frombuffer(body, dtype=np.uint8, count=size, offset=width)
    new = np.frombuffer(body, dtype=np.uint8, count=size, offset=width + size)
    return Delta(indices.copy(), old.copy(), new.copy(), name)


# ---- recovery ----------------------------------------------------------------------------------


def replay(contents: JournalContents) -> EditSession:
    """The session the journal describes: its mask and undo/redo history, as when it was written.

    An unfinished last stroke (the app died with the mouse held) is closed as a stroke of its own.
    """
    session = EditSession(contents.base, contents.grid, ai=contents.ai)
    try:
        for kind, item in contents.records:
            if kind == PART and isinstance(item, Delta):
                session.apply_recorded(item)
            elif kind == END:
                if isinstance(item, Delta):
                    session.apply_recorded(item)
                session.end_stroke()
            elif kind == UNDO:
                session.undo()
            elif kind == REDO:
                session.redo()
        session.end_stroke()
    except EditError as exc:
        raise JournalError(f"{contents.path}: {exc}") from exc
    return session


def recover(path: Path, grid: Grid | None = None) -> tuple[EditSession, JournalContents]:
    """Read and replay a journal; with `grid`, refuse one written for another grid."""
    contents = read_journal(path)
    if grid is not None and not contents.grid.same_as(grid):
        raise JournalError(f"{path} was written for a {contents.grid.describe()} grid, "
                           f"the study is {grid.describe()}")
    return replay(contents), contents


def describe(contents: JournalContents) -> str:
    """One sentence for the restore dialog: how many strokes, from when (local time), what happened.

    E.g. '3 unsaved edit strokes made on 24 Nov 2026 at 20:32 (1 of them undone; the last one was
    still being painted when BrainSeg stopped)'.
    """
    strokes = contents.strokes
    unsaved = "unsaved " if contents.unsaved else ""
    text = f"{strokes} {unsaved}edit stroke{'s' if strokes != 1 else ''} made {_when(contents.meta.get('created'))}"
    notes = []
    undone = undone_strokes(contents)
    if undone:
        notes.append(f"{undone} of them undone")
    if contents.open_stroke:
        notes.append("the last one was still being painted when BrainSeg stopped")
    if notes:
        text += f" ({'; '.join(notes)})"
    if contents.saved:
        text += f"; last exported to {contents.saved[-1].get('path', '?')}"
    if contents.torn:
        text += "; the very last change was cut off by the crash"
    return text


def undone_strokes(contents: JournalContents) -> int:
    """Strokes undone and not redone when the journal ends (they can still be redone after restoring)."""
    done = undone = 0
    for kind, _ in contents.records:
        if kind == END:
            done, undone = done + 1, 0
        elif kind == UNDO and done:
            done, undone = done - 1, undone + 1
        elif kind == REDO and undone:
            done, undone = done + 1, undone - 1
    return undone


def _when(created: object) -> str:
    """'on 24 Nov 2026 at 20:32' in local time, from the journal's ISO timestamp."""
    try:
        moment = datetime.fromisoformat(str(created)).astimezone()
    except ValueError:
        return "in an earlier session"
    return f"on {moment.day} {moment:%b %Y} at {moment:%H:%M}"
