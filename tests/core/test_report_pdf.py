"""The report as a one-page PDF wrapped as a DICOM Encapsulated PDF in the source study."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from brainseg_gui.core.report_pdf import ENCAPSULATED_PDF, encapsulated_pdf, pdf_of, report_pdf


def _source() -> Dataset:
    source = Dataset()
    source.PatientName, source.PatientID, source.StudyInstanceUID = "Doe^Jane", "P-1", "1.2.3.4"
    source.StudyDate, source.AccessionNumber, source.StudyDescription = "20240315", "A1", "MR BRAIN"
    return source


def test_the_pdf_is_one_page_with_what_it_says(tmp_path: Path) -> None:
    picture = np.zeros((60, 180, 3), np.uint8)
    picture[20:40, 20:40] = (255, 0, 0)
    pdf = report_pdf("BrainSeg report", [("Patient", "Doe^Jane (ID P-1)")], {"WT": 12.5, "TC": 3.25, "ET": 1.0},
                     ["missing t2"], picture)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") + pdf.count(b"/Type/Page") >= 1
    assert b"BrainSeg" in pdf


def test_the_encapsulated_pdf_joins_the_source_study_and_gives_the_pdf_back(tmp_path: Path) -> None:
    pdf = b"%PDF-1.4 odd length\n%%EOF"
    dataset = encapsulated_pdf(pdf, _source(), title="BrainSeg report", series_number=902)
    dataset.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    back = pydicom.dcmread(tmp_path / "report.dcm")
    assert back.SOPClassUID == ENCAPSULATED_PDF and back.Modality == "DOC"
    assert (back.PatientID, back.StudyInstanceUID, back.AccessionNumber) == ("P-1", "1.2.3.4", "A1")
    assert back.MIMETypeOfEncapsulatedDocument == "application/pdf" and back.SeriesNumber == 902
    assert len(back.EncapsulatedDocument) % 2 == 0 and pdf_of(back) == pdf
