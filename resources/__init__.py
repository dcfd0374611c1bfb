"""BrainSeg's icons and style sheet, installed as the package `brainseg_gui.resources` (pyproject.toml)."""
