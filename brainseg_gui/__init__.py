"""BrainSeg: brain-tumour MRI segmentation with an adversarially trained network.

Research software, not a diagnostic device.
"""

__version__ = "0.1.0"

RESEARCH_USE_NOTE = (
    "BrainSeg is research software. It is not a medical device and must not be used for diagnosis."
)
