"""Gradient x Input, SmoothGrad and Integrated Gradients: against captum, and against their own definitions."""

import weakref

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from conftest import assert_maps_close, copy_of
from test_captum import TARGETS, random_torchvision

import gradcam_utils as gu
import gradcam_utils.forward_pass
import gradcam_utils.noise_and_paths


@pytest.fixture(scope="module")
def resnet():
    model, x = random_torchvision("resnet18", 64)
    return model, x


def test_input_x_gradient_matches_captum(resnet, lite0, cat_dog):
    for model, x in [resnet, (lite0, cat_dog)]:
        ours = gu.explain(model, x, TARGETS, methods="input_x_gradient")["input_x_gradient"]
        for i, target in enumerate(TARGETS):
            assert_maps_close(ours[i], InputXGradient(copy_of(model)).attribute(x.clone(), target=target)[0])
        assert_maps_close(ours[0], x[0] * gu.vanilla_backprop(model, x, TARGETS[0]))


@pytest.mark.parametrize("baseline", ["black", "zeros", "tensor"])
def test_integrated_gradients_matches_captum_with_the_same_baseline_and_steps(resnet, baseline):
    model, x = resnet
    tensor = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2))
    given = tensor if baseline == "tensor" else baseline
    # Batches that split the path
    ours = gu.integrated_gradients(model, x, TARGETS, baseline=given, steps=8, batch_size=5)
    if baseline == "black":
        _, _, mean, std = gu.input_config(model)
        start = ((0 - torch.tensor(mean)) / torch.tensor(std))[None, :, None, None].expand_as(x).contiguous()
    else:
        start = torch.zeros_like(x) if baseline == "zeros" else tensor[None]
    for i, target in enumerate(TARGETS):
        theirs = IntegratedGradients(copy_of(model)).attribute(
            x.clone(), start, target=target, n_steps=8, internal_batch_size=8
        )
        assert_maps_close(ours[i], theirs[0])


def test_integrated_gradients_on_the_embedded_model_matches_captum(lite0, cat_dog):
    target = 243  # bull mastiff
    ours, gap = gu.integrated_gradients(
        lite0, cat_dog, target, baseline="zeros", steps=16, batch_size=16, return_delta=True
    )
    theirs, delta = IntegratedGradients(copy_of(lite0)).attribute(
        cat_dog.clone(), target=target, n_steps=16, internal_batch_size=16, return_convergence_delta=True
    )
    assert_maps_close(ours, theirs[0], rtol=1e-3)
    assert gap.item() == pytest.approx(delta.item(), abs=1e-2)


def test_integrated_gradients_is_complete_at_64_steps_from_black(lite0, cat_dog):
    """Sundararajan et al. 2017, Prop. 1: the attributions add up to logit(x) - logit(baseline).

    From black, 64 points leave a gap of about 0.2% here. (From the mean colour, "zeros", the
    integrand is rougher: 15-20% at 32-64 points, 2.5% at 128, so the gap is worth printing.)
    """
    target = 243
    ours, gap = gu.integrated_gradients(lite0, cat_dog, target, steps=64, batch_size=32, return_delta=True)
    black = gu.baseline(lite0, cat_dog, "black")
    with torch.no_grad():
        difference = lite0(cat_dog)[0, target] - lite0(black)[0, target]
    assert gap.item() == pytest.approx(ours.sum().item() - difference.item(), abs=1e-3)
    assert abs(gap.item()) < 0.01 * abs(difference.item())


def test_smoothgrad_is_the_mean_over_the_noisy_copies_as_captum_draws_them(resnet):
    model, x = resnet
    noise, samples, seed = 0.2, 6, 4
    ours = gu.smoothgrad(model, x, TARGETS[0], samples=samples, noise=noise, seed=seed, batch_size=4)
    sigma = noise * (x.max() - x.min()).item()
    generator = torch.Generator().manual_seed(seed)
    loop = (
        sum(
            gu.vanilla_backprop(model, x + sigma * torch.randn(x.shape, generator=generator), TARGETS[0])
            for _ in range(samples)
        )
        / samples
    )
    assert_maps_close(ours, loop)
    # captum's NoiseTunnel with the same standard deviation: the same kind of average, other draws
    theirs = NoiseTunnel(Saliency(copy_of(model))).attribute(
        x.clone(), target=TARGETS[0], nt_type="smoothgrad", nt_samples=samples, stdevs=sigma, abs=False
    )
    assert theirs.shape[1:] == ours.shape


