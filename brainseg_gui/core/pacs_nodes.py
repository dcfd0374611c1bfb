"""The PACS nodes a user keeps: DICOMweb (base URL, auth, TLS) or DIMSE (AE title, host, port).

    CONFIG/pacs_nodes.json   {"nodes": [{"name": ..., "kind": "dicomweb" | "dimse", ...}],
                              "cache_limit_gb": 20}; written atomically; never holds a secret
CONFIG = $BRAINSEG_CONFIG_DIR, else $XDG_CONFIG_HOME/brainseg, else ~/.config/brainseg. Passwords
and tokens are kept apart (core/pacs_secrets.py). Shared by `brainseg pacs nodes` and the settings
dialog, so both see the same list.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.pacs_secrets import delete_secret, load_secret, store_secret
from brainseg_gui.core.read_guard import read_small_text

NODES_FILE = "pacs_nodes.json"
KINDS = ("dicomweb", "dimse")
AUTHS = ("none", "basic", "bearer")
#: The default size of the retrieve cache (core/pacs_cache.py), in GB.
DEFAULT_CACHE_LIMIT_GB = 20.0
MAX_NODES_BYTES = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: DICOM AE titles: 1-16 characters of the default repertoire, no backslash or control characters.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


class PacsError(BrainSegError):
    """A PACS node is misconfigured or cannot be reached; the message says what failed and where."""


def config_dir() -> Path:
    """The user's BrainSeg settings folder (not created here)."""
    explicit = os.environ.get("BRAINSEG_CONFIG_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".config") / "brainseg"


@dataclass(frozen=True)
class PacsNode:
    """One PACS node. DICOMweb uses url/auth/username/ca_bundle; DIMSE ae_title/host/port/our_ae_title."""

    name: str
    kind: str
    url: str = ""
    auth: str = "none"
    username: str = ""
    ca_bundle: str = ""  # a PEM file with the CA that signed the server's certificate (a site's own CA)
    ae_title: str = ""
    host: str = ""
    port: int = 0
    our_ae_title: str = "BRAINSEG"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise PacsError(f"node name {self.name!r}: use 1-64 letters, digits, '.', '_' or '-'")
        if self.kind not in KINDS:
            raise PacsError(f"node {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "dicomweb":
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise PacsError(f"node {self.name}: {self.url!r} is not a DICOMweb base URL "
                                "(http:// or https://host[:port]/path)")
            if parts.username or parts.password:  # it would be shown in lists and messages
                raise PacsError(f"node {self.name}: give the user and password apart (--user, and the password "
                                "when asked), not inside the URL")
            if self.auth not in AUTHS:
                raise PacsError(f"node {self.name}: auth {self.auth!r} is not one of {', '.join(AUTHS)}")
            if self.auth == "basic" and not self.username:
                raise PacsError(f"node {self.name}: basic authentication needs a user name")
            if self.ca_bundle and not Path(self.ca_bundle).is_file():
                raise PacsError(f"node {self.name}: the CA file {self.ca_bundle} does not exist")
        else:
            for label, title in (("AE title", self.ae_title), ("our AE title", self.our_ae_title)):
                if not _AE_TITLE.match(title) or not title.strip():
                    raise PacsError(f"node {self.name}: {label} {title!r} must be 1-16 printable characters "
                                    "without a backslash")
            if not self.host:
                raise PacsError(f"node {self.name}: a DIMSE node needs a host")
            if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
                raise PacsError(f"node {self.name}: port {self.port!r} must be 1..65535")

    @property
    def needs_secret(self) -> bool:
        return self.kind == "dicomweb" and self.auth != "none"

    def describe(self) -> str:
        """One line, without any secret."""
        if self.kind == "dicomweb":
            auth = "" if self.auth == "none" else f", {self.auth} auth" + (f" as {self.username}" if self.username else "")
            tls = f", CA {self.ca_bundle}" if self.ca_bundle else ""
            return f"{self.name}: DICOMweb {self.url}{auth}{tls}"
        return f"{self.name}: DIMSE {self.ae_title}@{self.host}:{self.port} (we are {self.our_ae_title})"

    def to_dict(self) -> dict[str, Any]:
        fields = ("url", "auth", "username", "ca_bundle") if self.kind == "dicomweb" else (
            "ae_title", "host", "port", "our_ae_title")
        return {"name": self.name, "kind": self.kind, **{key: getattr(self, key) for key in fields}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PacsNode:
        if not isinstance(data, Mapping):
            raise PacsError(f"a node must be an object, got {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{key: value for key, value in data.items() if key in known})
        except TypeError as error:
            raise PacsError(f"node {data.get('name')!r}: {error}") from None


class NodeStore:
    """The node list in CONFIG/pacs_nodes.json, with each node's secret kept apart."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else config_dir()

    @property
    def path(self) -> Path:
        return self.root / NODES_FILE

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"nodes": []}
        try:
            data = json.loads(read_small_text(self.path, "PACS node list", MAX_NODES_BYTES))
        except (BrainSegError, ValueError) as error:
            raise PacsError(f"{self.path} is not a BrainSeg PACS node list: {error}") from None
        if not isinstance(data, dict) or not isinstance(data.get("nodes", []), list):
            raise PacsError(f"{self.path} is not a BrainSeg PACS node list")
        return data

    def _write(self, data: Mapping[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, json.dumps(data, indent=2) + "\n")

    def nodes(self) -> list[PacsNode]:
        return [PacsNode.from_dict(entry) for entry in self._read().get("nodes", [])]

    def get(self, name: str) -> PacsNode:
        for node in self.nodes():
            if node.name == name:
                return node
        known = ", ".join(node.name for node in self.nodes()) or "none yet (brainseg pacs nodes add ...)"
        raise PacsError(f"no PACS node called {name!r}; known: {known}")

    def add(self, node: PacsNode, *, secret: str | None = None, replace: bool = False) -> None:
        """Add `node` (or replace the one of that name with `replace`); its secret goes to the secret store."""
        data = self._read()
        others = [entry for entry in data.get("nodes", []) if entry.get("name") != node.name]
        if len(others) != len(data.get("nodes", [])) and not replace:
            raise PacsError(f"a node called {node.name!r} exists already; remove it first or replace it")
        if node.needs_secret and secret is None and load_secret(self.root, node.name) is None:
            raise PacsError(f"node {node.name} uses {node.auth} authentication: give its "
                            + ("password" if node.auth == "basic" else "token"))
        if secret is not None:
            store_secret(self.root, node.name, secret)
        elif not node.needs_secret:
            delete_secret(self.root, node.name)  # a node replaced by one without authentication
        self._write({**data, "nodes": [*others, node.to_dict()]})

    def remove(self, name: str) -> None:
        self.get(name)
        data = self._read()
        self._write({**data, "nodes": [entry for entry in data["nodes"] if entry.get("name") != name]})
        delete_secret(self.root, name)

    def secret(self, node: PacsNode) -> str | None:
        return load_secret(self.root, node.name) if node.needs_secret else None

    @property
    def cache_limit_gb(self) -> float:
        value = self._read().get("cache_limit_gb", DEFAULT_CACHE_LIMIT_GB)
        return float(value) if isinstance(value, (int, float)) and value > 0 else DEFAULT_CACHE_LIMIT_GB
