"""Which series of a study is T1, T1ce, T2, FLAIR or something else, and why.

A study holds many series; only four are segmented. Each series is classed from its header
evidence, never from its file or folder names:

1. what it is not: a non-image object, not MR, a screen capture, a localizer, diffusion (DWI,
   ADC, FA, trace), perfusion (ASL, DSC, DCE), functional EPI, a field map, susceptibility (SWI,
   T2*), angiography, a reformat (MPR, MIP), too few slices;
2. its weighting from two independent witnesses: description/protocol keywords in the main
   vendors' conventions (Siemens `t2_tirm_tra_dark-fluid`, GE `Ax T2 FLAIR`, Philips `T2W_FLAIR`,
   Canon `FLAIR_AX`, United Imaging `t2_flair_tra`, ...) and the physics (TR, TE, TI, scanning
   sequence: a FLAIR inverts with TI > 1.2 s and reads T2-weighted; an MPRAGE inverts with
   TI 0.3-1.2 s and reads with a short TE; a spin echo with long TR and TE is T2-weighted, ...);
   agreement gives high confidence, a conflict is said and the physics wins where it is decisive;
3. T1 after contrast: a contrast agent in the header, contrast keywords (`+C`, `post`, `Gd`, `KM`,
   `CE`, agent names), or acquired after another series that carries an agent.

Where several series qualify for one sequence, `choose` picks one by a stated rule (usable
geometry, 3D over 2D, thinner slices, original over derived, axial for 2D, for T1ce the latest),
and says so. Written as explicit rules rather than a learned model: the evidence must be shown to
the user, and no labelled corpus of headers exists to learn from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from brainseg_gui.core.dicom_geometry import plane_of
from brainseg_gui.core.dicom_index import MR_IMAGE_CLASSES, SECONDARY_CAPTURE_PREFIX, DicomSeries, DicomStudy
from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.study import SEQUENCES

OTHER = "other"
CLASSES = (*SEQUENCES, OTHER)
#: A volume with fewer slices than this is not a diagnostic sequence (scouts, single reformats).
MIN_SLICES = 5
#: Below this confidence a class is a guess: the user is asked to check it.
CONFIDENT = 0.6

_NO_AGENT = {"", "none", "no", "n/a", "na", "-", "0", "nil", "not applicable"}

# Keyword patterns: matched against the lower-cased description + protocol, as whole tokens where
# `\b` is used. Tokens are separated by anything that is not a letter, digit, '+' or '*'.
_OTHER_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("localizer", (r"\b(scout|locali[sz]er|locator|survey|3[- ]?plane|tri[- ]?pilot|aahead|pilot|loc|"
                  r"scano?gram|asset[ _]?cal|calibration|cal|refscan|smartbrain|autoalign)\b")),
    ("functional EPI", r"\b(bold|fmri|func\w*|resting ?state|rsfmri|task\w*|mosaic|epi\w*)\b"),
    ("diffusion (DWI/ADC)", (r"\b(dwi|diff\w*|dti|adc|trace\w*|tensor|b ?1000|fa|colfa|md|eadc|dadc|exp|"
                            r"apparent|resolve|ep2d ?diff|isodwi|dwi\w*)\b")),
    ("perfusion", r"\b(perf\w*|asl|pcasl|pasl|dsc|dce|cbf|rcbf|relcbf|cbv|rcbv|mtt|ttp|tmax|ktrans|twist)\b"),
    ("field map", r"\b(field ?map\w*|fmap|b0 ?map|b0|b0 ?ns|b1 ?map|shim|phase)\b"),
    ("susceptibility (SWI/T2*)", (r"(\bswi\w*|\bswan\b|\bswip\b|t2\*|\bt2 ?star\b|\bhemo\w*|\bmip\b|\bmnip\b|"
                                 r"\bsusc\w*|\bgre ?t2|\bt2w? ?gre|\bt2w? ?ffe|\bffe ?t2)")),
    ("quantitative map", r"(\bt[12]\*? ?map\w*|\brelaxometry|\bqmap\w*|\bmdme\b)"),
    ("angiography", r"\b(tof|angio\w*|mra|venog\w*|pca|cemra|timeslip)\b"),
    ("spectroscopy", r"\b(svs|csi|spectro\w*|mrs|press)\b"),
    ("proton density", r"\b(pd|pdw|proton ?density|pd ?fs)\b"),
    ("reformat (MPR)", r"\b(mpr|reformat\w*|mip|mpr ?(ax|cor|sag|tra)|(ax|cor|sag|tra) ?mpr)\b"),
)
_IMAGE_TYPE_OTHER: tuple[tuple[str, frozenset[str]], ...] = (
    ("localizer", frozenset({"LOCALIZER", "SCOUT"})),
    ("diffusion (DWI/ADC)", frozenset({"DIFFUSION", "ADC", "TRACEW", "TRACE", "FA", "EADC", "DTI", "ISODWI",
                                       "EXP", "DWI"})),
    ("perfusion", frozenset({"PERFUSION", "ASL", "RELCBF", "CBF", "CBV", "MTT", "TTP", "TMAX"})),
    ("functional EPI", frozenset({"FMRI", "MOSAIC"})),
    ("field map", frozenset({"P", "PHASE", "FIELD_MAP", "B0", "FIELDMAP", "B1"})),
    ("susceptibility (SWI/T2*)", frozenset({"SWI", "MNIP", "SWI_MNIP"})),
    ("angiography", frozenset({"MIP", "ANGIO", "CPR", "MIP_SAG", "MIP_COR", "MIP_TRA"})),
    ("reformat (MPR)", frozenset({"MPR", "REFORMATTED", "PROJECTION IMAGE", "VOLUME", "MPR_THICK", "CSAMPR",
                                  "SUBTRACTION", "SUB", "CSA MPR"})),
)
_FLAIR = re.compile(r"(flair|dark ?fluid|darkfluid|fluid ?atten\w*|\bt2 ?f\b|\bt2f\b|\bflr\b|\bdf\b)")
_T1_FLAIR = re.compile(r"\bt1 ?w?\s*flair|\bt1flair|\bflair\s*t1\b|\bt1w?\s*(ir|tir)\b")
_T2 = re.compile(r"(\bt2\b|\bt2w|\bt2 ?(tse|fse|frfse|space|cube|blade|propeller|haste|spc|tra|ax|cor|sag)|"
                 r"\bt2_|\bt2[a-z])")
_T2_WEAK = re.compile(r"\b(tse|fse|frfse|haste|ssfse|propeller|blade|space|cube|vista|spc)\b")
_T1 = re.compile(r"(\bt1\b|\bt1w|\bt1 ?(se|tse|fse|ffe|tfe|ir|fl\w*|gre|mprage|space|cube|vibe|tra|ax|cor|sag)|"
                 r"\bt1_|\bt1[a-bd-z]|mp ?-?rage|mp2rage|\bspgr|\bfspgr|bravo|\btfe\b|\b3d ?tfe|\bflash|\bfl[23]d|"
                 r"\bvibe|\bstarvibe|\blava\b|ir ?-?spgr|\bfsp\b|\bgre ?fsp|\bquick ?3d|\bmpr?age|\btfl\b|"
                 r"\bmagnetization ?prepared|\bt1c|\bt1ce|\bt1gd|\bt1km)")
_CONTRAST = re.compile(r"(\+ ?c\b|\bc ?\+|\+ ?gd|\bgd\b|\bgad\w*|\bpost(?!erior)\w*|\bkm\b|\bmit ?km|\bce\b|\bt1 ?ce|"
                       r"\bt1c\b|\bt1gd|\bt1km|contrast|\benhanc\w*|gadovist|gadavist|dotarem|magnevist|multihance|"
                       r"prohance|clariscan|omniscan|gadobutrol|gadoterate|\bkontrast\w*|\bcontr\b|_c\b|\+)")
_NO_CONTRAST = re.compile(r"\b(pre|precontrast|pre ?contrast|pre ?gd|nativ\w*|native|ohne ?km|without|non ?contrast|"
                          r"noncontrast|plain)\b")


@dataclass(frozen=True)
class SeriesClass:
    """A series' class, how sure, and the evidence (one phrase each); `reason` says what an 'other' is."""

    sequence: str
    confidence: float
    evidence: tuple[str, ...] = ()
    reason: str | None = None
    contrast: bool = False
    usable: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"class": self.sequence, "confidence": round(self.confidence, 2), "reason": self.reason,
                "contrast": self.contrast, "evidence": list(self.evidence), "usable": self.usable}

    def describe(self) -> str:
        what = self.sequence if self.reason is None else f"{self.sequence} ({self.reason})"
        return f"{what}, confidence {self.confidence:.2f}"


