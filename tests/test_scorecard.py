"""gu.evaluate and its measures on cases whose answer is known, and `gradcam-utils evaluate` end to end."""

import math

import pandas as pd
import pytest
import torch
import torch.nn as nn
from conftest import SAMPLES
from PIL import Image

import gradcam_utils as gu
from gradcam_utils import cli
from gradcam_utils.scorecard import box_mask, centre_prior, energy_in_box, load_boxes, pointing_game, to_markdown


def test_a_map_equal_to_the_box_wins_both_pointing_games_and_one_outside_loses():
    box = torch.zeros(32, 32, dtype=torch.bool)
    box[8:16, 4:20] = True
    assert pointing_game(box.double(), box) == 1 and energy_in_box(box.double(), box) == 1
    outside = (~box).double()
    assert pointing_game(outside, box) == 0 and energy_in_box(outside, box) == 0
    assert pointing_game(torch.zeros(32, 32), box) == 0  # a constant map points nowhere
    assert math.isnan(energy_in_box(-box.double(), box))  # no positive mass at all
    gradient = torch.zeros(3, 32, 32)
    gradient[1, 10, 10] = -5  # a pixel map counts by its absolute sum over the channels
    assert pointing_game(gradient, box) == 1


def test_boxes_follow_the_models_resize_and_centre_crop(lite0):
    boxes = [{"label": "middle", "box": [112, 0, 336, 224], "classes": [[7, 7]]}]
    mask = box_mask(boxes, 7, (448, 224), lite0)  # resized to 224 high, 448 wide: the crop keeps x 112..336
    assert mask.all()
    assert box_mask(boxes, 8, (448, 224), lite0) is None  # no box for that class
    shipped = load_boxes()
    assert {"cat_dog", "chelsea", "coffee", "astronaut", "rocket"} <= set(shipped)
    dog = box_mask(shipped["cat_dog"], 243, (224, 224), lite0)
    assert dog[12:148, 78:165].all() and dog.sum() == (148 - 12) * (165 - 78)


class TopLeft(nn.Module):
    """Class 0's logit: 4 x the mean of the top-left 8 x 8 pixels; the other classes' are constant. Evidence only
    there."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        evidence = x[:, :, :8, :8].mean(dim=(1, 2, 3)) * 4 + 0 * self.conv(x).mean()
        return torch.stack([evidence, torch.full_like(evidence, 9.0), torch.zeros_like(evidence)], dim=1)


def test_deleting_a_toy_models_true_evidence_first_beats_the_image_blind_maps():
    photo = Image.new("RGB", (224, 224), (250, 250, 250))
    table = gu.evaluate(
        TopLeft().eval(),
        {"white": photo},
        methods=["vanilla_backprop"],
        metrics=("deletion", "cost", "randomization"),
        progress=False,
    )
    # Its only layer does not reach the answer: randomizing it cannot change the map, and the test must say so.
    assert table["rank corr. random model"]["Vanilla backpropagation"] == pytest.approx(1) and table[
        "SSIM random model"
    ]["Vanilla backpropagation"] == pytest.approx(1)
    deletion = table["deletion AUC"]
    assert deletion["Vanilla backpropagation"] < deletion["random map"] - 0.01
    assert deletion["Vanilla backpropagation"] < deletion["centre prior"] - 0.01
    assert table["cost (forward passes)"]["Vanilla backpropagation"] > 0 and math.isnan(
        table["cost (forward passes)"]["random map"]
    )


def test_a_class_blind_method_scores_the_worst_on_the_random_logit_test(lite0):
    table = gu.evaluate(
        lite0,
        [SAMPLES / "cat_dog.png"],
        methods=["eigencam", "gradcam"],
        metrics=("random_logit", "pointing"),
        progress=False,
    )
    assert table["rank corr. other class"]["Eigen-CAM"] == pytest.approx(1.0)  # the same map for every class
    assert table["rank corr. other class"]["Grad-CAM"] < 0.9
    assert table["pointing game"]["Grad-CAM"] == 1  # the bull mastiff's map peaks inside the dog's box
    assert "| Eigen-CAM | 1.00 |" in to_markdown(table)
    assert centre_prior(torch.zeros(1, 3, 5, 5)).argmax() == 12  # the middle pixel


def test_bad_methods_and_metrics_get_one_line(lite0):
    for methods, metrics, bad in [
        (["gradcams"], ("deletion",), "gradcams"),
        (["gradcam"], ("faithfulness",), "faithfulness"),
    ]:
        with pytest.raises(gu.GradCamError, match=f"unknown (method|metric) '{bad}'") as info:
            gu.evaluate(lite0, [SAMPLES / "cat_dog.png"], methods=methods, metrics=metrics, progress=False)
        assert "\n" not in str(info.value)


def test_the_command_line_writes_the_table_as_csv_and_markdown(tmp_path, capsys):
    out = tmp_path / "table"
    argv = [
        "evaluate",
        "-i",
        str(SAMPLES / "cat_dog.png"),
        "--methods",
        "gradcam",
        "--steps",
        "4",
        "-o",
        str(out),
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.csv", "evaluation.md"]
    assert (
        "| Grad-CAM |" in (out / "evaluation.md").read_text() and "centre prior" in (out / "evaluation.csv").read_text()
    )
    missing = tmp_path / "missing.png"
    assert cli.main(["evaluate", "-i", str(missing), "-o", str(tmp_path / "none"), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"image not found: {missing}")
    assert not (tmp_path / "none").exists()  # nothing made before the arguments were checked


def test_an_image_blind_map_scores_the_same_on_every_image(lite0):
    photos = {
        "dog": SAMPLES / "cat_dog.png",
        "coffee": SAMPLES / "coffee.jpg",
    }  # 224 x 224, and 600 x 400: cropped to its middle 400
    left_half = {"dog": [0, 0, 112, 224], "coffee": [0, 0, 300, 400]}  # of the crop the model sees, for any class
    boxes = {name: [{"label": "left half", "box": box, "classes": [[0, 999]]}] for name, box in left_half.items()}
    table = gu.evaluate(lite0, photos, methods=["gradcam"], metrics=("pointing", "energy"), boxes=boxes, progress=False)
    # The centre prior never sees the photo
    assert table["energy in box sd"]["centre prior"] == pytest.approx(0, abs=1e-9)
    assert table["energy in box"]["centre prior"] == pytest.approx(0.5, abs=0.01)  # and is symmetric about the middle
    assert table["energy in box sd"]["Grad-CAM"] > 0.01  # Grad-CAM does see it


def test_relevance_mass_is_the_photos_energy(lite0):
    """The datasets' name for the share of the map inside the evidence works on the photos too (energy, in the box)."""
    photo = [SAMPLES / "cat_dog.png"]
    by_name = gu.evaluate(lite0, photo, methods=["gradcam"], metrics=["relevance_mass"], progress=False)
    energy = gu.evaluate(lite0, photo, methods=["gradcam"], metrics=["energy"], progress=False)
    pd.testing.assert_frame_equal(by_name, energy)
