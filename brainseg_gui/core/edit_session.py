"""The mask being corrected: a mutable BraTS label map on the study's grid, with stroke-level undo.

This is the one mutable thing in the program. The user edits tissue labels (0, NCR=1, ED=2, ET=4),
never the regions, so WT ⊇ TC ⊇ ET holds by construction. Coordinates are voxel indices of the
study's own grid (file axis order, see `core.study`); the viewer maps its RAS views to them with
`core.orientation.Reorientation`. Brush sizes are millimetres, so a brush looks round on screen
whatever the voxel spacing.

A stroke (mouse press to release) is any number of operations; it ends as one `Delta` holding
only the voxels it changed (flat indices, old and new values: 6 bytes a voxel), which is what
undo, redo and the journal keep. A `Recorder` (the journal) hears every stroke, part of a stroke,
undo and redo, so nothing changes the mask without being written down.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from brainseg_gui.core.errors import BrainSegError, GridMismatchError, LabelError
from brainseg_gui.core.labels import LabelConvention, check_values
from brainseg_gui.core.review import Comparison, compare
from brainseg_gui.core.study import Grid

#: The values an edit may write (BraTS 2017-2021): background, NCR, ED, ET.
EDIT_VALUES: tuple[int, ...] = (0, 1, 2, 4)
#: Undo history limits: whichever is reached first drops the oldest strokes.
MAX_UNDO_STROKES = 500
MAX_UNDO_BYTES = 256 * 1024 * 1024

#: A box of voxels: one slice per grid axis (file order).
Box = tuple[slice, slice, slice]


class EditError(BrainSegError):
    """An edit that cannot be done as asked (e.g. interpolating between slices without the class)."""


@dataclass(frozen=True)
class Delta:
    """The voxels one stroke (or part of one) changed: flat C-order indices, old and new labels."""

    indices: np.ndarray
    old: np.ndarray
    new: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        if not (self.indices.shape == self.old.shape == self.new.shape) or self.indices.ndim != 1:
            raise ValueError(f"delta arrays must be 1D of one length, got {self.indices.shape}, "
                             f"{self.old.shape}, {self.new.shape}")

    @property
    def size(self) -> int:
        return int(self.indices.size)

    @property
    def nbytes(self) -> int:
        return int(self.indices.nbytes + self.old.nbytes + self.new.nbytes)

    def box(self, shape: tuple[int, int, int]) -> Box | None:
        """Bounding box of the changed voxels (None when empty)."""
        if self.size == 0:
            return None
        coords = np.unravel_index(self.indices, shape)
        return tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)  # type: ignore[return-value]


@dataclass(frozen=True)
class Limits:
    """Where a paint operation may change voxels.

    only: paint only over voxels currently holding one of these labels (None: anywhere).
    intensity: an image on the grid (file order); with it, paint only where low <= value <= high.
    """

    only: frozenset[int] | None = None
    intensity: np.ndarray | None = field(default=None, repr=False)
    low: float = -math.inf
    high: float = math.inf


NO_LIMITS = Limits()


class Recorder(Protocol):
    """Hears every change of a session (the journal implements it)."""

    def record_part(self, delta: Delta) -> None: ...
    def record_end(self, delta: Delta | None) -> None: ...
    def record_undo(self) -> None: ...
    def record_redo(self) -> None: ...


def index_dtype(shape: tuple[int, ...]) -> type[np.signedinteger]:
    """int32 flat indices where they fit (every realistic MRI grid), else int64."""
    return np.int32 if int(np.prod(shape)) < 2**31 else np.int64


class EditSession:
    """A label map being edited, its undo/redo history and the AI mask it started from.

    initial: the labels to start from (BraTS values), shape `grid.shape`. ai: the model's mask, the
    reference for provenance and review (default: `initial`). Both are copied.
    """

    def __init__(self, initial: np.ndarray, grid: Grid, *, ai: np.ndarray | None = None,
                 max_undo: int = MAX_UNDO_STROKES, max_undo_bytes: int = MAX_UNDO_BYTES,
                 recorder: Recorder | None = None) -> None:
        for name, array in (("initial mask", initial), ("AI mask", ai)):
            if array is None:
                continue
            if array.shape != grid.shape:
                raise GridMismatchError(f"the {name} has shape {array.shape}, the grid is {grid.shape}")
            check_values(np.asarray(array), LabelConvention.BRATS, source=f"the {name}")
        self.grid = grid
        self.labels = np.array(initial, dtype=np.uint8, order="C", copy=True)
        self.initial = _read_only(self.labels.copy())
        self.ai = _read_only(np.array(ai if ai is not None else initial, dtype=np.uint8, order="C"))
        self.recorder = recorder
        self.max_undo = max_undo
        self.max_undo_bytes = max_undo_bytes
        self._index_dtype = index_dtype(grid.shape)
        self._undo: deque[Delta] = deque()
        self._redo: list[Delta] = []
        self._undo_bytes = 0
        self._stroke: str | None = None
        self._pending_indices: list[np.ndarray] = []
        self._pending_old: list[np.ndarray] = []
        self._parts: list[Delta] = []
        #: Counts every change (stroke, undo, redo): the GUI compares it with the last export.
        self.revision = 0

    # ---- strokes ----------------------------------------------------------------------------------
    @property
    def in_stroke(self) -> bool:
        return self._stroke is not None

    def begin_stroke(self, name: str) -> None:
        """Start a stroke; operations until `end_stroke` undo as one step."""
        if self._stroke is not None:
            self.end_stroke()
        self._stroke = name

    def end_stroke(self) -> Delta | None:
        """Close the stroke: push its net change on the undo stack and tell the recorder."""
        if self._stroke is None:
            return None
        remainder = self._collect()
        parts = self._parts + ([remainder] if remainder is not None else [])
        name = self._stroke
        self._stroke, self._parts = None, []
        if self.recorder is not None and parts:
            self.recorder.record_end(remainder)
        delta = self._merge(parts, name)
        if delta is None:
            return None
        self._push_undo(delta)
        self._redo.clear()
        self.revision += 1
        return delta

    @contextmanager
    def stroke(self, name: str) -> Iterator[None]:
        """`with session.stroke("brush"): ...` — the operations inside undo as one step."""
        self.begin_stroke(name)
        try:
            yield
        finally:
            self.end_stroke()

    def take_part(self) -> Delta | None:
        """What the open stroke changed since the last part, handed to the recorder now.

        The journal calls this every few seconds while the mouse is held, so a long stroke is
        on disk before it ends; the undo step stays the whole stroke.
        """
        if self._stroke is None:
            return None
        part = self._collect()
        if part is not None:
            self._parts.append(part)
            if self.recorder is not None:
                self.recorder.record_part(part)
        return part

    def apply_recorded(self, delta: Delta) -> None:
        """Replay a recorded part of a stroke (the journal's recovery); opens a stroke if needed."""
        if self._stroke is None:
            self._stroke = delta.name or "recovered"
        current = self.labels.reshape(-1)
        if delta.size and not np.array_equal(current[delta.indices], delta.old):
            raise EditError(f"the recorded stroke {delta.name!r} does not start from the current mask "
                            "(the journal belongs to another mask)")
        current[delta.indices] = delta.new
        self._parts.append(delta)

    # ---- painting ---------------------------------------------------------------------------------
    def paint_disc(self, axis: int, centre: Sequence[int], radius_mm: float, label: int, *,
                   to: Sequence[int] | None = None, limits: Limits = NO_LIMITS) -> Box | None:
        """Paint a round brush in the slice through `centre` perpendicular to grid `axis`.

        With `to`, paints the whole swept path from `centre` to `to` (a mouse drag between two
        events), so fast strokes have no gaps. Returns the box that changed, or None.
        """
        self._check_label(label)
        start = self._voxel(centre)
        end = self._voxel(to) if to is not None else start
        if start[axis] != end[axis]:
            raise EditError(f"a 2D brush stroke stays in one slice; got {start} to {end} along axis {axis}")
        plane = [a for a in range(3) if a != axis]
        box, mask = self._capsule(start, end, radius_mm, plane)
        return self._paint(box, mask, label, limits)

    def paint_sphere(self, centre: Sequence[int], radius_mm: float, label: int, *,
                     to: Sequence[int] | None = None, limits: Limits = NO_LIMITS) -> Box | None:
        """Paint a ball of `radius_mm` (swept to `to` if given), in 3D."""
        self._check_label(label)
        start = self._voxel(centre)
        end = self._voxel(to) if to is not None else start
        box, mask = self._capsule(start, end, radius_mm, [0, 1, 2])
        return self._paint(box, mask, label, limits)

    def erase_disc(self, axis: int, centre: Sequence[int], radius_mm: float, *, only: int | None = None,
                   to: Sequence[int] | None = None) -> Box | None:
        """Set voxels under a round brush to background (only those of label `only` if given)."""
        limits = Limits(only=frozenset({only})) if only is not None else NO_LIMITS
        return self.paint_disc(axis, centre, radius_mm, 0, to=to, limits=limits)

    def replace_box(self, box: Box, labels: np.ndarray, name: str = "click") -> Box | None:
        """Write `labels` (shaped like `box`) over the mask there as one undoable, journaled step.

        For changes computed elsewhere (a click correction): only the voxels that differ are recorded.
        """
        labels = np.asarray(labels)
        if labels.shape != tuple(s.stop - s.start for s in box):
            raise EditError(f"the new labels have shape {labels.shape}, the box {box} another")
        check_values(labels, LabelConvention.BRATS, source="the new labels")
        changed: Box | None = None
        with self.stroke(name):
            for value in np.unique(labels[labels != self.labels[box]]):
                hit = self._paint(box, labels == value, int(value), NO_LIMITS)
                if hit is not None:
                    changed = hit if changed is None else tuple(  # type: ignore[assignment]
                        slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(changed, hit))
        return changed

    def fill(self, axis: int, seed: Sequence[int], label: int, *, limits: Limits = NO_LIMITS) -> Box | None:
        """Flood-fill, in the slice through `seed`, the 4-connected region of the seed's label.

        With an intensity range in `limits`, the region is also limited to voxels in the range.
        """
        self._check_label(label)
        voxel = self._voxel(seed)
        index: list[slice | int] = [slice(None)] * 3
        index[axis] = voxel[axis]
        plane = self.labels[tuple(index)]
        seed_2d = tuple(v for a, v in enumerate(voxel) if a != axis)
        target = int(plane[seed_2d])
        if target == label or (limits.only is not None and target not in limits.only):
            return None
        same = plane == target
        if limits.intensity is not None:
            values = limits.intensity[tuple(index)]
            same &= (values >= limits.low) & (values <= limits.high)
            if not same[seed_2d]:
                return None
        from scipy import ndimage  # here, not at the top: scipy.ndimage costs ~0.5 s of the viewer's start

        components, _ = ndimage.label(same)
        region = components == components[seed_2d]
        rows, cols = np.nonzero(region)
        box_2d = (slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1))
        box = self._box_from_plane(axis, voxel[axis], box_2d)
        return self._paint(box, np.expand_dims(region[box_2d], axis), label, NO_LIMITS)

    def interpolate(self, axis: int, first: int, last: int, label: int, *,
                    limits: Limits = NO_LIMITS) -> Box | None:
        """Fill the slices strictly between `first` and `last` with `label`'s shape, interpolated.

        Shape-based interpolation: the signed distance maps (mm) of the label in the two slices
        are blended linearly; a voxel is painted where the blend is negative (inside).
        """
        self._check_label(label)
        if label == 0:
            raise EditError("interpolation needs a tumour class, not background")
        first, last = sorted((int(first), int(last)))
        size = self.grid.shape[axis]
        if first < 0 or last >= size:
            raise EditError(f"slices {first} and {last} are outside 0..{size - 1} along axis {axis}")
        if last - first < 2:
            raise EditError(f"slices {first} and {last} have no slice between them to interpolate")
        masks = []
        for index in (first, last):
            key: list[slice | int] = [slice(None)] * 3
            key[axis] = index
            mask = self.labels[tuple(key)] == label
            if not mask.any():
                raise EditError(f"slice {index} (axis {axis}) holds no voxel of label {label} to interpolate from")
            masks.append(mask)
        if not (masks[0] & masks[1]).any():
            raise EditError(f"the shapes on slices {first} and {last} do not overlap, so no shape can be "
                            "interpolated between them (it would vanish part-way); draw a slice between "
                            "them, or make the two shapes overlap")
        union = masks[0] | masks[1]
        rows, cols = np.nonzero(union)
        plane_shape = union.shape
        box_2d = (slice(max(int(rows.min()) - 1, 0), min(int(rows.max()) + 2, plane_shape[0])),
                  slice(max(int(cols.min()) - 1, 0), min(int(cols.max()) + 2, plane_shape[1])))
        spacing = [s for a, s in enumerate(self.grid.spacing) if a != axis]
        distance = [_signed_distance(m[box_2d], spacing) for m in masks]
        steps = np.arange(first + 1, last)
        weights = (steps - first) / (last - first)
        blend = (1 - weights)[:, None, None] * distance[0][None] + weights[:, None, None] * distance[1][None]
        if not (blend < 0).any(axis=(1, 2)).all():
            raise EditError(f"interpolating between slices {first} and {last} leaves a slice between them "
                            "empty; draw a slice between them")
        inside = np.moveaxis(blend < 0, 0, axis)
        box_list = list(self._box_from_plane(axis, first + 1, box_2d))
        box_list[axis] = slice(first + 1, last)
        box: Box = (box_list[0], box_list[1], box_list[2])
        return self._paint(box, inside, label, limits)

    # ---- undo -------------------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo) or self._stroke is not None

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_depth(self) -> int:
        return len(self._undo)

    @property
    def redo_depth(self) -> int:
        return len(self._redo)

    @property
    def undo_bytes(self) -> int:
        """Memory held by the undo and redo history."""
        return self._undo_bytes + sum(d.nbytes for d in self._redo)

    def undo(self) -> Box | None:
        """Take back the last stroke; returns the box it touched (None if nothing to undo)."""
        self.end_stroke()
        if not self._undo:
            return None
        delta = self._undo.pop()
        self._undo_bytes -= delta.nbytes
        self.labels.reshape(-1)[delta.indices] = delta.old
        self._redo.append(delta)
        self.revision += 1
        if self.recorder is not None:
            self.recorder.record_undo()
        return delta.box(self.grid.shape)

    def redo(self) -> Box | None:
        """Do again the last undone stroke."""
        self.end_stroke()
        if not self._redo:
            return None
        delta = self._redo.pop()
        self.labels.reshape(-1)[delta.indices] = delta.new
        self._push_undo(delta)
        self.revision += 1
        if self.recorder is not None:
            self.recorder.record_redo()
        return delta.box(self.grid.shape)

    # ---- what changed -----------------------------------------------------------------------------
    def comparison(self) -> Comparison:
        """The corrected mask against the AI's: Dice per region, voxels changed per class and region."""
        return compare(self.ai, self.labels)

    @property
    def modified(self) -> bool:
        """True when the mask differs from the AI's."""
        return not np.array_equal(self.ai, self.labels)

    def snapshot(self) -> np.ndarray:
        """A read-only copy of the current mask (for exports running in a worker)."""
        return _read_only(self.labels.copy())

    # ---- internals --------------------------------------------------------------------------------
    def _check_label(self, label: int) -> None:
        if int(label) not in EDIT_VALUES:
            raise LabelError(f"cannot paint label {label}: edits use BraTS values {EDIT_VALUES}")

    def _voxel(self, point: Sequence[int]) -> tuple[int, int, int]:
        voxel = tuple(int(v) for v in point)
        if len(voxel) != 3 or not all(0 <= v < n for v, n in zip(voxel, self.grid.shape)):
            raise EditError(f"voxel {tuple(point)} is outside the grid {self.grid.shape}")
        return voxel  # type: ignore[return-value]

    def _capsule(self, start: tuple[int, int, int], end: tuple[int, int, int], radius_mm: float,
                 axes: list[int]) -> tuple[Box, np.ndarray]:
        """Voxels within `radius_mm` of the segment start-end, measured in `axes` (others fixed)."""
        spacing = self.grid.spacing
        radius = max(float(radius_mm), 0.0)
        key: list[slice] = []
        coords: list[np.ndarray] = []
        for axis in range(3):
            if axis in axes:
                reach = math.floor(radius / spacing[axis])
                low = max(min(start[axis], end[axis]) - reach, 0)
                high = min(max(start[axis], end[axis]) + reach + 1, self.grid.shape[axis])
                key.append(slice(low, high))
                shape = [1, 1, 1]
                shape[axis] = high - low
                coords.append(((np.arange(low, high) - start[axis]) * spacing[axis]).reshape(shape))
            else:
                key.append(slice(start[axis], start[axis] + 1))
                coords.append(np.zeros((1, 1, 1)))
        direction = np.array([(end[a] - start[a]) * spacing[a] if a in axes else 0.0 for a in range(3)])
        length2 = float(direction @ direction)
        if length2 > 0:
            along = sum(coords[a] * direction[a] for a in range(3)) / length2
            t = np.clip(along, 0.0, 1.0)
            distance2 = sum((coords[a] - t * direction[a]) ** 2 for a in range(3))
        else:
            distance2 = sum(c ** 2 for c in coords)
        mask = np.broadcast_to(distance2 <= radius * radius + 1e-9,
                               tuple(s.stop - s.start for s in key))
        return (key[0], key[1], key[2]), mask

    def _paint(self, box: Box, mask: np.ndarray, label: int, limits: Limits) -> Box | None:
        """Write `label` where `mask` (shaped like `box`) and `limits` allow; remember what changed."""
        auto = self._stroke is None
        if auto:
            self.begin_stroke("edit")
        try:
            region = self.labels[box]
            allowed = mask & (region != label)
            if limits.only is not None:
                allowed &= np.isin(region, np.fromiter(limits.only, dtype=np.int64))
            if limits.intensity is not None:
                values = limits.intensity[box]
                allowed &= (values >= limits.low) & (values <= limits.high)
            hits = np.nonzero(allowed)
            if hits[0].size == 0:
                return None
            flat = np.ravel_multi_index(tuple(h + s.start for h, s in zip(hits, box)), self.grid.shape)
            self._pending_indices.append(flat.astype(self._index_dtype))
            self._pending_old.append(region[hits])
            region[hits] = label
            return tuple(slice(int(h.min()) + s.start, int(h.max()) + s.start + 1)  # type: ignore[return-value]
                         for h, s in zip(hits, box))
        finally:
            if auto:
                self.end_stroke()

    def _box_from_plane(self, axis: int, index: int, box_2d: tuple[slice, slice]) -> Box:
        parts = iter(box_2d)
        key = [slice(index, index + 1) if a == axis else next(parts) for a in range(3)]
        return key[0], key[1], key[2]

    def _collect(self) -> Delta | None:
        """The net change of the operations since the last collection (first old, current new)."""
        if not self._pending_indices:
            return None
        indices = np.concatenate(self._pending_indices)
        old = np.concatenate(self._pending_old)
        self._pending_indices, self._pending_old = [], []
        return self._net(indices, old, self._stroke or "")

    def _merge(self, parts: list[Delta], name: str) -> Delta | None:
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0] if parts[0].size else None
        return self._net(np.concatenate([p.indices for p in parts]), np.concatenate([p.old for p in parts]), name)

    def _net(self, indices: np.ndarray, old: np.ndarray, name: str) -> Delta | None:
        unique, first = np.unique(indices, return_index=True)
        old_values = old[first]
        new_values = self.labels.reshape(-1)[unique]
        keep = old_values != new_values
        if not keep.any():
            return Delta(unique[:0], old_values[:0], new_values[:0], name)
        return Delta(unique[keep].astype(self._index_dtype), old_values[keep].copy(), new_values[keep], name)

    def _push_undo(self, delta: Delta) -> None:
        self._undo.append(delta)
        self._undo_bytes += delta.nbytes
        while self._undo and (len(self._undo) > self.max_undo or self._undo_bytes > self.max_undo_bytes):
            dropped = self._undo.popleft()
            self._undo_bytes -= dropped.nbytes


def _signed_distance(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Signed distance in mm of a 2D mask to its boundary: negative inside, positive outside.

    The boundary is taken half a voxel beyond the outermost voxel centres (not on them), so a
    shape interpolated a tenth of the way from a small disc to a large one is already larger.
    """
    from scipy import ndimage

    half = 0.5 * min(spacing)
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing)
    return np.where(mask, half - inside, outside - half)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
