"""Evaluation at dataset scale: the per-image rows, equal to one image at a time; the summary's statistics; errors."""

import math

import pandas as pd
import pytest
import torch

import gradcam_utils as gu
from gradcam_utils import cli
from gradcam_utils.dataset_evaluation import edge_map
from gradcam_utils.evaluation import BatchCurves

METHODS = ["gradcam", "vanilla_backprop"]


@pytest.fixture(scope="module")
def models():
    return gu.load_small_model("shapes"), gu.load_small_model("shuffled")


@pytest.fixture(scope="module")
def rows(models):
    model, shuffled = models
    data = gu.shapes_dataset(6, "test", seed=2)
    return gu.evaluate(
        model, data, METHODS, per_image=True, steps=4, batch_size=4, shuffled_model=shuffled, seeds=(0,), progress=False
    )


def test_one_row_per_image_method_and_measure(rows):
    faithful_and_local = [
        "pointing",
        "relevance_mass",
        "relevance_rank",
        "deletion",
        "deletion (least first)",
        "insertion",
        "insertion (least first)",
    ]
    per_method = ["random_logit", "randomization", "data_randomization", "cost"]
    assert sorted(rows.image.unique()) == list(range(6))
    counts = rows.groupby(["method", "measure"]).size()
    assert (counts == 6).all()
    for method in METHODS:
        assert set(rows[rows.method == method].measure) == set(faithful_and_local + per_method)
    for blind in ("random map", "centre prior", "edge map"):
        assert set(rows[rows.method == blind].measure) == set(faithful_and_local)


def test_batched_rows_equal_one_image_at_a_time(models, rows):
    model, _ = models
    data = gu.shapes_dataset(6, "test", seed=2)
    for i in (0, 5):
        image, label, mask = data[i]
        cam = gu.gradcam(model, image, label)[None]
        value = rows[(rows.image == i) & (rows.method == "gradcam") & (rows.measure == "relevance_rank")].value.item()
        assert value == pytest.approx(gu.relevance_rank(cam, mask[None]).item())
        gradient = gu.vanilla_backprop(model, image, label).abs().sum(0)[None]
        value = rows[
            (rows.image == i) & (rows.method == "vanilla_backprop") & (rows.measure == "relevance_mass")
        ].value.item()
        assert value == pytest.approx(gu.relevance_mass(gradient, mask[None]).item(), rel=1e-5)


def test_curves_start_at_one_and_deletion_of_the_evidence_hurts_more_than_of_the_rest(models):
    model, _ = models
    data = gu.shapes_dataset(8, "test", seed=3)
    images, labels, masks = (
        torch.stack([torch.as_tensor(item[k]) for item in (data[i] for i in range(8))]) for k in range(3)
    )
    evidence = masks.double() + 0.001 * torch.rand(masks.shape, generator=torch.Generator().manual_seed(0))
    curves = BatchCurves(model, images, labels, steps=8)
    first, last = curves(evidence, insertion=False), curves(evidence, insertion=False, least_first=True)
    assert torch.allclose(first[:, 0], torch.ones(8, dtype=first.dtype))
    assert torch.trapezoid(first, dx=1 / 8).mean() < torch.trapezoid(last, dx=1 / 8).mean()


def test_the_edge_map_knows_only_the_image():
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8:] = 1
    edges = edge_map(image)[0]
    assert edges[:, 7:9].min() > 0 and edges[:, :6].max() == 0 and edges[:, 10:].max() == 0


def test_summarize_reports_n_nan_intervals_and_paired_comparisons():
    table = pd.DataFrame(
        [{"image": i, "method": "m", "measure": "pointing", "value": v} for i, v in enumerate([1, 1, 0, math.nan])]
        + [{"image": i, "method": "random map", "measure": "pointing", "value": v} for i, v in enumerate([0, 1, 0, 0])]
        + [{"image": i, "method": "c", "measure": "cost", "value": 2.0} for i in range(4)]
    )
    summary = gu.summarize(table, baselines=["random map"], resamples=500).set_index(["method", "measure"])
    row = summary.loc[("m", "pointing")]
    assert row.n == 3 and row.nan == 1 and row["mean"] == pytest.approx(2 / 3)
    assert 0 <= row["ci low"] <= 2 / 3 <= row["ci high"] <= 1
    assert row["vs random map"] == pytest.approx(1 / 3)  # per image: 1, 0, 0 on the three images both scored
    assert row["wins vs random map"] == pytest.approx(1 / 3)
    assert ("random map", "cost") not in summary.index  # a measure a map did not take gets no row
    constant = summary.loc[("c", "cost")]
    assert constant["ci low"] == constant["ci high"] == 2.0 and math.isnan(constant.get("vs random map", math.nan))
    again = gu.summarize(table, baselines=["random map"], resamples=500).set_index(["method", "measure"])
    assert again.loc[("m", "pointing")]["ci low"] == row["ci low"]  # seeded


