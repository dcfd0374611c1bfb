"""Finding the files of a case: from a case folder, any one of its files, or a folder of many cases.

Layouts recognised (DESIGN.md, "Sequences"):
- "brats":   BraTS 2017-2021, `<case>_t1`, `_t1ce`, `_t2`, `_flair`, `_seg` (.nii / .nii.gz / ...);
- "brats23": BraTS 2023+, `<case>-t1n`, `-t1c`, `-t2w`, `-t2f`, `-seg`;
- "msd":     MSD Task01, `imagesTr/<case>.nii.gz` 4D (FLAIR, T1w, T1gd, T2w) <-> `labelsTr/<case>.nii.gz`;
- "dicom":   a DICOM study (a folder tree, a zip, a DICOMDIR or one of its files): its series are
             classed and the chosen ones staged as series files (`core/dicom_study.py`);
- "files":   one 3D NIfTI / NRRD / MetaImage file that is not BraTS-named (one sequence).
Files of several cases may lie side by side in one folder ("flat" folders): a case is the set of
files sharing one prefix, so a double-clicked file opens exactly its own case.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from brainseg_gui.core.atomic import recover
from brainseg_gui.core.case_files import CaseFiles, Layout
from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.image_io import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    MSD_CHANNELS,
    image_suffix,
    is_dicom_file,
    peek_shape,
    strip_image_suffix,
)
from brainseg_gui.core.read_guard import (
    OutsideStudyError,
    opened_inside_its_folder,
    regular_file,
    regular_file_inside,
    within,
)
from brainseg_gui.core.study import SEQUENCES

log = logging.getLogger(__name__)


#: File-name suffix -> (layout, sequence or 'seg'); matched case-insensitively at the end of the stem.
_BRATS_ROLES = {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"}
_BRATS23_ROLES = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair", "seg": "seg"}
_BRATS_NAME = re.compile(r"^(?:(?P<case>.+)_)?(?P<role>t1|t1ce|t2|flair|seg)$", re.IGNORECASE)
_BRATS23_NAME = re.compile(r"^(?:(?P<case>.+)-)?(?P<role>t1n|t1c|t2w|t2f|seg)$", re.IGNORECASE)
#: MSD Task01 channel order of the 4th axis.
MSD_ORDER: tuple[str, str, str, str] = ("flair", "t1", "t1ce", "t2")
#: Folder levels below the given folder that `find_cases` searches.
SEARCH_DEPTH = 2


@dataclass(frozen=True)
class _Named:
    """A file whose name follows a BraTS convention."""

    path: Path
    prefix: str  # '' for bare names such as 'flair.nii.gz'
    layout: Layout
    role: str  # a sequence name or 'seg'


def parse_brats_name(path: Path) -> _Named | None:
    """Recognise BraTS 2017-2021 and 2023+ names; careful that `_t1` never matches `_t1ce`."""
    if image_suffix(path) not in IMAGE_SUFFIXES or path.name.startswith("."):
        return None
    stem = strip_image_suffix(path)
    for pattern, roles, layout in ((_BRATS_NAME, _BRATS_ROLES, "brats"),
                                   (_BRATS23_NAME, _BRATS23_ROLES, "brats23")):
        match = pattern.match(stem)
        if match:
            return _Named(path, match.group("case") or "", layout,  # type: ignore[arg-type]
                          roles[match.group("role").lower()])
    return None


def find_case(path: Path, *, as_sequence: str = "flair") -> CaseFiles:
    """The case that `path` (a case folder, or any one file of a case) belongs to.

    A single image that is not BraTS-named, or a DICOM series, is one sequence: `as_sequence`
    (default 'flair') says which, and the case carries a warning that the others are missing.
    """
    path = Path(path)
    if as_sequence not in SEQUENCES:
        raise StudyLoadError(f"unknown sequence {as_sequence!r}; expected one of {SEQUENCES}")
    if not path.exists():
        raise StudyLoadError(f"{path} does not exist")
    recover(path if path.is_dir() else path.parent)  # a set a killed writer decided on is finished first
    if path.is_dir():  # a linked folder the user opened is the study; links inside it are checked
        return _case_from_folder(path, as_sequence)
    opened_inside_its_folder(path)
    regular_file(path, "file")  # a pipe, socket or device: named, never opened
    named = parse_brats_name(path)
    if named is not None:
        return _brats_case(path.parent, named.prefix, named.layout)
    suffix = image_suffix(path)
    if suffix in DICOM_SUFFIXES or path.suffix.lower() == ".zip" or path.name.upper() == "DICOMDIR" or (
            not suffix and is_dicom_file(path)):
        return dicom_case(path)
    if suffix not in IMAGE_SUFFIXES:
        raise StudyLoadError(
            f"{path}: unsupported file type {path.suffix!r}; BrainSeg opens "
            f"{', '.join(IMAGE_SUFFIXES)} files and DICOM folders"
        )
    msd = _msd_case(path)
    if msd is not None:
        return msd
    return _single(strip_image_suffix(path), "files", path, as_sequence)


def find_cases(folder: Path) -> list[CaseFiles]:
    """Every case under `folder` (itself, and up to two folder levels down), sorted by case_id.

    Finds BraTS / BraTS 2023 cases (case folders or flat folders of several cases), MSD 4D images
    and DICOM series folders. Single files that are not BraTS-named are not cases here.
    """
    folder = Path(folder)
    if not folder.exists():
        raise StudyLoadError(f"{folder} does not exist")
    if folder.is_file():
        return [find_case(folder)]
    cases = _staged(_found_in(folder))
    if not cases:
        raise _no_case_in(folder)
    return sorted(cases, key=lambda case: (case.case_id, str(next(iter(case.files.values())))))


def _found_in(folder: Path) -> list[CaseFiles | Path]:
    """The cases in `folder` and up to SEARCH_DEPTH levels down, DICOM series folders not yet read;
    a set of files a killed writer had decided on is finished first in each folder."""
    found: list[CaseFiles | Path] = []
    for directory in _folders(folder, SEARCH_DEPTH):
        recover(directory)
        found.extend(_cases_in(directory))
    return found


def _no_case_in(folder: Path) -> StudyLoadError:
    return StudyLoadError(
        f"no case found in {folder}: looked for BraTS 2017-2021 (_t1, _t1ce, _t2, _flair), "
        "BraTS 2023 (-t1n, -t1c, -t2w, -t2f), MSD 4D images and DICOM series, "
        f"up to {SEARCH_DEPTH} folder levels down"
    )


# -- folders -------------------------------------------------------------------------------------


def _folders(root: Path, depth: int, top: Path | None = None) -> Iterator[Path]:
    """`root` and its sub-folders `depth` levels down; a linked sub-folder leading out of `top` is refused."""
    yield root
    if depth == 0:
        return
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise StudyLoadError(f"cannot list {root}: {exc}") from exc
    for child in children:
        if child.is_symlink():
            within(child, top or root, what=f"symlink {child}")
        yield from _folders(child, depth - 1, top or root)


def _files(folder: Path) -> list[Path]:
    """The entries directly in `folder` (hidden ones left out) that a case may be made of.

    Entries named like images are listed as they are, whatever they are: the case they belong to
    refuses one that is not a regular file inside `folder` (a pipe, a device, a link to elsewhere),
    naming it, since skipping it would silently drop a sequence or the labels, while a pipe beside
    another case does not stop this one from opening. Other entries are listed only when they are
    regular files inside `folder`, and are never opened otherwise.
    """
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise StudyLoadError(f"cannot list {folder}: {exc}") from exc
    files = []
    for entry in entries:
        if image_suffix(entry) in IMAGE_SUFFIXES and not entry.is_dir():
            files.append(entry)
        elif entry.is_file():
            try:
                files.append(regular_file_inside(entry, folder))
            except OutsideStudyError:
                log.debug("left out %s: a link to a file outside %s", entry, folder)
    return files


def _present(path: Path | None) -> bool:
    """Whether a partner file (an MSD label map or image) is there, refusing one that cannot be opened."""
    if path is None or not (path.exists() or path.is_symlink()):
        return False
    regular_file_inside(path, path.parent, "image")
    return True


def _brats_groups(folder: Path) -> dict[str, list[_Named]]:
    groups: dict[str, list[_Named]] = {}
    for file in _files(folder):
        named = parse_brats_name(file)
        if named is not None:
            groups.setdefault(named.prefix, []).append(named)
    return groups


def _holds_dicom(folder: Path, files: list[Path]) -> bool:
    return any(image_suffix(f) in DICOM_SUFFIXES for f in files) or any(
        is_dicom_file(f) for f in files[:5] if not image_suffix(f)
    )


def find_cohort(folder: Path) -> list[CaseFiles | Path]:
    """The members of a cohort folder: found cases, and DICOM studies as their folders, not yet read.

    The cases are those `find_cases` finds in files (BraTS, MSD); a DICOM study is an immediate
    subfolder (or .zip) that holds DICOM and no such case, whatever its inner layout (a PACS
    export's patient/study/series tree). Its files are indexed and staged by the worker that
    segments it (on its own machine, in parallel), not all up front by the process handing out work.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [*find_cases(folder)]
    members: list[CaseFiles | Path] = [m for m in _found_in(folder) if isinstance(m, CaseFiles)]
    holding_cases = {Path(p).resolve().parent for m in members if isinstance(m, CaseFiles) for p in m.files.values()}
    for child in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        inside = child.resolve()
        if any(place == inside or place.is_relative_to(inside) for place in holding_cases):
            continue
        if (child.is_dir() or child.suffix.lower() == ".zip") and is_dicom_study(child):
            within(child, folder, what=f"linked study {child}")
            members.append(child)
    if not members:
        raise _no_case_in(folder)
    return sorted(members, key=_member_key)


def _member_key(member: CaseFiles | Path) -> tuple[str, str]:
    if isinstance(member, CaseFiles):
        return member.case_id, str(next(iter(member.files.values()), ""))
    return member.name, str(member)


def _staged(members: list[CaseFiles | Path]) -> list[CaseFiles]:
    """The members with each DICOM study folder read and staged; one unusable study is skipped, logged."""
    cases = []
    for member in members:
        if isinstance(member, CaseFiles):
            cases.append(member)
            continue
        try:
            cases.append(dicom_case(member))
        except StudyLoadError as exc:  # one unusable study does not hide the other cases
            log.warning("skipped %s: %s", member, exc)
    return cases


def _cases_in(directory: Path) -> list[CaseFiles | Path]:
    """Cases whose files lie directly in `directory`; a DICOM study is its folder (staged by the caller)."""
    cases: list[CaseFiles | Path] = [
        _brats_case(directory, prefix, group[0].layout)
        for prefix, group in sorted(_brats_groups(directory).items())
        if any(named.role != "seg" for named in group)
    ]
    files = _files(directory)
    if not directory.name.lower().startswith("labels"):
        for file in files:
            if image_suffix(file) in IMAGE_SUFFIXES and parse_brats_name(file) is None:
                case = _msd_case(file, quiet=True)
                if case is not None:
                    cases.append(case)
    if not cases and _holds_dicom(directory, files):
        cases.append(directory)
    return cases


def _case_from_folder(folder: Path, as_sequence: str) -> CaseFiles:
    from brainseg_gui.core.dicom_sources import holds_dicom

    groups = {prefix: group for prefix, group in _brats_groups(folder).items()
              if any(named.role != "seg" for named in group)}
    if len(groups) == 1:
        prefix, group = next(iter(groups.items()))
        return _brats_case(folder, prefix, group[0].layout)
    if len(groups) > 1:
        names = ", ".join(_case_id(folder, prefix) for prefix in sorted(groups))
        raise StudyLoadError(f"{folder} holds {len(groups)} cases ({names}): open one of their files, "
                             "or process the folder as a batch")
    files = _files(folder)
    images = [f for f in files if image_suffix(f) in IMAGE_SUFFIXES]
    if len(images) == 1:
        return find_case(images[0], as_sequence=as_sequence)
    if len(images) > 1:
        msd = [case for case in (_msd_case(f, quiet=True) for f in images) if case is not None]
        if len(msd) == 1:
            return msd[0]
        listing = ", ".join(f.name for f in images[:6]) + (", ..." if len(images) > 6 else "")
        raise StudyLoadError(f"{folder} holds {len(images)} image files that are not named as one "
                             f"BraTS case ({listing}): open one of them")
    if _holds_dicom(folder, files) or holds_dicom(folder):
        return dicom_case(folder)
    below = [case for directory in _folders(folder, SEARCH_DEPTH) if directory != folder
             for case in _staged(_cases_in(directory))]
    if len(below) == 1:
        return below[0]
    if below:
        names = ", ".join(case.case_id for case in below[:6]) + (", ..." if len(below) > 6 else "")
        raise StudyLoadError(f"{folder} holds {len(below)} cases ({names}): open one of them, "
                             "or process the folder as a batch")
    raise StudyLoadError(f"{folder} holds no recognisable case (no BraTS-named files, MSD image, "
                         "NIfTI/NRRD/MetaImage file or DICOM series)")


def is_dicom_study(path: Path) -> bool:
    """A zip, a DICOMDIR, a DICOM file, or a folder of DICOM files that is not a BraTS-named case.

    Cheap (a directory listing and at most 50 file preambles), so it may run on the GUI thread. A
    staged DICOM study (BraTS-named series files) is a case, not a study: it loads directly.
    """
    from brainseg_gui.core.dicom_sources import DICOMDIR_NAME, holds_dicom

    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".zip" or path.name.upper() == DICOMDIR_NAME or holds_dicom(path)
    if not path.is_dir():
        return False
    if any(parse_brats_name(p) is not None for p in path.iterdir() if p.is_file()):
        return False
    return holds_dicom(path)


def dicom_case(path: Path) -> CaseFiles:
    """A DICOM study at `path`: series classed, the default choice staged in the cache (`core/dicom_study.py`)."""
    from brainseg_gui.core.dicom_study import open_dicom_study, stage_case

    index, assignment = open_dicom_study(path)
    return stage_case(index, assignment)


# -- layouts -------------------------------------------------------------------------------------


def _case_id(folder: Path, prefix: str) -> str:
    return prefix or folder.name


def _brats_case(folder: Path, prefix: str, layout: Layout) -> CaseFiles:
    """All files in `folder` named `<prefix>_<role>` (or `<prefix>-<role>`) of one layout."""
    group = [n for n in _brats_groups(folder).get(prefix, []) if n.layout == layout or n.role == "seg"]
    images: dict[str, Path] = {}
    segs: list[Path] = []
    for named in group:
        regular_file_inside(named.path, folder, "image")
        if named.role == "seg":
            segs.append(named.path)
        elif named.role in images:
            raise StudyLoadError(f"case {_case_id(folder, prefix)!r} in {folder} has two {named.role} "
                                 f"files: {images[named.role].name} and {named.path.name}")
        else:
            images[named.role] = named.path
    case_id = _case_id(folder, prefix)
    if not images:
        raise StudyLoadError(f"{folder} holds only a label map for case {case_id!r} "
                             f"({', '.join(p.name for p in segs)}) and none of its images")
    if len(segs) > 1:
        raise StudyLoadError(f"case {case_id!r} in {folder} has several label maps: "
                             f"{', '.join(p.name for p in segs)}")
    return CaseFiles(case_id=case_id, layout=layout, files=images, seg=segs[0] if segs else None)


def _msd_case(path: Path, *, quiet: bool = False) -> CaseFiles | None:
    """An MSD case if `path` is a 4-channel 4D NIfTI, or the labelsTr file of one; else None."""
    try:
        shape = peek_shape(path)
    except StudyLoadError:
        if quiet:
            return None
        raise
    if shape is None:
        return None
    partner = _msd_partner(path)
    if len(shape) == 4 and shape[3] == MSD_CHANNELS:
        return _msd(path, partner if _present(partner) else None)
    if len(shape) == 4 and not quiet:
        raise StudyLoadError(
            f"{path} is a 4D image with {shape[3]} volumes; the only 4D input read is MSD Task01's "
            f"{MSD_CHANNELS} channels (FLAIR, T1w, T1gd, T2w)"
        )
    if partner is not None and len(shape) == 3 and path.parent.name.lower().startswith("labels") and _present(
        partner
    ):
        partner_shape = peek_shape(partner)
        if partner_shape is not None and len(partner_shape) == 4 and partner_shape[3] == MSD_CHANNELS:
            return _msd(partner, path)
    return None


def _msd(image: Path, seg: Path | None) -> CaseFiles:
    return CaseFiles(case_id=strip_image_suffix(image), layout="msd",
                     files={name: image for name in MSD_ORDER}, seg=seg, msd_image=image)


def _msd_partner(path: Path) -> Path | None:
    """imagesTr/X.nii.gz <-> labelsTr/X.nii.gz (also imagesTs <-> labelsTs), as MSD pairs them."""
    folder = path.parent.name
    for this, other in (("images", "labels"), ("labels", "images")):
        if folder.lower().startswith(this):
            return path.parent.parent / (other + folder[len(this):]) / path.name
    return None


def _single(case_id: str, layout: Layout, path: Path, sequence: str) -> CaseFiles:
    what = f"DICOM series in {path.parent.name if path.is_file() else path.name}" if layout == "dicom" \
        else f"file {path.name}"
    warning = f"only one sequence found ({what}), read as {sequence}"
    log.warning("%s: %s", case_id, warning)
    return CaseFiles(case_id=case_id, layout=layout, files={sequence: path}, warnings=(warning,))


__all__ = ["MSD_ORDER", "CaseFiles", "Layout", "find_case", "find_cases", "is_dicom_study", "parse_brats_name"]
