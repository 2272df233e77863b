"""Notebooks 07-09's explorers, and the pieces of evaluation.py they stand on: baselines, the cascade's order,
occlusion's progress."""

import pytest
import torch
import torchvision
import torchvision.transforms.functional as TF
from conftest import SAMPLES, assert_unchanged, snapshot
from test_evaluation import TopLeft

import gradcam_utils as gu
from gradcam_utils import topic_explorers


def test_baselines_for_deletion_and_insertion(lite0, cat_dog):
    for name in ("grey", "zeros", "mean"):  # one tensor under three names
        assert torch.equal(gu.baseline(lite0, cat_dog, name), torch.zeros_like(cat_dog))
    # Black after undoing the normalisation
    assert gu.deprocess(gu.baseline(lite0, cat_dog, "black"), lite0).max() < 1e-6
    # One blur for deletion, insertion and Integrated Gradients: a Gaussian of sigma a tenth of the side, 224 / 10.
    blur = gu.baseline(lite0, cat_dog, "blur")
    torch.testing.assert_close(blur, TF.gaussian_blur(cat_dog, kernel_size=89, sigma=22.4))
    with torch.no_grad():
        start = lite0(blur).softmax(1)[0, 243]
    assert gu.insertion_curve(lite0, cat_dog, torch.rand(224, 224), 243, steps=2)[1][0].item() == pytest.approx(
        start.item(), rel=1e-5
    )
    model, x, saliency = TopLeft(), torch.ones(1, 3, 32, 32), torch.rand(32, 32)
    grey = gu.deletion_curve(model, x, saliency, 0, steps=4)[1]
    black = gu.deletion_curve(model, x, saliency, 0, steps=4, baseline="black")[1]
    # Class 0 grows with the pixels' mean: black (negative after normalisation) takes more away than grey
    assert grey[-1] > black[-1]
    with pytest.raises(
        gu.GradCamError,
        match="unknown baseline 'white'; give a tensor of x's shape or one of: black, zeros, blur, noise",
    ):
        gu.insertion_curve(model, x, saliency, 0, baseline="white")


def test_the_cascade_runs_from_the_classifier_down_to_the_stem(lite0):
    assert gu.cascade_order(lite0) == [
        "classifier",
        "bn2",
        "conv_head",
        *(f"blocks.{i}" for i in range(6, -1, -1)),
        "bn1",
        "conv_stem",
    ]
    order = gu.cascade_order(torchvision.models.resnet18().eval())
    assert order[0] == "fc" and order[-1] == "conv1" and "avgpool" not in order


def test_occlusion_reports_its_progress_to_a_function():
    calls = []
    gu.occlusion_sensitivity(
        TopLeft(), torch.ones(1, 3, 32, 32), 0, patch=8, stride=4, batch_size=20, progress=lambda *a: calls.append(a)
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]  # 49 positions in batches of 20


def moved(explorer, control, value):
    before = explorer.picture_widget.value
    control.value = value
    assert explorer.picture_widget.value != before, f"moving {control.description} did not change the picture"
    assert not explorer.status.value.startswith("Error"), explorer.status.value


def test_each_topic_control_changes_the_picture_and_leaves_the_model_alone(lite0):
    before = snapshot(lite0)
    image = SAMPLES / "cat_dog.png"

    occlusion = gu.explore_occlusion(lite0, image, patch=96, stride=48)
    moved(occlusion, occlusion.patch, 64)
    moved(occlusion, occlusion.stride, 32)
    moved(occlusion, occlusion.class_slider, occlusion.class_slider.options[1][1])
    assert len(occlusion.maps) == 4 and occlusion.progress.layout.display == "none"
    occlusion.class_slider.value = occlusion.class_slider.options[0][
        1
    ]  # back to a setting computed before: from the cache
    assert len(occlusion.maps) == 4

    randomization = gu.explore_randomization(lite0, image, "gradcam")
    assert "rank correlation of |map| 1.00" in randomization.status.value  # nothing randomized yet
    moved(randomization, randomization.depth, "blocks.6")
    cascading = randomization.status.value
    moved(randomization, randomization.mode, "independent")
    assert "blocks.6 alone" in randomization.status.value and randomization.status.value != cascading
    moved(randomization, randomization.method, "guided_backprop")

    faithfulness = gu.explore_faithfulness(lite0, image, steps=4)
    curves = len(faithfulness.curves)
    moved(faithfulness, faithfulness.step, 3)
    assert len(faithfulness.curves) == curves  # a step only picks a point of curves already measured
    moved(faithfulness, faithfulness.baseline, "blur")
    moved(faithfulness, faithfulness.curve, "insertion")
    assert len(faithfulness.curves) == curves + 4  # the method's and the random map's, for each new (curve, baseline)
    assert_unchanged(lite0, before)


def test_a_setting_the_topic_explorers_do_not_offer_gets_a_one_line_error(lite0):
    with pytest.raises(gu.GradCamError, match="patch 30 is not offered; choose one of: 16, 24, 32"):
        gu.explore_occlusion(lite0, patch=30)
    with pytest.raises(gu.GradCamError, match="unknown method 'smoothgrad'; choose one of: vanilla_backprop"):
        topic_explorers.RandomizationExplorer(lite0, method="smoothgrad")