@dataclass(frozen=True)
class Assignment:
    """Which series is used for each sequence, and how every series of the study was classed."""

    study: DicomStudy
    classes: Mapping[str, SeriesClass]  # by SeriesInstanceUID
    chosen: Mapping[str, str]  # sequence -> SeriesInstanceUID
    reasons: Mapping[str, str] = field(default_factory=dict)  # sequence -> why this one

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(name for name in SEQUENCES if name not in self.chosen)

    def series_for(self, sequence: str) -> DicomSeries | None:
        uid = self.chosen.get(sequence)
        return None if uid is None else next(s for s in self.study.series if s.uid == uid)

    def candidates(self, sequence: str) -> list[DicomSeries]:
        return [s for s in self.study.series if self.classes[s.uid].sequence == sequence]

    def as_dict(self) -> dict[str, Any]:
        sequences = {}
        for name in SEQUENCES:
            series = self.series_for(name)
            sequences[name] = {
                "series_uid": None if series is None else series.uid,
                "series_number": None if series is None else series.header.series_number,
                "description": None if series is None else series.header.description,
                "confidence": None if series is None else round(self.classes[series.uid].confidence, 2),
                "evidence": [] if series is None else list(self.classes[series.uid].evidence),
                "why_chosen": self.reasons.get(name),
                "candidates": [{"series_uid": s.uid, "series_number": s.header.series_number,
                                "description": s.header.description} for s in self.candidates(name)],
            }
        return {"study_uid": self.study.uid, "sequences": sequences, "missing": list(self.missing),
                "series": [{**s.summary(), **self.classes[s.uid].as_dict()} for s in self.study.series]}


