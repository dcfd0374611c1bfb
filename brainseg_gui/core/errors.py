"""Specific exceptions raised at the boundaries; each message names the file and the values found.

The CLI turns any `BrainSegError` into one line on stderr and exit status 2; the GUI into a dialog.
"""

from __future__ import annotations


class BrainSegError(Exception):
    """Base of every error a user can cause (bad input, bad model file, cancelled work)."""


class StudyLoadError(BrainSegError):
    """A path does not hold a readable study (missing, corrupt, wrong dimensionality, ...)."""


class GridMismatchError(StudyLoadError):
    """Sequences or masks that must share a voxel grid do not."""


class LabelError(BrainSegError):
    """A label map holds values outside its convention, or the convention is unknown."""


class ModelError(BrainSegError):
    """A model directory, card or weights file is missing, corrupt or incompatible."""


class Cancelled(BrainSegError):
    """Long work stopped because the user asked it to."""
