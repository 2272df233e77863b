"""Occlusion, randomisation and faithfulness, on toy models whose answers are known."""

import copy
import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn as nn
from conftest import assert_unchanged, snapshot

import gradcam_utils as gu


class TopLeft(nn.Module):
    """Class 0's logit is 4 x the mean of the top-left 8 x 8 pixels; class 1's is a constant 2."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)  # unused by the answer, there to be randomised

    def forward(self, x):
        evidence = x[:, :, :8, :8].mean(dim=(1, 2, 3)) * 4
        return torch.stack([evidence, torch.full_like(evidence, 2.0)], dim=1) + 0 * self.conv(x).mean()


def test_occlusion_finds_the_only_region_that_matters():
    x = torch.ones(1, 3, 32, 32)
    drop = gu.occlusion_sensitivity(TopLeft(), x, 0, patch=8, stride=4, progress=False)
    assert drop.shape == (32, 32)
    assert drop[:8, :8].min() > 0.05  # covering the evidence lowers the probability
    assert drop[16:, :].abs().max() == 0 and drop[:, 16:].abs().max() == 0  # patches that never touch it change nothing


def perfect_and_worst_maps(side=32):
    perfect = torch.zeros(side, side)
    perfect[:8, :8] = 1 + torch.rand(8, 8)
    return perfect, 1 - perfect


def test_batched_occlusion_equals_one_image_and_one_class_at_a_time():
    model = gu.load_small_model("shapes")
    data = gu.shapes_dataset(3, seed=5)
    images = torch.stack([data[i][0] for i in range(3)])
    targets = torch.tensor([[0, 1, 2], [3, 3, 0]])
    batched = gu.occlusion.occlusion_maps(model, images, targets, patch=16, stride=8, batch_size=20)
    for k in range(2):
        for b in range(3):
            alone = gu.occlusion_sensitivity(model, images[b], int(targets[k, b]), patch=16, stride=8, progress=False)
            torch.testing.assert_close(batched[k, b], alone, atol=1e-6, rtol=1e-5)


def test_deletion_and_insertion_rank_a_perfect_map_above_the_worst():
    # A bright square on black: deleting destroys it, and so does insertion's start, the Gaussian blur of sigma a tenth
    # of the side (6.4 pixels here: on a 32-pixel image, sigma 3.2 keeps most of an 8-pixel square).
    model, x = TopLeft(), torch.zeros(1, 3, 64, 64)
    x[..., :8, :8] = 1
    perfect, worst = perfect_and_worst_maps(64)
    deletion = {
        name: gu.area_under(*gu.deletion_curve(model, x, m, 0, steps=16))
        for name, m in [("perfect", perfect), ("worst", worst)]
    }
    insertion = {
        name: gu.area_under(*gu.insertion_curve(model, x, m, 0, steps=16))
        for name, m in [("perfect", perfect), ("worst", worst)]
    }
    assert deletion["perfect"] < 0.3 < 0.7 < deletion["worst"]
    assert insertion["perfect"] > insertion["worst"] + 0.2
    fractions, probabilities = gu.deletion_curve(model, x, perfect, 0, steps=16)
    assert fractions[0] == 0 and fractions[-1] == 1 and probabilities.shape == (17,)


def test_randomize_layers_changes_a_copy_only_and_is_seeded(lite0):
    before = snapshot(lite0)
    randomized = gu.randomize_layers(lite0, ["classifier", "blocks.6"], seed=3)
    assert_unchanged(lite0, before)
    assert not torch.equal(randomized.classifier.weight, lite0.classifier.weight)
    assert torch.equal(randomized.blocks[5][0].conv_pw.weight, lite0.blocks[5][0].conv_pw.weight)  # not asked for: kept
    again = gu.randomize_layers(lite0, ["classifier", "blocks.6"], seed=3)
    assert torch.equal(again.classifier.weight, randomized.classifier.weight)
    one = gu.randomize_layers(lite0, "blocks.6", seed=3)  # one name, not its letters
    assert torch.equal(
        one.blocks[6][0].conv_pw.weight, gu.randomize_layers(lite0, ["blocks.6"], seed=3).blocks[6][0].conv_pw.weight
    )
    assert not torch.equal(one.blocks[6][0].conv_pw.weight, lite0.blocks[6][0].conv_pw.weight)
    assert torch.equal(one.classifier.weight, lite0.classifier.weight)


def test_randomize_layers_leaves_the_random_state_alone(lite0):
    before = torch.get_rng_state()
    gu.randomize_layers(lite0, ["classifier"], seed=5)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_randomize_layers_draws_the_same_weights_on_a_gpu(lite0):
    before = torch.cuda.get_rng_state()
    on_gpu = gu.randomize_layers(copy.deepcopy(lite0).cuda(), ["classifier"], seed=5)
    assert torch.equal(torch.cuda.get_rng_state(), before)
    assert on_gpu.classifier.weight.is_cuda
    assert torch.equal(
        on_gpu.classifier.weight.cpu(), gu.randomize_layers(lite0, ["classifier"], seed=5).classifier.weight
    )


def test_similarity_measures():
    a = torch.rand(40, 40)
    assert abs(gu.spearman(a, a) - 1) < 1e-9 and abs(gu.spearman(a, -a) + 1) < 1e-9
    assert abs(gu.spearman(a - 0.5, -(a - 0.5), absolute=True) - gu.spearman((a - 0.5).abs(), (a - 0.5).abs())) < 1e-9
    assert abs(gu.ssim(a, a) - 1) < 1e-9
    assert gu.ssim(a, torch.rand(40, 40)) < 0.3
    assert gu.ssim(torch.zeros(3, 40, 40), torch.zeros(3, 40, 40)) == 1.0  # constant maps: no NaN
    # numpy maps, as a practitioner may have them, give the same numbers
    b = torch.rand(40, 40)
    assert gu.spearman(a.numpy(), b.numpy()) == gu.spearman(a, b) and gu.ssim(a.numpy(), b.numpy()) == gu.ssim(a, b)


def test_bad_arguments_to_the_helpers_get_one_line_errors():
    model, x, map_ = TopLeft(), torch.zeros(1, 3, 32, 32), torch.rand(32, 32)
    cases = [
        (lambda: gu.occlusion_sensitivity(model, x, 0, patch=0, progress=False), "patch must be 1 to 32 pixels"),
        (lambda: gu.occlusion_sensitivity(model, x, 0, batch_size=0, progress=False), "batch_size=0"),
        (
            lambda: gu.occlusion_sensitivity("resnet50", x, 0),
            r"model must be a torch.nn.Module, not str; make one with load_model\('resnet50'\)",
        ),
        (lambda: gu.spearman(map_, map_[:8]), r"the two maps have shapes \[32, 32\] and \[8, 32\]"),
        (lambda: gu.ssim(map_[:8, :8], map_[:8, :8]), "at least 11 x 11 pixels"),
        (lambda: gu.ssim("map", map_), "the first map must be a tensor or a numpy array, not str"),
        (lambda: gu.deletion_curve(model, x, map_, 0, steps=0), "steps must be a whole number of at least 1, not 0"),
        (lambda: gu.insertion_curve(model, x, map_[:16], 0), "saliency has 512 pixels, x has 32 x 32"),
        (
            lambda: gu.overlay(torch.zeros(32, 32, 3).numpy(), map_[:16]),
            r"a map of shape \[16, 32\] does not fit an image of 32 x 32",
        ),
        (
            lambda: gu.plot_grid(torch.zeros(32, 32, 3).numpy(), {"gradcam": map_[None]}, ["a", "b"]),
            "2 labels but 1 gradcam maps",
        ),
    ]
    for call, message in cases:
        with pytest.raises(gu.GradCamError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def blob(center, size=32, radius=5):
    """A Grad-CAM-like map: a positive bump, exactly zero elsewhere."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (radius**2 - ((rows - center[0]) ** 2 + (cols - center[1]) ** 2)).clamp(min=0).double()


