"""The application layer: what the viewer does, without Qt, pyqtgraph or VTK.

The open study as the views show it (display_volume), the long work the viewer runs in its workers
(tasks: segment; prepare_tasks; dicom_tasks; pacs_tasks), exports, the corrected-cases list and the
status-bar readout. The ui layer draws and wires these; the command line uses them too (brainseg
export). An import-linter contract keeps Qt out (pyproject.toml).
"""