def classify_study(study: DicomStudy) -> Assignment:
    """Class every series of `study` and choose one per sequence (see the module docstring)."""
    classes = {series.uid: classify_series(series) for series in study.series}
    classes = _contrast_by_order(study, classes)
    return choose(study, classes)


def classify_series(series: DicomSeries) -> SeriesClass:
    """The class of one series from its own header (contrast order is added by `classify_study`)."""
    header = series.header
    stack = series.main_stack
    not_image = _not_a_volume(series)
    if not_image is not None:
        return SeriesClass(OTHER, 0.99, (not_image,), reason=not_image, usable=False)
    text = _normalise(header.text)
    for reason, marks in _IMAGE_TYPE_OTHER:
        found = sorted(marks.intersection(header.image_type[2:] if reason != "localizer" else header.image_type))
        if found and not (reason == "reformat (MPR)" and "ORIGINAL" in header.image_type[:1]):
            return SeriesClass(OTHER, 0.95, (f"ImageType {'/'.join(header.image_type)} ({', '.join(found)})",),
                               reason=reason)
    for reason, pattern in _OTHER_KEYWORDS:
        match = re.search(pattern, text)
        if match and not _weighting_overrides(reason, text):
            return SeriesClass(OTHER, 0.85, ((f"description {header.description or header.protocol!r} says "
                                             f"{match.group(0)!r}"),), reason=reason)
    if "EP" in header.scanning_sequence.split("\\") and not _FLAIR.search(text):
        return SeriesClass(OTHER, 0.8, (f"echo-planar acquisition (ScanningSequence {header.scanning_sequence})",),
                           reason="echo-planar (fMRI, DWI or perfusion)")
    if header.sequence_name.lower().lstrip("*").startswith(("ep_b", "ep2d_diff", "epse", "re_b")):
        return SeriesClass(OTHER, 0.8, (f"SequenceName {header.sequence_name} (diffusion EPI)",),
                           reason="diffusion (DWI/ADC)")
    slices = stack.slices if stack is not None else 0
    if slices < MIN_SLICES:
        return SeriesClass(OTHER, 0.9, (f"{slices} slice(s) (fewer than {MIN_SLICES})",), reason="too few slices")
    if "DERIVED" in header.image_type[:1] and _OTHER_DERIVED.search(text):
        return SeriesClass(OTHER, 0.8, (f"derived images ({'/'.join(header.image_type)})",), reason="derived/MPR")
    return _weighting(series, text)


_OTHER_DERIVED = re.compile(r"\b(sub|subtract\w*|mpr|mip|reformat\w*|map|ratio|fused|fusion)\b")


