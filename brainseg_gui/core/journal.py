"""A crash-safe, append-only journal of one edit session, so a killed app loses no correction.

The file starts with the mask the edits began from (and the AI mask), then one record per stroke
(or part of a long stroke), undo and redo, each written and fsynced when it happens. Recovery reads
the records up to the first damaged one (a write torn by the crash) and replays them onto the
starting mask, which gives back exactly the mask and the undo history the user had.

Journals live in a per-user state folder (`state_dir()`), one per study, named by the case id and
a hash of the source files and grid (`journal_path`).

Record layout: MAGIC (2 bytes), type (1), payload length (uint32 LE), CRC-32 of the payload
(uint32 LE), payload.

A journal is read as a regular file of bounded size (core.read_guard), and every compressed mask or
stroke is inflated with a bound the header's grid sets, so a damaged file can never block, exhaust
memory or raise anything but JournalError. One that cannot be restored is moved aside
(`set_aside`: renamed NAME.unrestorable-TIME), never deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.edit_session import Delta, EditSession
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.labels import LabelConvention
from brainseg_gui.core.read_guard import (
    MAX_IMAGE_BYTES,
    check_declared_size,
    read_small_bytes,
)
from brainseg_gui.core.study import Grid, Study

log = logging.getLogger(__name__)

FILE_MAGIC = b"BSJOURNAL1\n"
RECORD_MAGIC = b"\xb5\x4a"
_RECORD_HEADER = struct.Struct("<2sBII")
HEADER, PART, END, UNDO, REDO, SAVED = 1, 2, 3, 4, 5, 6
_NAMES = {HEADER: "header", PART: "part", END: "end", UNDO: "undo", REDO: "redo", SAVED: "saved"}
JOURNAL_SUFFIX = ".bsjournal"
FORMAT_VERSION = 1
#: The largest journal read: the largest image BrainSeg reads, twice over for the strokes.
MAX_JOURNAL_BYTES = 2 * MAX_IMAGE_BYTES
#: A journal that cannot be restored is renamed to NAME + this + a time stamp.
SET_ASIDE_TAG = ".unrestorable-"
_LABELS = np.array(sorted(LabelConvention.BRATS.allowed_values), dtype=np.uint8)


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
        write_atomic(path, FILE_MAGIC + _record(HEADER, payload))
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
    """Read a journal, stopping quietly at a torn or damaged record (the crash's last write).

    A record whose checksum holds but whose content does not (bad compression, sizes or indices
    that do not fit the header's grid) means a corrupt journal: JournalError, as for every other
    problem, never another exception.
    """
    path = Path(path)
    try:
        data = read_small_bytes(path, "edit journal", MAX_JOURNAL_BYTES)
    except (BrainSegError, OSError) as exc:
        raise JournalError(f"cannot read the edit journal: {exc}") from None
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
            voxels = header[1].size
            records.append((kind, _parse_delta(path, offset, payload, voxels) if payload else None))
        elif kind == SAVED:
            records.append((kind, _parse_saved(path, offset, payload)))
        elif payload:
            raise JournalError(f"{path}: the {_NAMES[kind]} record at byte {offset} carries {len(payload)} "
                               "bytes, it carries none")
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
    """(meta, starting mask, AI mask) of the header record; JournalError naming what does not fit."""
    try:
        (text_length,) = struct.unpack_from("<I", payload, 0)
        if 4 + text_length > len(payload):
            raise ValueError(f"its text claims {text_length} bytes, the record has {len(payload) - 4}")
        meta = json.loads(payload[4:4 + text_length].decode("utf-8"))
        offset = 4 + text_length
        blobs = []
        for _ in range(2):
            (length,) = struct.unpack_from("<Q", payload, offset)
            if offset + 8 + length > len(payload):
                raise ValueError(f"a mask claims {length} bytes, the record has {len(payload) - offset - 8}")
            blobs.append(payload[offset + 8:offset + 8 + length])
            offset += 8 + length
        if offset != len(payload):
            raise ValueError(f"{len(payload) - offset} bytes follow the masks")
        if not isinstance(meta, dict):
            raise TypeError(f"its metadata is {type(meta).__name__}, not an object")
        if meta.get("format_version") != FORMAT_VERSION:
            raise JournalError(f"{path}: journal format {meta.get('format_version')!r}, "
                               f"this BrainSeg reads {FORMAT_VERSION}")
        shape = tuple(_whole(n) for n in meta["shape"])
        grid = Grid(shape, np.array(meta["affine"], dtype=np.float64))  # type: ignore[arg-type]  # checks 3
        check_declared_size(path, grid.shape, 1)
        voxels = int(np.prod(grid.shape))
        base = np.frombuffer(_inflate(blobs[0], voxels, "the starting mask"), np.uint8).reshape(grid.shape)
        ai = (np.frombuffer(_inflate(blobs[1], voxels, "the AI mask"), np.uint8).reshape(grid.shape)
              if blobs[1] else base)
        for name, mask in (("starting", base), ("AI", ai)):
            if not np.isin(mask, _LABELS).all():
                raise ValueError(f"the {name} mask holds values outside {_LABELS.tolist()}")
    except JournalError:
        raise
    except (BrainSegError, struct.error, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise JournalError(f"{path}: unreadable journal header ({exc})") from None
    return meta, base, ai


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a grid size {value!r} is not a whole number")
    return value


def _inflate(blob: bytes, size: int, what: str) -> bytes:
    """`blob` decompressed, which must give exactly `size` bytes: never inflated beyond that."""
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(blob, size)
        complete = inflater.eof
    except zlib.error as exc:
        raise ValueError(f"{what} is not valid zlib data ({exc})") from None
    if len(data) != size or not complete or inflater.unused_data:
        beyond = " or more" if inflater.unconsumed_tail or not complete else ""
        raise ValueError(f"{what} inflates to {len(data)}{beyond} bytes, the grid needs {size}")
    return data


def _parse_delta(path: Path, at: int, payload: bytes, voxels: int) -> Delta:
    """One stroke (part) of a grid of `voxels` voxels; JournalError when it cannot be one."""
    try:
        name_length, wide, size = struct.unpack_from("<HBQ", payload, 0)
        offset = struct.calcsize("<HBQ")
        if wide not in (0, 1) or size > voxels:
            raise ValueError(f"{size} voxels in a grid of {voxels} (index width flag {wide})")
        name = payload[offset:offset + name_length].decode("utf-8")
        if len(name.encode("utf-8")) != name_length:
            raise ValueError("the stroke name is cut off")
        dtype = np.dtype(np.int64 if wide else np.int32)
        width = dtype.itemsize * size
        body = _inflate(payload[offset + name_length:], width + 2 * size, "the stroke")
        indices = np.frombuffer(body, dtype=dtype, count=size)
        old = np.frombuffer(body, dtype=np.uint8, count=size, offset=width)
        new = np.frombuffer(body, dtype=np.uint8, count=size, offset=width + size)
        if size and (int(indices.min()) < 0 or int(indices.max()) >= voxels):
            raise ValueError(f"voxel indices {int(indices.min())}..{int(indices.max())} outside the grid "
                             f"of {voxels}")
        if not (np.isin(old, _LABELS).all() and np.isin(new, _LABELS).all()):
            raise ValueError(f"labels outside {_LABELS.tolist()}")
        return Delta(indices.copy(), old.copy(), new.copy(), name)
    except (struct.error, ValueError) as exc:
        raise JournalError(f"{path}: the stroke record at byte {at} is corrupt ({exc})") from None


def _parse_saved(path: Path, at: int, payload: bytes) -> dict[str, Any]:
    try:
        info = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise JournalError(f"{path}: the export note at byte {at} is corrupt ({exc})") from None
    if not isinstance(info, dict):
        raise JournalError(f"{path}: the export note at byte {at} is {type(info).__name__}, not an object")
    return info


# ---- recovery ----------------------------------------------------------------------------------


def replay(contents: JournalContents) -> EditSession:
    """The session the journal describes: its mask and undo/redo history, as when it was written.

    An unfinished last stroke (the app died with the mouse held) is closed as a stroke of its own.
    """
    try:
        session = EditSession(contents.base, contents.grid, ai=contents.ai)
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
    except BrainSegError as exc:  # EditError: a stroke does not start from the mask; LabelError, ...
        raise JournalError(f"{contents.path} cannot be replayed: {exc}") from None
    return session


def recover(path: Path, grid: Grid | None = None) -> tuple[EditSession, JournalContents]:
    """Read and replay a journal; with `grid`, refuse one written for another grid."""
    contents = read_journal(path)
    if grid is not None and not contents.grid.same_as(grid):
        raise JournalError(f"{path} was written for a {contents.grid.describe()} grid, "
                           f"the study is {grid.describe()}")
    return replay(contents), contents


def set_aside(path: Path) -> Path:
    """Rename a journal that cannot be restored to NAME.unrestorable-TIME (never deleted); the new path."""
    path = Path(path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}{SET_ASIDE_TAG}{stamp}")
    number = 1
    while os.path.lexists(target):
        number += 1
        target = path.with_name(f"{path.name}{SET_ASIDE_TAG}{stamp}-{number}")
    os.rename(path, target)
    log.warning("moved the unrestorable edit journal %s aside to %s", path, target)
    return target


def _set_aside_error(path: Path, error: JournalError) -> JournalError:
    """`error` with where the journal went (moved aside), or why it could not be moved."""
    try:
        target = set_aside(path)
    except OSError as exc:
        return JournalError(f"{error}; the journal could not be moved aside either ({exc.strerror or exc})")
    return JournalError(f"{error}. The unsaved edits cannot be restored; the journal was kept as {target}")


def read_or_set_aside(path: Path) -> JournalContents:
    """`read_journal`, moving a journal that cannot be read aside (JournalError says where)."""
    try:
        return read_journal(path)
    except JournalError as error:
        if not os.path.lexists(path):
            raise
        raise _set_aside_error(Path(path), error) from None


def recover_or_set_aside(path: Path, grid: Grid | None = None) -> tuple[EditSession, JournalContents]:
    """`recover`, moving a journal that cannot be restored aside (JournalError says where).

    The journal's name is derived from the study's grid (`journal_path`), so one that does not fit
    the grid is as unrestorable as a corrupt one.
    """
    try:
        return recover(path, grid)
    except JournalError as error:
        if not os.path.lexists(path):
            raise
        raise _set_aside_error(Path(path), error) from None


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
