"""Linux desktop integration: a menu entry, an icon and MIME types, so a double-clicked study opens in BrainSeg.

Everything goes to the current user's XDG data folder ($XDG_DATA_HOME, by default ~/.local/share),
following the freedesktop.org specifications (Desktop Entry 1.5, Shared MIME-info, Icon Theme):

    applications/brainseg.desktop                 Exec="<brainseg>" %f: the double-clicked file
    mime/packages/brainseg.xml                    .nii, .nii.gz, .nrrd, .mha
    icons/hicolor/scalable/apps/brainseg.svg      (and 256x256/apps/brainseg.png)

The desktop's caches are refreshed with update-desktop-database, update-mime-database and
gtk-update-icon-cache when those tools exist (they are optional: desktops rescan by themselves).
Uninstalling removes exactly the files installing writes. No Qt is needed; nothing here runs on
import. Windows and macOS get the same file types from the bundle instead (installer/README.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from brainseg_gui import RESEARCH_USE_NOTE, resources_dir
from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.errors import BrainSegError

log = logging.getLogger(__name__)

APP_ID = "brainseg"
DESKTOP_FILE = f"{APP_ID}.desktop"
MIME_PACKAGE = f"{APP_ID}.xml"
#: The app's icons in the source tree (and, at the same place relative to the package, in the bundle).
ICONS = resources_dir() / "icons"


class DesktopIntegrationError(BrainSegError):
    """The desktop files cannot be installed here (not Linux, or the data folder is not writable)."""


@dataclass(frozen=True)
class StudyType:
    """One MIME type BrainSeg opens: its name, what a file manager calls it, its file-name globs."""

    mime: str
    comment: str
    globs: tuple[str, ...]
    sub_class_of: str | None = None


STUDY_TYPES: tuple[StudyType, ...] = (
    StudyType("image/x-nifti", "NIfTI image volume", ("*.nii",)),
    # the longer glob wins over *.gz, so a .nii.gz is a volume, not an archive, and still a gzip file
    StudyType("image/x-nifti-gz", "NIfTI image volume (gzip-compressed)", ("*.nii.gz",), "application/gzip"),
    StudyType("image/x-nrrd", "NRRD image volume", ("*.nrrd",)),
    StudyType("image/x-metaimage", "MetaImage volume", ("*.mha",)),
)

#: Types the system already defines (shared-mime-info) that BrainSeg also opens: a DICOM file (also a
#: DICOMDIR: 'DICM' at byte 128) opens the study of its folder, with its series table.
SYSTEM_TYPES: tuple[str, ...] = ("application/dicom",)

#: Icon files shipped in ICONS and where each goes under the user's hicolor theme.
ICON_FILES: Mapping[str, str] = {
    f"{APP_ID}.svg": f"icons/hicolor/scalable/apps/{APP_ID}.svg",
    f"{APP_ID}.png": f"icons/hicolor/256x256/apps/{APP_ID}.png",
}


def data_home(environ: Mapping[str, str] | None = None) -> Path:
    """$XDG_DATA_HOME when it is set to an absolute path (the spec ignores relative ones), else ~/.local/share."""
    env = os.environ if environ is None else environ
    value = env.get("XDG_DATA_HOME", "")
    if value and Path(value).is_absolute():
        return Path(value)
    return Path(env.get("HOME") or Path.home()) / ".local" / "share"


def launcher_command() -> list[str]:
    """How this installation of BrainSeg is started: the bundle's executable, the venv's script, or python -m."""
    if getattr(sys, "frozen", False):  # the PyInstaller bundle
        return [str(Path(sys.executable).absolute())]
    script = Path(sys.executable).absolute().with_name(APP_ID)  # the console script beside this python
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which(APP_ID)
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "brainseg_gui"]


def desktop_entry(command: Sequence[str], *, icon: str = APP_ID) -> str:
    """The .desktop file text: `command` plus %f, so a double-clicked study is passed as the one argument."""
    exec_line = " ".join(_exec_argument(part) for part in command) + " %f"
    mime_types = "".join(f"{mime};" for mime in (*(t.mime for t in STUDY_TYPES), *SYSTEM_TYPES))
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.5",
        "Name=BrainSeg",
        "GenericName=Brain tumour segmentation",
        f"Comment=View and segment brain-tumour MRI. {_desktop_string(RESEARCH_USE_NOTE)}",
        f"TryExec={_desktop_string(command[0])}",
        f"Exec={exec_line}",
        f"Icon={_desktop_string(icon)}",
        "Terminal=false",
        "Categories=Science;MedicalSoftware;",
        f"MimeType={mime_types}",
        "Keywords=MRI;brain;tumour;tumor;segmentation;NIfTI;NRRD;DICOM;BraTS;",
        "StartupNotify=true",
        "",
    ])


def mime_package() -> str:
    """The shared-mime-info package XML declaring STUDY_TYPES."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<mime-info xmlns="http://www.freedesktop.org/standards/shared-mime-info">']
    for study_type in STUDY_TYPES:
        lines.append(f'  <mime-type type="{escape(study_type.mime)}">')
        lines.append(f"    <comment>{escape(study_type.comment)}</comment>")
        if study_type.sub_class_of:
            lines.append(f'    <sub-class-of type="{escape(study_type.sub_class_of)}"/>')
        lines.append('    <generic-icon name="image-x-generic"/>')
        lines.extend(f'    <glob pattern="{escape(glob)}" weight="60"/>' for glob in study_type.globs)
        lines.append("  </mime-type>")
    lines.append("</mime-info>")
    return "\n".join(lines) + "\n"


