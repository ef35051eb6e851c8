"""How W&B media file names map to (attribute, step) in `download_files`' table (pure logic)."""

from __future__ import annotations

import math

import pytest

from wandb_files.bulk import attribute_and_step


@pytest.mark.parametrize(
    ("name", "attribute", "step"),
    [
        ("media/images/predictions_12_1a2b3c4d.png", "predictions", 12.0),
        ("media/images/val/pred_0_abcdef.png", "val/pred", 0.0),
        ("media/table/my_table_7_0123456789abcdef.table.json", "my_table", 7.0),
        ("media/audio/a_b_c_3_ffffff.wav", "a_b_c", 3.0),
    ],
)
def test_media_files_are_an_attribute_at_a_step(name: str, attribute: str, step: float) -> None:
    assert attribute_and_step(name) == (attribute, step)


@pytest.mark.parametrize(
    "name",
    [
        "config.yaml",
        "media/images/no_step.png",
        "media/images/x_1_XYZ.png",
        "media/x_1_abcdef.png",
        "other/images/p_1_abcdef.png",
        "media/images/p_1_abc.png",
    ],
)
def test_other_files_are_their_own_attribute_at_no_step(name: str) -> None:
    attribute, step = attribute_and_step(name)
    assert attribute == name and math.isnan(step)