def _not_a_volume(series: DicomSeries) -> str | None:
    header = series.header
    if header.sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX) or header.photometric in (
            "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422") or header.samples_per_pixel > 1:
        return "screen capture or colour picture"
    if header.modality and header.modality != "MR":
        return f"not MR (modality {header.modality})"
    if series.main_stack is None or header.sop_class_uid not in MR_IMAGE_CLASSES:
        kind = header.sop_class_uid or "unknown"
        return f"not an MR image (non-image object, SOP class {kind})"
    return None


def _weighting_overrides(reason: str, text: str) -> bool:
    """Keywords like 'cal', 'b0', 'phase', 'pd', 'exp', 'loc' also occur inside real sequence names."""
    strong = _FLAIR.search(text) or _T1.search(text) or re.search(r"\bt2\b|\bt2w", text)
    return bool(strong) and reason in ("localizer", "field map", "proton density", "diffusion (DWI/ADC)",
                                       "reformat (MPR)", "functional EPI") and not re.search(
        r"\b(scout|locali[sz]er|survey|dwi|adc|diff\w*|trace\w*|mpr|reformat\w*|bold|fmri)\b", text)


def _normalise(text: str) -> str:
    text = text.lower().replace("_", " ").replace("-", " ")
    return " ".join(text.split())


def _keyword_weighting(text: str) -> tuple[str | None, str]:
    if _T1_FLAIR.search(text):
        return "t1", "T1 FLAIR (a T1-weighted inversion recovery)"
    if _FLAIR.search(text):
        return "flair", _FLAIR.search(text).group(0)  # type: ignore[union-attr]
    t1, t2 = _T1.search(text), _T2.search(text)
    if t2 and not t1:
        return "t2", t2.group(0)
    if t1 and not t2:
        return "t1", t1.group(0)
    if t1 and t2:
        return None, f"both {t1.group(0)!r} and {t2.group(0)!r}"
    weak = _T2_WEAK.search(text)
    return (None, weak.group(0)) if weak else (None, "")


def _physics_weighting(header: Any) -> tuple[str | None, str, bool]:
    """(weighting, evidence, decisive) from TR/TE/TI and the scanning sequence."""
    tr, te, ti = header.repetition_time, header.echo_time, header.inversion_time
    scanning = header.scanning_sequence.upper().split("\\")
    variant = header.sequence_variant.upper().split("\\")
    name = header.sequence_name.lower()
    inverted = (ti is not None and ti > 0) or "IR" in scanning or name.lstrip("*").startswith(("tir", "ir"))
    values = ", ".join(f"{label} {value:g}" for label, value in (("TR", tr), ("TE", te), ("TI", ti))
                       if value is not None)
    if inverted and ti is not None and ti > 0:
        if ti >= 1200 and te is not None and te >= 60:
            return "flair", f"inversion recovery {values} ms (fluid suppressed, T2-weighted read)", True
        if ti >= 1200 and te is not None and te < 20 and tr is not None and tr >= 4000:
            return "t1", f"inversion recovery {values} ms (MP2RAGE-like)", False
        if 300 <= ti < 1200 and (te is None or te < 40):
            return "t1", f"inversion recovery {values} ms (T1-weighted: MPRAGE, IR-SPGR or T1 FLAIR)", True
        if ti < 300:
            return "stir", f"short-TI inversion recovery {values} ms (STIR)", True
    if te is None or tr is None:
        return None, "no TR/TE in the header", False
    if te >= 70 and tr >= 1500:
        return "t2", f"{values} ms (long TR, long TE)", te >= 80 and tr >= 2000
    if te <= 30 and tr <= 1000:
        return "t1", f"{values} ms (short TR, short TE)", tr <= 800 and te <= 20
    if "GR" in scanning and tr < 50 and te < 10:
        return "t1", f"{values} ms (spoiled gradient echo)", False
    if "MP" in variant and te < 10:
        return "t1", f"{values} ms (magnetisation-prepared gradient echo)", True
    if te <= 30 and tr >= 1500:
        return "pd", f"{values} ms (long TR, short TE: proton density)", False
    return None, f"{values} ms (intermediate)", False