def test_spearman_ranks_ties_as_scipy_does():
    left, right = blob((10, 8)), blob((20, 24))
    expected = scipy.stats.spearmanr(left.flatten(), right.flatten()).statistic
    assert expected < -0.05  # two maps that never overlap are not positively correlated
    assert gu.spearman(left, right) == pytest.approx(expected, abs=1e-12)
    generator = torch.Generator().manual_seed(0)
    for a, b in [
        (torch.rand(40, 40, generator=generator), torch.rand(40, 40, generator=generator)),  # no ties
        # Many ties
        (
            torch.randint(0, 4, (30, 30), generator=generator),
            torch.randint(0, 3, (30, 30), generator=generator),
        ),
        (torch.randn(3, 20, 20, generator=generator).relu(), torch.randn(3, 20, 20, generator=generator)),
    ]:
        expected = scipy.stats.spearmanr(a.flatten().numpy(), b.flatten().numpy()).statistic
        assert gu.spearman(a, b) == pytest.approx(expected, abs=1e-12)
        expected = scipy.stats.spearmanr(a.abs().flatten().numpy(), b.abs().flatten().numpy()).statistic
        assert gu.spearman(a, b, absolute=True) == pytest.approx(expected, abs=1e-12)


def test_spearman_of_a_constant_map_is_nan_with_a_warning():
    with pytest.warns(RuntimeWarning, match="the first map is constant"):
        assert math.isnan(gu.spearman(torch.zeros(32, 32), blob((10, 10))))
    with pytest.warns(RuntimeWarning, match="the second map is constant"):
        assert math.isnan(gu.spearman(blob((10, 10)), torch.full((32, 32), 3.0)))
    with pytest.warns(RuntimeWarning, match="constant"):  # a signed map whose absolute values are all equal
        assert math.isnan(gu.spearman(torch.tensor([1.0, -1.0, 1.0]), torch.tensor([1.0, 2.0, 3.0]), absolute=True))


@pytest.mark.parametrize("scale", [1e-9, 1e-20, 1e6])
def test_gradient_image_does_not_depend_on_the_scale_of_the_map(scale):
    gradient = torch.randn(3, 24, 24, generator=torch.Generator().manual_seed(1))
    picture = gu.gradient_image(gradient)
    assert picture.std() > 0.05  # not flat grey
    np.testing.assert_allclose(gu.gradient_image(gradient * scale), picture, atol=1e-6)
    np.testing.assert_allclose(gu.gradient_image(torch.zeros(3, 24, 24)), 0.5)  # no gradient at all: grey, no NaN
