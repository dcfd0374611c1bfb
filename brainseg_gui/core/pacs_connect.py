"""A connection to a PACS node by its protocol (its own module: the two protocols import the interface)."""

from __future__ import annotations

from brainseg_gui.core.pacs_client import PacsConnection
from brainseg_gui.core.pacs_nodes import PacsNode


def connect(node: PacsNode, secret: str | None) -> PacsConnection:
    """A connection to `node` (nothing is sent before its first call)."""
    if node.kind == "dicomweb":
        from brainseg_gui.core.pacs_dicomweb import DicomWebConnection

        return DicomWebConnection(node, secret)
    from brainseg_gui.core.pacs_dimse import DimseConnection

    return DimseConnection(node)
