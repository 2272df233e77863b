"""gu.evaluate on photos (notebook 12's part 2) and the pieces of the evaluation that the rebuilt capstone rests on: the
similarity measure, the top of the cascade, the insertion baseline, seeded noise, per-method layers, the sign test and
the Markdown table; `gradcam-utils evaluate -i` end to end."""

import math

import pandas as pd
import pytest
import torch
import torch.nn as nn
from conftest import SAMPLES
from PIL import Image

import gradcam_utils as gu
from gradcam_utils import cli
from gradcam_utils.dataset_evaluation import rank_similarity
from gradcam_utils.evaluation import BatchCurves, top_of_cascade
from gradcam_utils.scorecard import PhotoSet, box_mask, load_boxes
from gradcam_utils.summary import sign_test, to_markdown


def test_boxes_follow_the_models_resize_and_centre_crop(lite0):
    boxes = [{"label": "middle", "box": [112, 0, 336, 224], "classes": [[7, 7]]}]
    mask = box_mask(boxes, 7, (448, 224), lite0)  # resized to 224 high, 448 wide: the crop keeps x 112..336
    assert mask.all()
    assert box_mask(boxes, 8, (448, 224), lite0) is None  # no box for that class
    shipped = load_boxes()
    assert {"cat_dog", "chelsea", "coffee", "astronaut", "rocket", "vegetables"} <= set(shipped)
    dog = box_mask(shipped["cat_dog"], 243, (224, 224), lite0)
    assert dog[12:148, 78:165].all() and dog.sum() == (148 - 12) * (165 - 78)


def test_a_photo_whose_class_has_no_box_counts_for_everything_but_localisation(lite0):
    photos = {"cat_dog": SAMPLES / "cat_dog.png", "astronaut": SAMPLES / "astronaut.jpg"}
    data = PhotoSet(lite0, photos)
    assert data.names == ["cat_dog", "astronaut"] and data.classes[0] == 243  # bull mastiff, in the dog's box
    assert data[0][2].any() and not data[1][2].any()  # "barbell": no box stands for it
    summary = gu.evaluate(
        lite0, photos, methods=["gradcam"], metrics=["pointing", "random_logit"], progress=False
    ).set_index(["method", "measure"])
    assert summary.loc[("gradcam", "pointing"), ["n", "nan"]].tolist() == [1, 1]  # counted, not dropped
    assert summary.loc[("gradcam", "random_logit"), ["n", "nan"]].tolist() == [2, 0]


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
    rows = gu.evaluate(
        TopLeft().eval(),
        {"white": photo},
        methods=["vanilla_backprop"],
        metrics=("deletion", "cost", "randomization"),
        progress=False,
        per_image=True,
    )
    value = rows.set_index(["method", "measure"])["value"]
    # Its only layer does not reach the answer: randomizing it cannot change the map, and the test must say so.
    assert value[("vanilla_backprop", "randomization")] == pytest.approx(1)
    for blind in ("random map", "centre prior", "edge map"):
        assert value[("vanilla_backprop", "deletion")] < value[(blind, "deletion")] - 0.01
    assert value[("vanilla_backprop", "cost")] > 0 and ("random map", "cost") not in value.index


def test_similarity_is_the_size_of_the_rank_correlation():
    """A reversed ranking is as much the old map as the same one; a signed correlation would score it -1, 'best'."""
    ramp = torch.linspace(0.1, 1, 64).view(8, 8)
    assert rank_similarity(ramp, 1.1 - ramp) == pytest.approx(1)
    assert rank_similarity(ramp, -ramp) == pytest.approx(1)  # a sign flip (Eigen-CAM's arbitrary sign)
    assert math.isnan(rank_similarity(ramp, torch.zeros(8, 8)))  # a blank map has no ranking


def test_the_randomized_top_stops_at_the_last_convolution(lite0):
    assert top_of_cascade(gu.load_small_model("shapes")) == ["classifier", "features.3"]
    assert top_of_cascade(lite0) == ["classifier", "bn2", "conv_head"]


def test_insertion_starts_from_the_blurred_image_and_deletion_ends_at_grey():
    model = gu.load_small_model("shapes")
    data = gu.shapes_dataset(4, seed=6)
    images, labels = torch.stack([data[i][0] for i in range(4)]), torch.tensor([data[i][1] for i in range(4)])
    maps = torch.rand(4, 64, 64, generator=torch.Generator().manual_seed(1))
    curves = BatchCurves(model, images, labels, steps=4)
    insertion, deletion_least = curves(maps, insertion=True), curves(maps, insertion=False, least_first=True)
    with torch.no_grad():
        p = model(images).softmax(1)[range(4), labels]
        blurred = model(gu.baselines.baseline(model, images, "blur")).softmax(1)[range(4), labels]
    torch.testing.assert_close(insertion[:, 0], blurred / p)
    torch.testing.assert_close(insertion[:, -1], torch.ones(4))
    # With one baseline for both, the two curves were one read backwards: their areas were equal
    assert (torch.trapezoid(insertion, dim=1) - torch.trapezoid(deletion_least.flip(1), dim=1)).abs().max() > 0.01


