"""`cohort.html`: a cohort at a glance: volume distributions, flagged and failed cases first, links.

One self-contained page (the plots are inline SVG) that opens from the output folder: histograms of
the WT / TC / ET volumes of the segmented cases, then a table with the cases that need a look
first (failed, then flagged), each linking to its own report and mask.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from brainseg_gui import RESEARCH_USE_NOTE
from brainseg_gui.core.labels import REGIONS
from brainseg_gui.core.region_colours import hex_colour


class CaseRow(Protocol):
    """What the page reads of a cohort row (ml/cohort.CaseRow, frozen); a protocol, so that this module
    needs no import of the cohort runner, which imports it."""

    @property
    def case_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def volumes_ml(self) -> Mapping[str, float]: ...
    @property
    def flags(self) -> tuple[str, ...]: ...
    @property
    def seconds(self) -> float: ...
    @property
    def worker(self) -> str: ...
    @property
    def model_version(self) -> str: ...
    @property
    def output(self) -> str: ...
    @property
    def report(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def ok(self) -> bool: ...

def cohort_html(rows: Sequence[CaseRow], out_dir: Path, *, model_dir: Path, labels: str, tta: bool) -> str:
    """The page for `rows` (written into `out_dir`, so links are relative to it)."""
    e = html.escape
    done = [row for row in rows if row.ok]
    failed = [row for row in rows if not row.ok]
    flagged = [row for row in done if row.flags]
    order = [*failed, *flagged, *(row for row in done if not row.flags)]
    counts = {status: sum(1 for row in rows if row.status == status) for status in dict.fromkeys(r.status for r in rows)}
    summary = ", ".join(f"{count} {status}" for status, count in counts.items()) or "no cases"
    versions = sorted({row.model_version for row in done if row.model_version})
    picture = _histograms(done) or "<p>No segmented case yet: no volumes to plot.</p>"
    lines = []
    for row in order:
        link = (f'<a href="{e(_relative(row.report, out_dir))}">{e(row.case_id)}</a>' if row.report
                else e(row.case_id))
        mask = f'<a href="{e(_relative(row.output, out_dir))}">mask</a>' if row.output else ""
        volumes = "".join(f"<td>{row.volumes_ml[r]:.2f}</td>" if r in row.volumes_ml else "<td></td>"
                          for r in REGIONS)
        note = e(row.error or "; ".join(row.flags))
        css = ' class="failed"' if not row.ok else (' class="flagged"' if row.flags else "")
        lines.append(f"<tr{css}><td>{link}</td><td>{e(row.status)}</td>{volumes}<td>{note}</td>"
                     f"<td>{row.seconds:.1f}</td><td>{e(row.worker)}</td><td>{mask}</td></tr>")
    headers = "".join(f"<th>{r} mL</th>" for r in REGIONS)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>BrainSeg cohort: {len(rows)} case(s)</title>
<style>
body {{ font-family: sans-serif; max-width: 75em; margin: 1.5em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; }}
td, th {{ border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: right; }}
td:first-child, th:first-child, td:nth-child(2), td:nth-child(6) {{ text-align: left; }}
tr.failed {{ background: #fde0e0; }} tr.flagged {{ background: #fff4e5; }}
.note {{ border: 2px solid #c60; background: #fff4e5; padding: 0.5em 1em; font-weight: bold; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Cohort: {len(rows)} case(s)</h1>
<p class="note">{e(RESEARCH_USE_NOTE)}</p>
<p>{e(summary)}; {len(flagged)} flagged. Model {e(", ".join(versions) or "none")} from
<code>{e(str(model_dir))}</code>, labels {e(labels)}{", TTA" if tta else ""}.
Written {e(datetime.now(UTC).isoformat(timespec="seconds"))}; every row is in <a href="cohort.csv">cohort.csv</a>.</p>
{picture}
<h2>Cases (failed and flagged first)</h2>
<table><tr><th>Case</th><th>Status</th>{headers}<th>Error or flags</th><th>s</th><th>Worker</th><th></th></tr>
{"".join(lines)}</table>
</body></html>
"""


def _relative(path: str, out_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(out_dir).resolve()))
    except ValueError:
        return Path(path).resolve().as_uri()


def _histograms(rows: Sequence[CaseRow]) -> str:
    """One small SVG histogram per region, inline.

    Written by hand rather than with matplotlib: a few dozen rectangles, and the bundled app ships
    without matplotlib (installer/brainseg.spec), where `predict FOLDER` must still write this page.
    """
    if not rows:
        return ""
    e = html.escape
    panels = []
    for region in REGIONS:
        values = np.array([row.volumes_ml.get(region, 0.0) for row in rows], dtype=float)
        bins = min(30, max(5, len(values) // 3))
        top = float(values.max()) if values.max() > 0 else 1.0
        counts, edges = np.histogram(values, bins=bins, range=(0.0, top))
        width, height, left, bottom = 300, 150, 34, 26
        bar_width = (width - left - 6) / bins
        tallest = max(int(counts.max()), 1)
        bars = "".join(
            f'<rect x="{left + i * bar_width:.1f}" y="{height - bottom - (height - bottom - 18) * c / tallest:.1f}" '
            f'width="{max(bar_width - 1, 1):.1f}" height="{(height - bottom - 18) * c / tallest:.1f}" '
            f'fill="{hex_colour(region)}"><title>{edges[i]:.1f}-{edges[i + 1]:.1f} mL: {c} case(s)</title></rect>'
            for i, c in enumerate(counts) if c)
        panels.append(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="{e(region)} volumes">'
            f'<text x="{width / 2}" y="13" text-anchor="middle" font-size="12">{e(region)} ({len(values)} cases)</text>'
            f'{bars}<line x1="{left}" y1="{height - bottom}" x2="{width - 6}" y2="{height - bottom}" stroke="#444"/>'
            f'<text x="{left}" y="{height - 10}" font-size="10">0</text>'
            f'<text x="{width - 6}" y="{height - 10}" font-size="10" text-anchor="end">{top:.0f} mL</text>'
            f'<text x="{left - 4}" y="22" font-size="10" text-anchor="end">{tallest}</text></svg>')
    return "".join(panels)
