"""present_values: the distinct values of a label map, fast for the small unsigned maps studies hold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from brainseg_gui.core.errors import LabelError
from brainseg_gui.core.labels import LabelConvention, check_values, guess_convention, present_values


@settings(max_examples=60, deadline=None)
@given(arrays(st.sampled_from([np.uint8, np.uint16, np.int16, np.bool_]), st.tuples(
    st.integers(0, 6), st.integers(1, 5), st.integers(1, 4))))
def test_present_values_equals_unique(labels: np.ndarray) -> None:
    assert present_values(labels) == {int(v) for v in np.unique(labels)}
    assert present_values(labels[::-1, ::2]) == {int(v) for v in np.unique(labels[::-1, ::2])}


def test_present_values_of_typical_and_unusual_maps() -> None:
    brats = np.zeros((20, 20, 10), dtype=np.uint8)
    brats[3, 4, 5], brats[6, 7, 8] = 4, 2
    assert present_values(brats) == {0, 2, 4}
    assert present_values(np.array([0, 200, 7], dtype=np.uint8)) == {0, 7, 200}  # above the fast range
    assert present_values(np.zeros((0, 3), dtype=np.uint8)) == set()
    assert present_values(np.array([[-1, 3]], dtype=np.int16)) == {-1, 3}


def test_checks_still_name_the_unknown_values() -> None:
    labels = np.array([[0, 1, 2, 4, 9]], dtype=np.uint8)
    with pytest.raises(LabelError, match=r"\[9\]"):
        check_values(labels, LabelConvention.BRATS)
    assert guess_convention(np.array([0, 1, 2, 3], dtype=np.uint8)) is LabelConvention.BRATS23