def test_the_interval_narrows_with_more_images():
    values = torch.rand(2000, generator=torch.Generator().manual_seed(0))
    few, many = gu.summary.bootstrap(values[:20]), gu.summary.bootstrap(values)
    assert many[1] - many[0] < (few[1] - few[0]) / 5
    assert many[0] < values.mean() < many[1]


class Wrong(torch.utils.data.Dataset):
    def __init__(self, item):
        self.item = item

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return self.item


def test_bad_datasets_get_one_line_errors(models):
    model, _ = models
    image, label, mask = gu.shapes_dataset(1)[0]
    for data, message in [
        (Wrong((image, label)), "each dataset item must be \\(image \\[3, H, W\\], label, mask \\[H, W\\]\\)"),
        (Wrong((image[0], label, mask)), "dataset images must be \\[3, H, W\\]"),
        (Wrong((image, label, mask[:10])), "masks \\[2, 10, 64\\] do not match images \\[2, 3, 64, 64\\]"),
        (Wrong((image, label, mask.float())), "masks must be bool"),
    ]:
        with pytest.raises(gu.GradCamError, match=message) as info:
            gu.evaluate(model, data, ["gradcam"], metrics=["pointing"], progress=False)
        assert "\n" not in str(info.value)
    with pytest.raises(gu.GradCamError, match="data_randomization needs shuffled_model="):
        gu.evaluate(model, gu.shapes_dataset(2), ["gradcam"], metrics=["data_randomization"], progress=False)


def test_a_dataloader_gives_the_rows_of_its_dataset(models):
    model, _ = models
    data = gu.shapes_dataset(4, seed=5)
    loader = torch.utils.data.DataLoader(data, batch_size=3)
    kwargs = {"methods": ["gradcam"], "metrics": ["pointing", "relevance_rank"], "per_image": True, "progress": False}
    by_loader, by_dataset = (gu.evaluate(model, source, **kwargs) for source in (loader, data))
    key = ["method", "measure", "image"]  # the batches differ, so the rows come in another order
    pd.testing.assert_frame_equal(
        by_loader.sort_values(key).reset_index(drop=True), by_dataset.sort_values(key).reset_index(drop=True)
    )


def test_the_command_line_writes_the_rows_and_the_summary(tmp_path, capsys):
    argv = [
        "evaluate",
        "--dataset",
        "shortcut-conflict",
        "--target",
        "predicted",
        "--n",
        "3",
        "--methods",
        "gradcam",
        "--steps",
        "2",
        "-o",
        str(tmp_path),
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 0
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert set(rows.method) == {"gradcam", "random map", "centre prior", "edge map"} and sorted(
        rows.image.unique()
    ) == [0, 1, 2]
    assert "summary.csv" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["evaluate", "--dataset", "circles", "-o", str(tmp_path)])
    error = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "invalid choice: 'circles'" in error and "\n" not in error


def test_a_class_the_model_does_not_see_gets_no_normalised_curve(models):
    """Normalised by p(class | intact image), a curve of a class given 1e-4 would be noise over noise (ratios in the
    thousands on the shortcut model's conflict images): NaN, counted by summarize."""
    model, _ = models
    image, label, _ = gu.shapes_dataset(1, seed=4)[0]
    unlikely = int(model(image[None]).softmax(1)[0].argmin())
    assert model(image[None]).softmax(1)[0, unlikely] < gu.evaluation.MIN_PROBABILITY
    values = BatchCurves(model, image[None].repeat(2, 1, 1, 1), torch.tensor([label, unlikely]), 4)(
        torch.rand(2, 64, 64), insertion=False
    )
    assert not values[0].isnan().any() and values[1].isnan().all()