def _weighting(series: DicomSeries, text: str) -> SeriesClass:
    header = series.header
    keyword, word = _keyword_weighting(text)
    physics, why, decisive = _physics_weighting(header)
    evidence: list[str] = []
    if keyword is not None:
        evidence.append(f"description {header.description or header.protocol!r}: {word!r} means {keyword}")
    elif word:
        evidence.append(f"description {header.description or header.protocol!r}: {word!r} (not decisive)")
    evidence.append(f"physics: {why}" + (f" means {physics}" if physics else ""))
    if header.acquisition_type:
        evidence.append(f"MRAcquisitionType {header.acquisition_type}")
    if physics in ("stir", "pd") and keyword is None:
        return SeriesClass(OTHER, 0.6, tuple(evidence), reason="STIR" if physics == "stir" else "proton density")
    if physics in ("stir", "pd"):
        physics = None
    if keyword is not None and physics is not None and keyword != physics:
        evidence.append(f"the description says {keyword} but the timing says {physics}: "
                        + ("the timing is decisive" if decisive else "the description is kept"))
        sequence, confidence = (physics, 0.55) if decisive else (keyword, 0.5)
    elif keyword is not None:
        sequence, confidence = keyword, 0.95 if physics == keyword else 0.8
    elif physics is not None:
        sequence, confidence = physics, 0.75 if decisive else 0.6
    else:
        return SeriesClass(OTHER, 0.4, tuple(evidence), reason="weighting not recognised")
    result = SeriesClass(sequence, confidence, tuple(evidence))
    return _with_contrast(result, header, text)


def _agent(header: Any) -> str | None:
    agent = header.contrast_agent.strip()
    return None if agent.lower() in _NO_AGENT else agent


def _with_contrast(result: SeriesClass, header: Any, text: str) -> SeriesClass:
    agent = _agent(header)
    said = _CONTRAST.search(text)
    denied = _NO_CONTRAST.search(text)
    evidence = list(result.evidence)
    contrast = False
    if agent is not None:
        evidence.append(f"ContrastBolusAgent {agent!r}")
        contrast = True
    if said and not denied:
        evidence.append(f"description {header.description or header.protocol!r}: {said.group(0).strip()!r} "
                        "means after contrast")
        contrast = True
    elif denied:
        evidence.append(f"description says {denied.group(0)!r}: before contrast")
        contrast = contrast and agent is not None
    if result.sequence == "t1" and contrast:
        confidence = min(0.95, result.confidence + (0.05 if agent and said else 0.0))
        return replace(result, sequence="t1ce", confidence=confidence, evidence=tuple(evidence), contrast=True)
    return replace(result, evidence=tuple(evidence), contrast=contrast)


def _contrast_by_order(study: DicomStudy, classes: dict[str, SeriesClass]) -> dict[str, SeriesClass]:
    """A T1 acquired after any series that carries a contrast agent is after contrast too."""
    given = [s for s in study.series if _agent(s.header) is not None and s.header.time]
    if not given:
        return classes
    first = min(given, key=lambda s: s.header.time)
    out = dict(classes)
    for series in study.series:
        found = classes[series.uid]
        if found.sequence == "t1" and series.header.time and series.header.time > first.header.time \
                and not _NO_CONTRAST.search(_normalise(series.header.text)):
            out[series.uid] = replace(found, sequence="t1ce", contrast=True, confidence=min(found.confidence, 0.7),
                                      evidence=found.evidence + ((f"acquired after {first.label!r}, which carries "
                                                                 f"contrast agent {first.header.contrast_agent!r}"),))
    return out


def pick_key(series: DicomSeries, found: SeriesClass, sequence: str) -> tuple[Any, ...]:
    """Sort key of the candidates for one sequence: the first is chosen (the rule `choose` states)."""
    stack = series.main_stack
    regular = stack is not None and stack.geometry.regular
    three_d = series.header.acquisition_type.upper() == "3D"
    thickness = stack.geometry.spacing if stack is not None and stack.geometry.spacing else 99.0
    derived = "DERIVED" in series.header.image_type[:1]
    axial = stack is not None and plane_of(stack.frames[0].orientation) == "axial"
    time = series.header.time or ""
    later = tuple(-ord(ch) for ch in time) if sequence == "t1ce" else ()
    normalised = "NORM" in series.header.image_type
    return (found.confidence < CONFIDENT, not regular, not three_d, round(thickness, 1), derived,
            not (axial or three_d), later, not normalised, -(series.header.series_number or 0))


RULE = ("usable geometry first, then 3D over 2D, thinner slices, original over derived, axial for 2D, "
        "for T1ce the latest acquisition, prescan-normalised over not, the later series")