def test_a_batch_curve_is_the_single_image_curve_divided_by_the_intact_probability(lite0, cat_dog):
    saliency = torch.rand(224, 224, generator=torch.Generator().manual_seed(2))
    _, single = gu.deletion_curve(lite0, cat_dog, saliency, 243, steps=4)
    batched = BatchCurves(lite0, cat_dog, torch.tensor([243]), steps=4)(saliency[None], insertion=False)[0]
    torch.testing.assert_close(batched.double() * single[0], single, rtol=1e-4, atol=1e-6)


def test_the_evaluation_seeds_smoothgrad_and_takes_a_layer_per_method():
    model = gu.load_small_model("shapes")
    data = gu.shapes_dataset(3, seed=8)
    kwargs = {"metrics": ["relevance_rank"], "per_image": True, "progress": False}
    first, again = (
        gu.evaluate(model, data, ["smoothgrad"], options={"smoothgrad": {"samples": 3}}, **kwargs) for _ in "ab"
    )
    pd.testing.assert_frame_equal(first, again)
    rows = gu.evaluate(model, data, ["scorecam", "gradcam"], layer={"scorecam": "features.2"}, **kwargs)
    image, label, mask = data[1]
    at_two = gu.scorecam(model, image, label, layer="features.2")
    value = rows[(rows.image == 1) & (rows.method == "scorecam")].value.item()
    assert value == pytest.approx(gu.relevance_rank(at_two.clamp(min=0)[None], mask[None]).item())


def test_the_sign_test_is_the_exact_binomial_one():
    scipy_stats = pytest.importorskip("scipy.stats")
    for wins, losses in [(4, 0), (6, 0), (7, 3), (120, 80), (0, 0)]:
        expected = scipy_stats.binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else math.nan
        assert sign_test(wins, losses) == pytest.approx(expected, nan_ok=True)
    assert sign_test(4, 0) == pytest.approx(2 / 16)  # four photos, won on every one: not significant at 0.05


def test_the_markdown_table_gives_means_intervals_and_the_images_counted():
    rows = pd.DataFrame(
        [{"image": i, "method": "m", "measure": "pointing", "value": v} for i, v in enumerate([1, 1, 0, math.nan])]
        + [{"image": i, "method": "m", "measure": "cost", "value": 2.0} for i in range(4)]
        + [{"image": i, "method": "random map", "measure": "pointing", "value": 0.0} for i in range(4)]
    )
    table = to_markdown(gu.summarize(rows, baselines=["random map"], resamples=200), ["pointing", "cost"], {"m": "M"})
    lines = table.splitlines()
    assert lines[0] == "| method | pointing | cost |"
    assert lines[2].startswith("| M | 0.67 [") and lines[2].endswith("(n = 3) | 2.00 [2.00, 2.00] |")
    assert lines[3] == "| random map | 0.00 [0.00, 0.00] |  |"


def test_the_command_line_writes_the_rows_and_the_summary_of_photos(tmp_path, capsys):
    out = tmp_path / "table"
    argv = ["evaluate", "-i", str(SAMPLES / "cat_dog.png"), "--methods", "gradcam", "--steps", "2", "-o", str(out),
            "--device", "cpu"]  # fmt: skip
    assert cli.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["rows.csv", "summary.csv", "summary.md"]
    assert "| Grad-CAM |" in (out / "summary.md").read_text() and "centre prior" in (out / "summary.csv").read_text()
    missing = tmp_path / "missing.png"
    assert cli.main(["evaluate", "-i", str(missing), "-o", str(tmp_path / "none"), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"image not found: {missing}")
    assert not (tmp_path / "none").exists()  # nothing made before the arguments were checked


def test_bad_methods_metrics_and_layers_get_one_line(lite0):
    for kwargs, bad in [
        ({"methods": ["gradcams"]}, "unknown method 'gradcams'"),
        ({"metrics": ["faithfulness"]}, "unknown metric 'faithfulness'"),
        ({"methods": ["gradcam"], "layer": {"gradcam": "blocks.66"}}, "blocks.66"),
    ]:
        with pytest.raises(gu.GradCamError, match=bad) as info:
            gu.evaluate(lite0, [SAMPLES / "cat_dog.png"], progress=False, **kwargs)
        assert "\n" not in str(info.value)
