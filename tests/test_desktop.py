"""Desktop integration: what `brainseg --install-desktop` writes under XDG_DATA_HOME, and that uninstall removes exactly it."""

from __future__ import annotations

import configparser
import shlex
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from brainseg_gui import desktop

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="freedesktop integration is Linux-only")

MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"


def all_files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def read_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


def test_data_home_follows_xdg_and_ignores_relative_paths(tmp_path: Path) -> None:
    assert desktop.data_home({"XDG_DATA_HOME": str(tmp_path), "HOME": "/home/u"}) == tmp_path
    assert desktop.data_home({"XDG_DATA_HOME": "relative/data", "HOME": "/home/u"}) == Path("/home/u/.local/share")
    assert desktop.data_home({"HOME": "/home/u"}) == Path("/home/u/.local/share")


def test_install_writes_a_valid_entry_mime_types_and_icons(xdg: Path) -> None:
    command = ["/opt/Brain Seg/brainseg"]
    written = desktop.install(command=command, refresh=False)

    assert set(written) == all_files(xdg) == set(desktop.installed_files(xdg))
    entry = read_entry(xdg / "applications" / "brainseg.desktop")
    assert entry["Type"] == "Application"
    assert entry["Name"] == "BrainSeg"
    assert entry["Icon"] == "brainseg"
    assert entry["Terminal"] == "false"
    assert entry["TryExec"] == "/opt/Brain Seg/brainseg"
    assert "not be used for diagnosis" in entry["Comment"]
    # the path with a space is quoted, and the double-clicked file is the single argument
    assert entry["Exec"] == '"/opt/Brain Seg/brainseg" %f'
    assert shlex.split(entry["Exec"]) == ["/opt/Brain Seg/brainseg", "%f"]
    mime_types = [value for value in entry["MimeType"].split(";") if value]
    assert mime_types == ["image/x-nifti", "image/x-nifti-gz", "image/x-nrrd", "image/x-metaimage",
                          "application/dicom"]  # the system's own type: a .dcm (or DICOMDIR) opens its study

    root = ET.parse(xdg / "mime" / "packages" / "brainseg.xml").getroot()
    globs = {node.get("type"): [g.get("pattern") for g in node.iter(f"{MIME_NS}glob")]
             for node in root.iter(f"{MIME_NS}mime-type")}
    assert globs == {"image/x-nifti": ["*.nii"], "image/x-nifti-gz": ["*.nii.gz"],
                     "image/x-nrrd": ["*.nrrd"], "image/x-metaimage": ["*.mha"]}

    svg = xdg / "icons" / "hicolor" / "scalable" / "apps" / "brainseg.svg"
    png = xdg / "icons" / "hicolor" / "256x256" / "apps" / "brainseg.png"
    assert svg.read_bytes() == (desktop.ICONS / "brainseg.svg").read_bytes()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_exec_escapes_reserved_characters_per_the_desktop_entry_spec() -> None:
    text = desktop.desktop_entry(["/opt/a$b/brain%seg", "-m", "brainseg_gui"])
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    # $ is escaped inside quotes (\$), and that backslash is doubled by the string-value escape; % becomes %%
    assert exec_line == 'Exec="/opt/a\\\\$b/brain%%seg" -m brainseg_gui %f'


def test_default_command_is_this_installation(xdg: Path) -> None:
    desktop.install(refresh=False)
    entry = read_entry(xdg / "applications" / "brainseg.desktop")
    program = shlex.split(entry["Exec"])[0]
    assert Path(program).is_absolute() and Path(program).exists()
    assert entry["Exec"].endswith(" %f")


def test_uninstall_removes_exactly_the_installed_files(xdg: Path) -> None:
    neighbour = xdg / "applications" / "other.desktop"
    neighbour.parent.mkdir(parents=True)
    neighbour.write_text("[Desktop Entry]\nName=Other\n")
    own_mime = xdg / "mime" / "packages" / "other.xml"
    own_mime.parent.mkdir(parents=True)
    own_mime.write_text("<mime-info/>")
    before = all_files(xdg)

    written = desktop.install(command=["/usr/bin/brainseg"], refresh=False)
    assert all_files(xdg) == before | set(written)
    removed = desktop.uninstall(refresh=False)

    assert sorted(removed) == sorted(written)
    assert all_files(xdg) == before
    assert desktop.uninstall(refresh=False) == []  # twice is harmless


def test_install_refuses_an_unwritable_data_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(desktop.DesktopIntegrationError, match="cannot write the desktop files"):
        desktop.install(blocker / "data", command=["/usr/bin/brainseg"], refresh=False)


@pytest.mark.skipif(shutil.which("update-mime-database") is None, reason="shared-mime-info is not installed")
def test_mime_database_knows_the_types_after_install_and_forgets_them_after_uninstall(xdg: Path) -> None:
    desktop.install(command=["/usr/bin/brainseg"])
    generated = xdg / "mime" / "image" / "x-nifti-gz.xml"
    assert generated.is_file()
    assert "*.nii.gz" in (xdg / "mime" / "globs2").read_text()

    desktop.uninstall()
    assert not generated.exists()
    assert "*.nii.gz" not in (xdg / "mime" / "globs2").read_text()


def test_cli_options_install_and_uninstall(xdg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from brainseg_gui import cli

    assert cli.main(["--install-desktop"]) == 0
    out = capsys.readouterr().out
    assert f"installed {xdg / 'applications' / 'brainseg.desktop'}" in out
    assert (xdg / "mime" / "packages" / "brainseg.xml").is_file()

    assert cli.main(["--uninstall-desktop"]) == 0
    out = capsys.readouterr().out
    assert f"removed {xdg / 'applications' / 'brainseg.desktop'}" in out
    assert not (xdg / "applications" / "brainseg.desktop").exists()


def test_cli_reports_failure_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from brainseg_gui import cli

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker))
    assert cli.main(["--install-desktop"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("brainseg: error: cannot write the desktop files")
