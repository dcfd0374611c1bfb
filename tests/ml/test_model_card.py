"""The card's sections are typed and read by the code that uses them: normalisation here."""

from __future__ import annotations

import numpy as np
import pytest

from brainseg_gui.core.errors import ModelError
from brainseg_gui.core.study import Grid, Study
from brainseg_gui.ml.model_card import ModelCard, NormalisationSettings, default_normalisation
from brainseg_gui.ml.prediction import InferenceSettings
from brainseg_gui.ml.preprocess import prepare
from tests.ui.conftest import make_toy_study

CONFIG = {"in_channels": 4, "out_channels": 3, "widths": [4, 8]}


def card(**changes) -> ModelCard:
    return ModelCard(architecture="generator3d", config=CONFIG, resolution_mm=2.0, version="x", **changes)


def test_a_new_card_records_the_defaults_and_reads_them_back() -> None:
    section = default_normalisation()
    assert section["clip_percentiles"] == [0.5, 99.5] and section["box_margin"] == 4
    assert NormalisationSettings.from_card(section) == NormalisationSettings()
    assert InferenceSettings.from_card(card()).normalisation == NormalisationSettings()


def test_an_older_card_without_a_margin_gets_the_margin_it_was_trained_with() -> None:
    section = {k: v for k, v in default_normalisation().items() if k != "box_margin"}
    assert NormalisationSettings.from_card(section).box_margin == 4


def test_the_predictor_feeds_the_network_as_its_card_says() -> None:
    toy = make_toy_study()
    pad = ((8, 8), (8, 8), (8, 8))  # room around the brain, so the margin shows in the crop
    study = Study("padded", Grid(tuple(n + 16 for n in toy.grid.shape), toy.grid.affine),
                  {name: np.pad(image, pad) for name, image in toy.images.items()})
    own = card(normalisation=NormalisationSettings((5.0, 95.0), 1).to_card())
    settings = InferenceSettings.from_card(own)
    assert settings.normalisation == NormalisationSettings((5.0, 95.0), 1)
    default, narrow = prepare(study), prepare(study, settings.normalisation)
    widths = [(b.stop - b.start) for b in default.box], [(b.stop - b.start) for b in narrow.box]
    assert all(n == d - 6 for d, n in zip(*widths))  # the card's margin (1 voxel), not 4
    # the card's percentiles clip the bright marker harder: the z-scored maximum moves
    assert not np.isclose(default.volume[3].max(), narrow.volume[3].max())


@pytest.mark.parametrize("section, words", [
    ({"clip_percentiles": [99.5, 0.5]}, "low < high"),
    ({"clip_percentiles": [0.5]}, "two numbers"),
    ({"clip_percentiles": ["a", 1]}, "two numbers"),
    ({"box_margin": 2.5}, "whole number"),
    ({"box_margin": -1}, "0..64"),
])
def test_a_bad_normalisation_section_is_one_clear_error(section, words) -> None:
    data = card().to_dict()
    data["normalisation"] = {**default_normalisation(), **section}
    with pytest.raises(ModelError, match=words):
        ModelCard.from_dict(data, source="card.json")
