"""The edit session on tiny hand-made grids: each tool changes exactly the voxels it should, strokes
undo and redo as one step, history stays bounded, and regions stay nested whatever is painted."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brainseg_gui.core.edit_session import EditError, EditSession, Limits
from brainseg_gui.core.errors import GridMismatchError, LabelError
from brainseg_gui.core.labels import LabelConvention, to_regions
from brainseg_gui.core.review import compare, difference_slices
from brainseg_gui.core.study import Grid


def grid(shape=(20, 16, 10), spacing=(1.0, 1.0, 1.0)) -> Grid:
    return Grid(shape, np.diag([*spacing, 1.0]))


def test_disc_paints_a_round_brush_in_one_slice_only() -> None:
    session = EditSession(np.zeros((20, 16, 10), np.uint8), grid())
    box = session.paint_disc(2, (10, 8, 4), 2.0, 4)
    painted = np.argwhere(session.labels == 4)
    assert set(painted[:, 2]) == {4}
    # radius 2 mm on 1 mm voxels: the 13 voxels within distance 2 of the centre
    assert len(painted) == 13
    assert session.labels[10, 8, 4] == 4 and session.labels[12, 8, 4] == 4 and session.labels[12, 9, 4] == 0
    assert box == (slice(8, 13), slice(6, 11), slice(4, 5))
    assert session.undo_depth == 1  # an operation outside a stroke is a stroke of its own


def test_disc_is_round_in_mm_on_anisotropic_voxels() -> None:
    session = EditSession(np.zeros((20, 20, 10), np.uint8), grid((20, 20, 10), (1.0, 2.0, 3.0)))
    session.paint_disc(2, (10, 10, 5), 4.0, 2)
    rows, cols, _ = np.nonzero(session.labels)
    assert rows.min() == 6 and rows.max() == 14  # 4 voxels of 1 mm each way
    assert cols.min() == 8 and cols.max() == 12  # 2 voxels of 2 mm each way


def test_drag_paints_the_swept_path_without_gaps() -> None:
    session = EditSession(np.zeros((30, 10, 3), np.uint8), grid((30, 10, 3)))
    session.paint_disc(2, (2, 5, 1), 1.0, 1, to=(27, 5, 1))
    assert session.labels[1:29, 5, 1].all()  # the radius reaches one voxel past both ends
    assert session.labels[:, 5, 1].sum() == 28
    assert not session.labels[:, :, [0, 2]].any()


def test_sphere_is_3d_and_respects_the_grid_edges() -> None:
    session = EditSession(np.zeros((20, 16, 10), np.uint8), grid())
    session.paint_sphere((0, 8, 5), 3.0, 2)
    hits = np.argwhere(session.labels == 2)
    assert hits[:, 0].min() == 0 and hits[:, 0].max() == 3
    assert set(hits[:, 2]) == set(range(2, 9))
    distances = np.sqrt(((hits - [0, 8, 5]) ** 2).sum(axis=1))
    assert distances.max() <= 3.0
    # all voxels of the half ball inside the grid
    assert len(hits) == sum(1 for i in range(4) for j in range(5, 12) for k in range(2, 9)
                            if i * i + (j - 8) ** 2 + (k - 5) ** 2 <= 9)


def test_erase_everything_or_only_one_class() -> None:
    labels = np.zeros((10, 10, 3), np.uint8)
    labels[2:8, 2:8, 1] = 2
    labels[4:6, 4:6, 1] = 4
    session = EditSession(labels, grid((10, 10, 3)))
    session.erase_disc(2, (5, 5, 1), 1.5, only=4)
    assert not (session.labels == 4).any()
    assert (session.labels == 2).sum() == 32  # ED untouched, ET gone to background
    assert session.labels[4, 4, 1] == 0
    session.erase_disc(2, (3, 3, 1), 0.5)
    assert session.labels[3, 3, 1] == 0 and session.labels[3, 4, 1] == 2


def test_threshold_limited_paint_touches_only_voxels_in_range() -> None:
    shape = (12, 12, 2)
    intensity = np.zeros(shape, np.float32)
    intensity[:6] = 100.0
    intensity[6:] = 300.0
    session = EditSession(np.zeros(shape, np.uint8), grid(shape))
    session.paint_disc(2, (6, 6, 0), 3.0, 1, limits=Limits(intensity=intensity, low=250, high=400))
    painted = session.labels[..., 0] == 1
    assert painted.any()
    assert not painted[:6].any()
    assert (intensity[..., 0][painted] == 300).all()


def test_paint_only_over_given_labels() -> None:
    labels = np.zeros((8, 8, 1), np.uint8)
    labels[:4] = 2
    session = EditSession(labels, grid((8, 8, 1)))
    session.paint_disc(2, (4, 4, 0), 3.0, 1, limits=Limits(only=frozenset({2})))
    assert ((session.labels == 1) <= (labels == 2)).all()
    assert (session.labels == 1).any()


def test_fill_takes_the_connected_region_in_the_slice_only() -> None:
    labels = np.zeros((10, 10, 3), np.uint8)
    labels[2:8, 2:8, :] = 2
    labels[4:6, 4:6, :] = 0  # a hole inside the edema ring in every slice
    session = EditSession(labels, grid((10, 10, 3)))
    box = session.fill(2, (4, 4, 1), 1)
    assert (session.labels[4:6, 4:6, 1] == 1).all()
    assert (session.labels[..., 1] == 1).sum() == 4  # not the outer background: not connected
    assert (session.labels[4:6, 4:6, [0, 2]] == 0).all()
    assert box == (slice(4, 6), slice(4, 6), slice(1, 2))
    # filling the outer background reaches all of it (4-connected) but not the hole
    session.fill(2, (0, 0, 1), 4)
    assert (session.labels[..., 1] == 4).sum() == 100 - 36
    assert session.fill(2, (0, 0, 1), 4) is None  # already that label


def test_fill_respects_an_intensity_range() -> None:
    shape = (10, 10, 1)
    intensity = np.zeros(shape)
    intensity[:, :5] = 50
    session = EditSession(np.zeros(shape, np.uint8), grid(shape))
    session.fill(2, (3, 3, 0), 2, limits=Limits(intensity=intensity, low=40, high=60))
    assert (session.labels[:, :5] == 2).all() and not session.labels[:, 5:].any()
    assert session.fill(2, (3, 8, 0), 2, limits=Limits(intensity=intensity, low=40, high=60)) is None


def test_interpolation_morphs_between_two_slices() -> None:
    shape = (40, 40, 11)
    labels = np.zeros(shape, np.uint8)
    yy, xx = np.mgrid[:40, :40]
    labels[..., 0][(yy - 20) ** 2 + (xx - 20) ** 2 <= 4 ** 2] = 4
    labels[..., 10][(yy - 20) ** 2 + (xx - 20) ** 2 <= 12 ** 2] = 4
    session = EditSession(labels, grid(shape))
    session.interpolate(2, 0, 10, 4)
    areas = [(session.labels[..., k] == 4).sum() for k in range(11)]
    assert all(a < b for a, b in itertools.pairwise(areas))  # grows steadily from the small to the big disc
    middle = session.labels[..., 5] == 4
    radius = np.sqrt(middle.sum() / np.pi)
    assert radius == pytest.approx(8.0, abs=0.6)
    rows, cols = np.nonzero(middle)
    assert rows.mean() == pytest.approx(20, abs=0.1) and cols.mean() == pytest.approx(20, abs=0.1)
    assert session.undo_depth == 1
    session.undo()
    np.testing.assert_array_equal(session.labels, labels)


def test_interpolation_refuses_what_it_cannot_do() -> None:
    labels = np.zeros((10, 10, 6), np.uint8)
    labels[2:4, 2:4, 0] = 1
    session = EditSession(labels, grid((10, 10, 6)))
    with pytest.raises(EditError, match="slice 5"):
        session.interpolate(2, 0, 5, 1)
    with pytest.raises(EditError, match="no slice between"):
        session.interpolate(2, 0, 1, 1)
    with pytest.raises(EditError, match="background"):
        session.interpolate(2, 0, 5, 0)


def test_shapes_that_do_not_overlap_are_not_interpolated_and_nothing_changes() -> None:
    labels = np.zeros((30, 30, 6), np.uint8)
    labels[2:6, 2:6, 0] = 1  # top left
    labels[22:28, 22:28, 5] = 1  # bottom right: the blend would vanish half-way
    session = EditSession(labels.copy(), grid((30, 30, 6)))
    with pytest.raises(EditError, match="do not overlap"), session.stroke("interpolate"):
        session.interpolate(2, 0, 5, 1)
    np.testing.assert_array_equal(session.labels, labels)
    assert session.undo_depth == 0


def test_a_stroke_undoes_and_redoes_as_one_step() -> None:
    session = EditSession(np.zeros((20, 16, 10), np.uint8), grid())
    with session.stroke("brush"):
        session.paint_disc(2, (5, 5, 3), 2, 1)
        session.paint_disc(2, (5, 5, 3), 2, 2, to=(12, 5, 3))
        session.paint_disc(2, (12, 5, 3), 2, 2)
    after = session.labels.copy()
    assert session.undo_depth == 1
    box = session.undo()
    assert not session.labels.any()
    assert box == (slice(3, 15), slice(3, 8), slice(3, 4))
    assert session.can_redo
    session.redo()
    np.testing.assert_array_equal(session.labels, after)
    # the stored delta keeps each voxel once, with its value before the stroke
    delta = session._undo[-1]
    assert delta.size == int((after > 0).sum())
    assert set(np.unique(delta.old)) == {0}


def test_a_new_stroke_clears_redo_and_history_is_bounded() -> None:
    session = EditSession(np.zeros((20, 16, 10), np.uint8), grid(), max_undo=5)
    for k in range(8):
        session.paint_disc(2, (10, 8, k), 3, 4)
    assert session.undo_depth == 5
    for _ in range(5):
        session.undo()
    assert session.undo() is None
    assert (session.labels[..., :3] == 4).any() and not session.labels[..., 3:].any()
    assert session.redo_depth == 5
    session.paint_disc(2, (10, 8, 9), 3, 1)
    assert session.redo_depth == 0 and not session.can_redo
    limited = EditSession(np.zeros((20, 16, 10), np.uint8), grid(), max_undo_bytes=300)
    for k in range(6):
        limited.paint_disc(2, (10, 8, k), 3, 4)  # 29 voxels * 6 bytes each
    assert limited.undo_bytes <= 300 and limited.undo_depth == 1


def test_parts_of_a_long_stroke_merge_into_one_undo_step() -> None:
    session = EditSession(np.zeros((20, 16, 10), np.uint8), grid())
    session.begin_stroke("brush")
    session.paint_disc(2, (5, 5, 3), 2, 4)
    first = session.take_part()
    session.paint_disc(2, (5, 5, 3), 2, 2)  # paints over the first part
    session.paint_disc(2, (9, 5, 3), 2, 2)
    second = session.take_part()
    assert first.size == 13 and set(first.new) == {4}
    assert set(second.old[np.isin(second.indices, first.indices)]) == {4}
    delta = session.end_stroke()
    assert session.undo_depth == 1
    assert set(delta.old) == {0} and set(delta.new) == {2}
    session.undo()
    assert not session.labels.any()


def test_bad_inputs_are_refused_with_their_values() -> None:
    with pytest.raises(GridMismatchError, match=r"\(3, 3, 3\)"):
        EditSession(np.zeros((3, 3, 3), np.uint8), grid())
    with pytest.raises(LabelError, match="3"):
        EditSession(np.full((20, 16, 10), 3, np.uint8), grid())
    session = EditSession(np.zeros((20, 16, 10), np.uint8), grid())
    with pytest.raises(LabelError, match="label 3"):
        session.paint_disc(2, (1, 1, 1), 1, 3)
    with pytest.raises(EditError, match="outside"):
        session.paint_disc(2, (20, 1, 1), 1, 1)


def test_comparison_counts_changes_per_class_and_region() -> None:
    ai = np.zeros((10, 10, 4), np.uint8)
    ai[2:6, 2:6, 1] = 2  # 16 ED
    ai[3:5, 3:5, 1] = 4  # 4 of them ET
    session = EditSession(ai, grid((10, 10, 4)))
    session.paint_disc(2, (3, 3, 1), 0.1, 1)  # one ET voxel -> NCR: ET -1, NCR +1, TC unchanged
    session.paint_disc(2, (8, 8, 1), 0.1, 2)  # one new ED voxel: WT +1
    result = session.comparison()
    assert result.changed == 2
    assert result.tissues["ET"].removed == 1 and result.tissues["NCR"].added == 1
    assert result.tissues["ED"].added == 1
    assert result.regions["TC"].total == 0 and result.regions["WT"].added == 1
    assert result.regions["ET"].removed == 1
    assert result.dice["ET"] == pytest.approx(2 * 3 / (4 + 3))
    assert result.dice["WT"] == pytest.approx(2 * 16 / 33)
    assert result.dice["TC"] == 1.0
    truth = compare(ai, session.labels, LabelConvention.BRATS)
    assert truth == result
    slices = difference_slices(ai, session.labels, 2)
    assert slices == [(1, 2)]
    assert difference_slices(ai, session.labels, 0) == [(3, 1), (8, 1)]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["disc", "sphere", "erase", "fill"]), st.integers(0, 11),
                          st.integers(0, 9), st.integers(0, 5), st.sampled_from([0, 1, 2, 4]),
                          st.floats(0, 3)), min_size=1, max_size=12))
def test_any_edits_keep_regions_nested_and_undo_restores_the_start(operations) -> None:
    start = np.zeros((12, 10, 6), np.uint8)
    start[3:8, 3:8, 2:4] = 2
    start[4:6, 4:6, 2:4] = 4
    session = EditSession(start, grid((12, 10, 6)))
    states = [session.labels.copy()]
    for kind, i, j, k, label, radius in operations:
        if kind == "disc":
            session.paint_disc(2, (i, j, k), radius, label)
        elif kind == "sphere":
            session.paint_sphere((i, j, k), radius, label)
        elif kind == "erase":
            session.erase_disc(1, (i, j, k), radius, only=label or None)
        else:
            session.fill(0, (i, j, k), label)
        if not np.array_equal(states[-1], session.labels):
            states.append(session.labels.copy())
        wt, tc, et = to_regions(session.labels, LabelConvention.BRATS)
        assert (et <= tc).all() and (tc <= wt).all()
    assert session.undo_depth == len(states) - 1
    for expected in reversed(states[:-1]):
        session.undo()
        np.testing.assert_array_equal(session.labels, expected)
    while session.can_redo:
        session.redo()
    np.testing.assert_array_equal(session.labels, states[-1])