def installed_files(home: Path | None = None) -> list[Path]:
    """Every file `install` may write under `home` (the data folder), whether it exists or not."""
    home = data_home() if home is None else home
    return [home / "applications" / DESKTOP_FILE, home / "mime" / "packages" / MIME_PACKAGE,
            *(home / target for target in ICON_FILES.values())]


def install(home: Path | None = None, *, command: Sequence[str] | None = None, refresh: bool = True) -> list[Path]:
    """Write the desktop entry, the MIME types and the icons for the current user; returns the files written.

    `command` defaults to how this BrainSeg was started (launcher_command). Re-installing overwrites.
    """
    _require_linux()
    home = data_home() if home is None else home
    command = list(command) if command is not None else launcher_command()
    written: list[Path] = []
    try:
        for name, target in ICON_FILES.items():
            source = ICONS / name
            if source.is_file():
                written.append(_write(home / target, source.read_bytes()))
            else:
                log.warning("icon %s not found; the menu entry uses the theme's default icon", source)
        icon = APP_ID if written else "image-x-generic"
        written.append(_write(home / "mime" / "packages" / MIME_PACKAGE, mime_package().encode()))
        written.append(_write(home / "applications" / DESKTOP_FILE, desktop_entry(command, icon=icon).encode()))
    except OSError as error:
        raise DesktopIntegrationError(f"cannot write the desktop files under {home}: {error.strerror or error}"
                                      f" ({error.filename or home})") from error
    if refresh:
        refresh_caches(home)
    return written


def uninstall(home: Path | None = None, *, refresh: bool = True) -> list[Path]:
    """Remove exactly the files `install` writes (those that exist); returns the files removed."""
    _require_linux()
    home = data_home() if home is None else home
    removed = []
    for path in installed_files(home):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as error:
            raise DesktopIntegrationError(f"cannot remove {path}: {error.strerror or error}") from error
        removed.append(path)
    if refresh and removed:
        refresh_caches(home)
    return removed


def refresh_caches(home: Path) -> list[str]:
    """Run the cache tools that exist on this machine (none is required); returns the ones that ran."""
    tools = [
        ("update-desktop-database", ["-q", str(home / "applications")], home / "applications"),
        ("update-mime-database", [str(home / "mime")], home / "mime"),
        ("gtk-update-icon-cache", ["-q", "-f", "-t", str(home / "icons" / "hicolor")], home / "icons" / "hicolor"),
    ]
    ran = []
    for tool, arguments, folder in tools:
        executable = shutil.which(tool)
        if executable is None or not folder.is_dir():
            continue
        try:
            result = subprocess.run([executable, *arguments], capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            log.warning("%s did not run: %s", tool, error)
            continue
        if result.returncode != 0:
            log.warning("%s exited with %d: %s", tool, result.returncode, result.stderr.strip()[:300])
        ran.append(tool)
    return ran


def _require_linux() -> None:
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        raise DesktopIntegrationError(
            f"desktop integration is for Linux desktops (freedesktop.org); this is {sys.platform}: "
            "the Windows and macOS bundles register their file types themselves (see installer/README.md)"
        )


def _write(path: Path, data: bytes) -> Path:
    return write_atomic(path, data)


# Desktop Entry spec: an Exec argument with a reserved character is double-quoted, and inside the
# quotes " ` $ \ are backslash-escaped; the line is then a string value, whose own escape doubles
# every backslash again. A literal % is written %%.
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def _exec_argument(argument: str) -> str:
    argument = argument.replace("%", "%%")
    if argument and not (_RESERVED & set(argument)):
        return argument
    quoted = "".join("\\" + char if char in '"`$\\' else char for char in argument)
    return _desktop_string(f'"{quoted}"')


def _desktop_string(value: str) -> str:
    """A string value of a .desktop key: backslash, newline, tab and carriage return escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
