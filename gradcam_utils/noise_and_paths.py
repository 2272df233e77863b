"""Pixel maps averaged over many inputs near x: SmoothGrad (noisy copies) and Integrated Gradients (a path).

Both run the pixel maps of methods.py on a batch of points instead of on x alone. Each batch is
one `ForwardPass`; the k target classes share it (one backward pass per class, as for x on a CPU). Random
points are drawn on x's device (on a GPU, drawing on the CPU and copying cost several forward
passes), with a generator of their own, so that the caller's random state is left alone: a seed
gives the same maps on the same device, but a CPU and a GPU draw different numbers.

- Gradient x Input (Shrikumar et al. 2016) needs no extra pass: it lives in methods.py.
- SmoothGrad (Smilkov et al. 2017): the mean map over noisy copies of x.
- Integrated Gradients (Sundararajan et al. 2017): (x - x') times the mean gradient along the
  straight path from a baseline x' to x, by captum's default quadrature (Gauss-Legendre).
"""

import numpy as np
import torch
import torchvision.transforms.functional as TF

from . import methods
from .models import GradCamError, input_config

SMOOTHED = ("vanilla_backprop", "deconvnet", "guided_backprop", "input_x_gradient")
BASELINES = ("black", "zeros", "blur", "noise")


def _positive_whole(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise GradCamError(f"{name} must be a whole number of at least 1, not {value!r}")
    return int(value)


def _generator(seed, device):
    """A generator of its own on `device`: seeded, or from fresh entropy when seed is None."""
    generator = torch.Generator(device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def default_batch_size(device):
    """Points per forward pass. On a 2-core CPU, batches of 4 ran SmoothGrad on lite0 a fifth faster than batches of 8
    for one class, and 1.6x as fast for three (smaller buffers are reused, not newly mapped); a GPU wants more."""
    return 4 if device.type == "cpu" else 32


def _mean_map(pass_, point, steps, weights, targets, method, batch_size, squared=False):
    """sum_s weights[s] * map(point s) for each image: weights [S] -> [k, B, 3, H, W].

    `point(s, b)`: the points [n, 3, H, W] of steps s [n] for images b [n], made one batch at a time, in order
    (all S points at once would add S images to the peak memory). `batch_size` points go through each
    forward pass; map is `method`'s pixel map.
    """
    rule = methods.PIXEL_RULES[method]
    x = pass_.input.detach()
    images = len(x)
    flat_targets = targets.repeat(1, steps)  # step-major: row s * B + b is point s of image b
    weights = weights.to(x.device, x.dtype).repeat_interleave(images)
    total = torch.zeros(len(targets), *x.shape, dtype=x.dtype, device=x.device)
    size = default_batch_size(x.device) if batch_size is None else _positive_whole("batch_size", batch_size)
    for start in range(0, steps * images, size):
        rows = torch.arange(start, min(start + size, steps * images), device=x.device)
        owner = rows % images
        points = point(rows // images, owner)
        maps = _pixel_maps_at(pass_, points, flat_targets[:, rows], rule)
        if method == "input_x_gradient":
            maps = maps * points
        if squared:
            maps = maps * maps
        total.index_add_(1, owner, maps * weights[rows, None, None, None])
    return total


def _pixel_maps_at(pass_, points, targets, rule):
    """The pixel maps [k, n, 3, H, W] at a batch of points. Its own function, so that the forward pass and its
    autograd graph are freed on return: kept alive until the next batch's pass, two graphs would share the peak.
    The points' logits give the number of classes, to check the classes given for x without a pass on x."""
    at = methods.ForwardPass(pass_.model, points, rectifiers=rule != "vanilla")
    pass_.check_classes(at.logits.shape[1])
    return at.pixel_map(targets, rule, last_use=True).detach()


def smoothgrad_maps(pass_, targets, method="vanilla_backprop", samples=25, noise=0.15, squared=False, seed=None, batch_size=None):
    """SmoothGrad [k, B, 3, H, W] of `method`: its mean map over `samples` copies of x plus Gaussian noise.

    The noise's standard deviation is noise * (max(x) - min(x)) per image (Smilkov et al. 2017, Sec. 3).
    `squared`: average the squared maps (SmoothGrad-Squared, Hooker et al. 2019).
    """
    if method not in SMOOTHED:
        raise GradCamError(f"smoothgrad averages a pixel method; method must be one of {', '.join(SMOOTHED)}, not {method!r}")
    samples = _positive_whole("samples", samples)
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise >= 0):
        raise GradCamError(f"noise must be a number of at least 0 (a fraction of the input's range, 0.1 to 0.2 in the paper), not {noise!r}")
    x = pass_.input.detach()
    sigma = noise * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
    generator = _generator(seed, x.device)

    def noisy(s, b):
        # Each point's noise is the generator's next draw of one image: the same noise at every batch_size (one draw
        # of a whole batch would split the stream differently), and one batch of it in memory, not all samples'.
        noise = torch.stack([torch.randn(x.shape[1:], generator=generator, device=x.device, dtype=x.dtype) for _ in range(len(s))])
        return x[b] + sigma[b, None, None, None] * noise

    weights = torch.full((samples,), 1 / samples, dtype=torch.float64)
    return _mean_map(pass_, noisy, samples, weights, targets, method, batch_size, squared)


def baseline_for(pass_, baseline="black", seed=0):
    """The baseline x' as a tensor of x's shape, from a tensor or a name in BASELINES."""
    x = pass_.input.detach()
    if torch.is_tensor(baseline):
        if baseline.shape not in (x.shape, x.shape[1:]):
            raise GradCamError(f"baseline has shape {list(baseline.shape)}; give one of x's shape {list(x.shape[1:])}, or one of: {', '.join(BASELINES)}")
        return baseline.detach().to(x.device, x.dtype).expand_as(x)
    if baseline not in BASELINES:
        raise GradCamError(f"unknown baseline {baseline!r}; give a tensor of x's shape or one of: {', '.join(BASELINES)}")
    _, _, mean, std = input_config(pass_.model)
    mean, std = (torch.tensor(v, device=x.device, dtype=x.dtype)[:, None, None] for v in (mean, std))
    if baseline == "zeros":  # captum's default: after normalisation, the dataset's mean colour
        return torch.zeros_like(x)
    if baseline == "black":
        return ((0 - mean) / std).expand_as(x)
    if baseline == "noise":
        uniform = torch.rand(x.shape, generator=_generator(seed, x.device), device=x.device, dtype=x.dtype)
        return (uniform - mean) / std
    side = min(x.shape[-2:])  # "blur": a Gaussian of sigma a tenth of the image's side keeps only the largest blobs of colour
    sigma = side / 10
    return TF.gaussian_blur(x, kernel_size=2 * int(2 * sigma) + 1, sigma=sigma)


def quadrature(steps):
    """(alphas, weights) of the Gauss-Legendre rule on [0, 1], as captum's IntegratedGradients uses by default."""
    points, weights = np.polynomial.legendre.leggauss(steps)
    return torch.from_numpy(0.5 * (1 + points)), torch.from_numpy(0.5 * weights)


def integrated_gradients_maps(pass_, targets, baseline="black", steps=32, batch_size=None, seed=0, return_delta=False):
    """Integrated Gradients [k, B, 3, H, W] (Sundararajan et al. 2017, Eq. 1), and with `return_delta` the
    completeness gap [k, B] (their Prop. 1; None without): one more forward pass, on the baseline.

    IG_i = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x')) / dx_i da, and sum_i IG_i should equal F(x) - F(x'):
    the gap is sum_i IG_i - (F(x) - F(x')), a check on the number of steps.
    """
    steps = _positive_whole("steps", steps)
    x = pass_.input.detach()
    start = baseline_for(pass_, baseline, seed)
    alphas, weights = quadrature(steps)
    alphas = alphas.to(x.device, x.dtype)[:, None, None, None]
    path = x - start
    attributions = _mean_map(pass_, lambda s, b: start[b] + alphas[s] * path[b], steps, weights, targets, "vanilla_backprop", batch_size) * path
    if not return_delta:
        return attributions, None
    with torch.no_grad():
        at_baseline = methods.run_model(pass_.model, start)
    logits = pass_.logits.detach()
    difference = logits.gather(1, targets.T) - at_baseline.gather(1, targets.T)  # [B, k]
    gap = attributions.flatten(2).sum(2) - difference.T
    return attributions, gap


def smoothgrad(model, x, target=None, method="vanilla_backprop", samples=25, noise=0.15, squared=False, seed=None, batch_size=None):
    """SmoothGrad (Smilkov et al. 2017): the mean of `method`'s map over `samples` noisy copies of x.

    `method`: vanilla_backprop, deconvnet, guided_backprop or input_x_gradient. `noise`: the standard
    deviation as a fraction of each image's range. `seed`: the same maps every time, without touching
    torch's random state. `batch_size`: noisy copies per forward pass (default: 4 on a CPU, 32 on a GPU).
    Shapes as for vanilla_backprop.
    """
    options = dict(method=method, samples=samples, noise=noise, squared=squared, seed=seed, batch_size=batch_size)
    return methods.explain(model, x, target, methods="smoothgrad", options={"smoothgrad": options})["smoothgrad"]


def integrated_gradients(model, x, target=None, baseline="black", steps=32, batch_size=None, seed=0, return_delta=False):
    """Integrated Gradients (Sundararajan et al. 2017) from `baseline` to x, in `steps` Gauss-Legendre points.

    `baseline`: a tensor of x's shape, or "black" (black pixels), "zeros" (the dataset's mean colour,
    captum's default), "blur" (a strongly blurred x) or "noise" (uniform noise drawn with `seed`).
    `batch_size`: path points per forward pass (default: 4 on a CPU, 32 on a GPU). With `return_delta`, also the
    completeness gap sum(attributions) - (logit(x) - logit(baseline)), one number per map.
    Shapes as for vanilla_backprop.
    """
    options = {"integrated_gradients": dict(baseline=baseline, steps=steps, batch_size=batch_size, seed=seed, return_delta=return_delta)}
    result = methods.explain(model, x, target, methods="integrated_gradients", options=options)
    return (result["integrated_gradients"], result["integrated_gradients_gap"]) if return_delta else result["integrated_gradients"]
