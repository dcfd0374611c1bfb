"""Where a PACS node's password or token is kept: the system keyring, else a file only the user can read.

The `keyring` package reaches the desktop's secret store (GNOME Keyring / KWallet through Secret
Service, macOS Keychain, Windows Credential Locker). Where none is usable (a headless server, a
minimal desktop) secrets go to CONFIG/pacs_secrets.json, mode 0600 from its first byte, written
atomically. A secret is never logged, printed or put in the node list; `describe_store` says where
they are without showing one. `BRAINSEG_SECRETS=file` forces the file (tests, or a user who wants it).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.read_guard import read_small_text

log = logging.getLogger(__name__)

#: The keyring service name the secrets are filed under (user name = the node's name).
SERVICE = "brainseg-pacs"
SECRETS_FILE = "pacs_secrets.json"
MAX_SECRETS_BYTES = 1 << 20


class SecretStoreError(BrainSegError):
    """The secret cannot be kept or read (a locked keyring, an unreadable secrets file)."""


def _keyring():  # type: ignore[no-untyped-def]
    """The usable system keyring, or None (then the 0600 file is used)."""
    if os.environ.get("BRAINSEG_SECRETS", "").strip().lower() == "file":
        return None
    try:
        import keyring
        from keyring.backends import fail, null
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, (fail.Keyring, null.Keyring)) or getattr(backend, "priority", 0) < 1:
        return None
    return keyring


def describe_store(config_dir: Path) -> str:
    """Where secrets are kept, for a settings dialog or `brainseg pacs nodes`."""
    ring = _keyring()
    if ring is not None:
        return f"system keyring ({type(ring.get_keyring()).__name__})"
    return f"{Path(config_dir) / SECRETS_FILE} (readable by you only)"


def store_secret(config_dir: Path, name: str, secret: str) -> None:
    """Keep `secret` for node `name`, replacing an earlier one."""
    ring = _keyring()
    if ring is not None:
        try:
            ring.set_password(SERVICE, name, secret)
            return
        except Exception as error:  # noqa: BLE001 - every backend raises its own kinds
            raise SecretStoreError(f"the system keyring refused the secret of {name!r}: {type(error).__name__}") from None
    secrets = _read_file(config_dir)
    secrets[name] = secret
    _write_file(config_dir, secrets)


def load_secret(config_dir: Path, name: str) -> str | None:
    """The secret kept for node `name`, or None."""
    ring = _keyring()
    if ring is not None:
        try:
            found = ring.get_password(SERVICE, name)
        except Exception as error:  # noqa: BLE001
            raise SecretStoreError(f"the system keyring cannot give the secret of {name!r}: "
                                   f"{type(error).__name__}") from None
        if found is not None:
            return str(found)
    value = _read_file(config_dir).get(name)
    return value if isinstance(value, str) else None


def delete_secret(config_dir: Path, name: str) -> None:
    """Forget the secret of node `name` wherever it is kept (nothing when there is none)."""
    ring = _keyring()
    if ring is not None:
        try:
            ring.delete_password(SERVICE, name)
        except Exception:  # noqa: BLE001 - none kept, or the backend cannot delete: the file still is cleaned
            log.debug("no keyring secret to delete for %s", name)
    secrets = _read_file(config_dir)
    if name in secrets:
        del secrets[name]
        _write_file(config_dir, secrets)


def _path(config_dir: Path) -> Path:
    return Path(config_dir) / SECRETS_FILE


def _read_file(config_dir: Path) -> dict[str, str]:
    path = _path(config_dir)
    if not path.exists():
        return {}
    if path.stat().st_mode & 0o077:
        raise SecretStoreError(f"{path} can be read by other users; BrainSeg will not use it (chmod 600 {path})")
    try:
        data = json.loads(read_small_text(path, "secrets file", MAX_SECRETS_BYTES))
    except (BrainSegError, ValueError) as error:
        raise SecretStoreError(f"{path} is not a BrainSeg secrets file: {error}") from None
    if not isinstance(data, dict):
        raise SecretStoreError(f"{path} is not a BrainSeg secrets file")
    return {str(k): str(v) for k, v in data.items()}


def _write_file(config_dir: Path, secrets: dict[str, str]) -> None:
    folder = Path(config_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(_path(folder), json.dumps(secrets, indent=2) + "\n", private=True)
