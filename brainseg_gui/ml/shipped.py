"""Where the shipped generator lives once installed, and which model a command uses by default.

The repository's top-level `model/` folder is installed as the package `brainseg_gui.shipped_model`
(pyproject.toml), so `importlib.resources` finds it after a plain, non-editable `pip install .`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The package that holds the shipped model's weights.safetensors, card.json and README.md.
SHIPPED_PACKAGE = "brainseg_gui.shipped_model"


def shipped_model_dir() -> Path:
    """The folder of the shipped model (it may hold no weights yet in a development checkout)."""
    return Path(str(resources.files(SHIPPED_PACKAGE)))


def default_model_dir() -> Path:
    """The model a prediction uses when none is named: the user's active one (`brainseg models`),
    which is the shipped model until a fine-tuned version is made active."""
    from brainseg_gui.ml.model_registry import active_model_dir  # the registry imports this module

    return active_model_dir()
