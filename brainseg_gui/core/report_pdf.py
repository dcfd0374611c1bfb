"""The study's report as a one-page PDF, and that PDF as a DICOM Encapsulated PDF for PACS.

A PACS shows an encapsulated PDF in the study beside the images (most viewers open it with one click),
which the SEG and the SR alone do not give a referring physician. The page holds the patient and
study, each region's volume, the flags (missing sequences, gaps), the model version, three views
through the tumour with the regions overlaid, and the research-use note. Drawn with matplotlib's
object API and PDF canvas (no pyplot, no GUI backend); wrapped with pydicom (highdicom has no
Encapsulated PDF class), taking the patient and study from the reference series.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from brainseg_gui import RESEARCH_USE_NOTE, __version__
from brainseg_gui.core.labels import REGIONS

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
#: Patient and study attributes copied from the reference series, so the PDF joins its study.
_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
           "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription")


def report_pdf(title: str, facts: Sequence[tuple[str, str]], volumes_ml: Mapping[str, float],
               flags: Sequence[str], picture: np.ndarray) -> bytes:
    """One A4 page: `title`, the (label, value) `facts`, a volume table, the flags and `picture` (RGB)."""
    from matplotlib.backends.backend_pdf import FigureCanvasPdf
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.27, 11.69))
    FigureCanvasPdf(figure)
    figure.text(0.07, 0.95, title, fontsize=16, weight="bold")
    y = 0.91
    for label, value in facts:
        figure.text(0.07, y, f"{label}:", fontsize=10, weight="bold")
        figure.text(0.30, y, value, fontsize=10)
        y -= 0.022
    y -= 0.015
    figure.text(0.07, y, "Region volumes", fontsize=12, weight="bold")
    for region in REGIONS:
        y -= 0.022
        figure.text(0.09, y, region, fontsize=10)
        figure.text(0.30, y, f"{float(volumes_ml.get(region, 0.0)):.2f} mL", fontsize=10)
    y -= 0.035
    figure.text(0.07, y, "Flags: " + ("; ".join(flags) if flags else "none"), fontsize=10, wrap=True)
    axes = figure.add_axes((0.07, 0.16, 0.86, max(0.05, y - 0.19)))
    axes.imshow(picture, interpolation="nearest")
    axes.set_axis_off()
    axes.set_title("axial, coronal, sagittal through the tumour (patient's right on the left)", fontsize=9)
    figure.text(0.07, 0.08, RESEARCH_USE_NOTE, fontsize=8, wrap=True, style="italic")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="pdf", metadata={"Creator": f"BrainSeg {__version__}", "Title": title})
    return buffer.getvalue()


def encapsulated_pdf(pdf: bytes, source: Any, *, title: str, series_number: int) -> Dataset:
    """`pdf` as a DICOM Encapsulated PDF instance in the study of `source` (a dataset of its images)."""
    now = datetime.datetime.now()
    dataset = Dataset()
    for keyword in _COPIED:
        dataset.__setattr__(keyword, source.get(keyword, ""))
    dataset.SOPClassUID = ENCAPSULATED_PDF
    dataset.SOPInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SpecificCharacterSet = "ISO_IR 192"
    dataset.Modality = "DOC"
    dataset.SeriesNumber = series_number
    dataset.SeriesDescription = title[:64]
    dataset.InstanceNumber = 1
    dataset.Manufacturer = "BrainSeg"
    dataset.SoftwareVersions = __version__
    dataset.ConversionType = "WSD"  # workstation
    dataset.ContentDate = now.strftime("%Y%m%d")
    dataset.ContentTime = now.strftime("%H%M%S")
    dataset.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    dataset.BurnedInAnnotation = "YES"
    dataset.DocumentTitle = title[:64]
    dataset.ConceptNameCodeSequence = []
    dataset.MIMETypeOfEncapsulatedDocument = "application/pdf"
    dataset.EncapsulatedDocumentLength = len(pdf)
    dataset.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.UID(ENCAPSULATED_PDF)
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta = meta
    return dataset


def pdf_of(dataset: pydicom.Dataset) -> bytes:
    """The PDF inside an Encapsulated PDF instance (its padding byte removed)."""
    length = int(dataset.get("EncapsulatedDocumentLength", len(dataset.EncapsulatedDocument)))
    return bytes(dataset.EncapsulatedDocument[:length])