def choose(study: DicomStudy, classes: Mapping[str, SeriesClass],
           overrides: Mapping[str, str] | None = None, *,
           keep: Mapping[str, tuple[str, str]] | None = None) -> Assignment:
    """One series per sequence: the user's `overrides` ({sequence: UID or series number}), then the
    earlier choices in `keep` ({sequence: (UID, why)}), else the rule."""
    chosen: dict[str, str] = {}
    reasons: dict[str, str] = {}
    classes = dict(classes)
    for sequence, key in (overrides or {}).items():
        if sequence not in SEQUENCES:
            raise StudyLoadError(f"unknown sequence {sequence!r} in a series choice; expected one of "
                                 f"{', '.join(SEQUENCES)}")
        series = study.series_by(str(key))
        found = classes[series.uid]
        if not found.usable:
            raise StudyLoadError(f"series {series.label} cannot be used as {sequence}: {found.reason}")
        classes[series.uid] = replace(found, sequence=sequence, confidence=1.0,
                                      evidence=(f"chosen by the user as {sequence}",) + found.evidence)
        chosen[sequence] = series.uid
        reasons[sequence] = "chosen by the user"
    for sequence, (uid, why) in (keep or {}).items():
        if sequence not in chosen and uid not in chosen.values():
            chosen[sequence], reasons[sequence] = uid, why
    for sequence in SEQUENCES:
        if sequence in chosen:
            continue
        candidates = [s for s in study.series if classes[s.uid].sequence == sequence
                      and s.uid not in chosen.values()]
        if not candidates:
            continue
        ranked = sorted(candidates, key=lambda s: pick_key(s, classes[s.uid], sequence))
        chosen[sequence] = ranked[0].uid
        reasons[sequence] = ("the only candidate" if len(ranked) == 1 else
                             f"chosen from {len(ranked)} candidates ({', '.join(s.label for s in ranked)}) by "
                             f"the rule: {RULE}")
    return Assignment(study, classes, chosen, reasons)


def reassign(assignment: Assignment, overrides: Mapping[str, str | None]) -> Assignment:
    """The assignment with the user's changes ({sequence: UID, number, or None to leave it empty})."""
    given = {name: assignment.study.series_by(str(key)).uid for name, key in overrides.items() if key is not None}
    # a series serves one sequence: one the user moves elsewhere leaves its old sequence to the rule
    keep = {name: (uid, assignment.reasons.get(name, "")) for name, uid in assignment.chosen.items()
            if name not in overrides and uid not in given.values()}
    result = choose(assignment.study, assignment.classes, given, keep=keep)
    chosen = {name: uid for name, uid in result.chosen.items() if overrides.get(name, "") is not None}
    return Assignment(assignment.study, result.classes, chosen,
                      {k: v for k, v in result.reasons.items() if k in chosen})


def format_assignment(assignment: Assignment) -> str:
    """The series table and the chosen four, for a terminal."""
    lines = [f"study:    {assignment.study.label} ({assignment.study.uid})", "series:"]
    for series in assignment.study.series:
        found = assignment.classes[series.uid]
        summary = series.summary()
        grid = ""
        if summary["matrix"]:
            spacing = summary["pixel_spacing_mm"] or ["?", "?"]
            grid = (f"{summary['matrix'][0]}x{summary['matrix'][1]}x{summary['slices']} "
                    f"{_num(spacing[1])}x{_num(spacing[0])}x{_num(summary['slice_spacing_mm'])} mm "
                    f"{summary['plane'] or ''} {summary['acquisition'] or ''}".rstrip())
        timing = " ".join(f"{k} {summary[k.lower() + '_ms']:g}" for k in ("TR", "TE", "TI")
                          if summary[k.lower() + "_ms"] is not None)
        lines.append(f"  {series.label[:44]:<44} {found.sequence:<6} {found.confidence:.2f}  {grid}  {timing}".rstrip())
        lines.append(f"      {found.reason + ': ' if found.reason else ''}{'; '.join(found.evidence)}")
        for problem in series.geometry_problems():
            lines.append(f"      geometry: {problem}")
    lines.append("sequences:")
    for name in SEQUENCES:
        chosen = assignment.series_for(name)
        if chosen is None:
            lines.append(f"  {name:<6} missing (no series qualifies)")
        else:
            lines.append(f"  {name:<6} {chosen.label} ({chosen.uid}), confidence "
                         f"{assignment.classes[chosen.uid].confidence:.2f}; {assignment.reasons.get(name, '')}")
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "?" if value is None else f"{float(value):.3g}"