def test_each_noisy_copy_is_the_generators_next_draw_at_every_batch_size(resnet):
    """The noise is drawn a batch at a time, one image per draw, so a seed gives the same maps at every batch_size and
    only one batch of noise is in memory (all samples' noise at once put SmoothGrad's peak 15 MB above captum's)."""
    model, _ = resnet
    # 61 x 61: a draw of many images splits the stream otherwise
    x = torch.randn(2, 3, 61, 61, generator=torch.Generator().manual_seed(0))
    samples, noise, seed = 5, 0.2, 3
    generator = torch.Generator().manual_seed(seed)
    sigma = noise * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))[:, None, None, None]
    copies = [
        x + sigma * torch.stack([torch.randn(image.shape, generator=generator) for image in x]) for _ in range(samples)
    ]
    loop = sum(gu.vanilla_backprop(model, copy, TARGETS[0]) for copy in copies) / samples
    for batch_size in (1, 3, 10):
        assert_maps_close(
            gu.smoothgrad(model, x, TARGETS[0], samples=samples, noise=noise, seed=seed, batch_size=batch_size), loop
        )


@pytest.mark.parametrize("method", ["vanilla_backprop", "guided_backprop", "input_x_gradient"])
def test_smoothgrad_without_noise_is_the_plain_method(resnet, method):
    model, x = resnet
    plain = gu.explain(model, x, TARGETS, methods=method)[method]
    assert_maps_close(gu.smoothgrad(model, x, TARGETS, method=method, samples=3, noise=1e-9), plain, rtol=1e-3)
    squared = gu.smoothgrad(model, x, TARGETS, method=method, samples=2, noise=0.0, squared=True)
    assert_maps_close(squared, plain**2, rtol=1e-3)


def test_a_seed_gives_the_same_maps_and_leaves_the_random_state_alone(resnet):
    model, x = resnet
    before = torch.get_rng_state()
    first = gu.smoothgrad(model, x, samples=3, seed=7)
    again = gu.smoothgrad(model, x, samples=3, seed=7)
    noisy = gu.integrated_gradients(model, x, baseline="noise", steps=3, seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(first, again)
    assert not torch.equal(first, gu.smoothgrad(model, x, samples=3, seed=8))
    assert torch.equal(noisy, gu.integrated_gradients(model, x, baseline="noise", steps=3, seed=1))
    unseeded = gu.smoothgrad(model, x, samples=3)
    assert torch.equal(torch.get_rng_state(), before) and not torch.equal(unseeded, first)


def test_shapes_targets_and_explain_as_for_the_other_pixel_methods(resnet):
    model, x = resnet
    batch = torch.cat([x, x.flip(-1)])
    for method in ("input_x_gradient", "smoothgrad", "integrated_gradients"):
        options = {"smoothgrad": {"samples": 2, "seed": 0}, "integrated_gradients": {"steps": 2}}
        one = gu.explain(model, x, methods=method, options=options)
        many = gu.explain(model, batch, TARGETS, methods=method, options=options)
        assert one[method].shape == (3, 64, 64) and many[method].shape == (2, 3, 3, 64, 64)
        assert gu.explain(model, x, topk=2, methods=method, options=options)[method].shape == (2, 3, 64, 64)
        assert torch.isfinite(many[method]).all()
    assert "integrated_gradients_gap" not in many  # one forward pass fewer when nobody asks for it
    gaps = gu.explain(
        model,
        batch,
        TARGETS,
        methods="integrated_gradients",
        options={"integrated_gradients": {"steps": 2, "return_delta": True}},
    )
    assert gaps["integrated_gradients_gap"].shape == (2, 3)
    named = gu.integrated_gradients(model, x, "tench", steps=2)  # class names work as everywhere else
    assert torch.equal(named, gu.integrated_gradients(model, x, 0, steps=2))


def test_bad_arguments_get_one_line_errors(resnet):
    model, x = resnet
    cases = [
        (lambda: gu.smoothgrad(model, x, samples=0), "samples must be a whole number of at least 1, not 0"),
        (lambda: gu.smoothgrad(model, x, noise=-0.1), "noise must be a number of at least 0"),
        (
            lambda: gu.smoothgrad(model, x, method="gradcam"),
            "unknown method for smoothgrad to average 'gradcam'; choose one of: vanilla_backprop, deconvnet, "
            "guided_backprop, "
            "input_x_gradient",
        ),
        (lambda: gu.smoothgrad(model, x, batch_size=0), "batch_size must be a whole number of at least 1"),
        (lambda: gu.integrated_gradients(model, x, steps=0), "steps must be a whole number of at least 1, not 0"),
        (
            lambda: gu.integrated_gradients(model, x, baseline=torch.zeros(3, 8, 8)),
            r"baseline has shape \[3, 8, 8\]; give one of x's shape \[3, 64, 64\]",
        ),
        (
            lambda: gu.integrated_gradients(model, x, baseline="white"),
            "unknown baseline 'white'; give a tensor of x's shape or one of: black, zeros, blur, noise",
        ),
        (
            lambda: gu.explain(model, x, methods="smoothgrads"),
            "unknown method 'smoothgrads'; choose from: .*integrated_gradients",
        ),
        (
            lambda: gu.explain(model, x, methods="smoothgrad", options={"smoothgrad": {"sample": 3}}),
            "unknown option 'sample' for smoothgrad; choose from: method, samples, noise",
        ),
        (
            lambda: gu.explain(model, x, methods="gradcam", options={"gradcam": {"steps": 3}}),
            "options given for 'gradcam', which takes none; options are for: smoothgrad, integrated_gradients",
        ),
    ]
    for call, message in cases:
        with pytest.raises(gu.GradCamError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_one_batch_of_points_is_alive_at_a_time(resnet, monkeypatch):
    """Each batch's forward pass, and its autograd graph, is freed before the next batch's is recorded:
    two graphs alive at once doubled the peak memory (1480 MB against captum's 894 for SmoothGrad on resnet50)."""
    model, x = resnet
    alive, most = set(), [0]

    class Counted:
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            alive.add(id(self))
            most[0] = max(most[0], len(alive))
            weakref.finalize(self, alive.discard, id(self))

    # explain's pass over x (a ForwardPass) and each batch's pass over points near x (a Recording)
    monkeypatch.setattr(gradcam_utils.forward_pass, "ForwardPass", type("CountedPass", (Counted, gu.ForwardPass), {}))
    monkeypatch.setattr(
        gradcam_utils.noise_and_paths, "Recording", type("CountedRecording", (Counted, gu.Recording), {})
    )
    gu.smoothgrad(model, x, samples=6, batch_size=2, seed=0)
    gu.integrated_gradients(model, x, steps=6, batch_size=2)
    assert most[0] == 2  # explain's pass, for the targets, and one batch's


def test_given_classes_cost_no_forward_pass_on_x(resnet):
    """With the classes given, the model runs on the points only: x's own pass, one forward pass more (a third of
    SmoothGrad's time for one class on a GPU), runs to find the predicted classes, or the completeness gap."""
    model, x = resnet
    batches = []
    handle = model.register_forward_pre_hook(lambda module, inputs: batches.append(len(inputs[0])))
    try:
        gu.smoothgrad(model, x, 1, samples=5, batch_size=2, seed=0)
        given = list(batches)
        batches.clear()
        gu.smoothgrad(model, x, samples=5, batch_size=2, seed=0)
        predicted = list(batches)
        batches.clear()
        gu.integrated_gradients(model, x, [1, 2], steps=4, batch_size=4)
        assert (given, predicted, batches) == ([2, 2, 1], [1, 2, 2, 1], [4])
    finally:
        handle.remove()
    for method in ("smoothgrad", "integrated_gradients"):  # the range check waits for the first batch's logits
        with pytest.raises(
            gu.GradCamError, match="class index 1000 is out of range: this model has 1000 classes"
        ) as info:
            gu.explain(model, x, [3, 1000], methods=method)
        assert "\n" not in str(info.value)
