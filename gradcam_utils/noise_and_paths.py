"""Pixel maps averaged over many inputs near x: SmoothGrad (noisy copies) and Integrated Gradients (a path).

Both run the pixel maps of pixel_rules.py on a batch of points instead of on x alone. Each batch is one
`Recording`; the k target classes share it (one backward pass per class, as for x on a CPU). Random
points are drawn on x's device (on a GPU, drawing on the CPU and copying cost several forward
passes), with a generator of their own, so that the caller's random state is left alone: a seed
gives the same maps on the same device, but a CPU and a GPU draw different numbers.

- SmoothGrad (Smilkov et al. 2017): the mean map over noisy copies of x.
- Integrated Gradients (Sundararajan et al. 2017): (x - x') times the mean gradient along the
  straight path from a baseline x' (baselines.py) to x, by captum's default quadrature (Gauss-Legendre).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from . import baselines
from .errors import GradCamError, one_of, whole_number
from .models import run_model
from .pixel_rules import RULES, finish
from .recording import Recording, Rule

SMOOTHED = ("vanilla_backprop", "deconvnet", "guided_backprop", "input_x_gradient")
Points = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (steps [n], images [n]) -> points [n, 3, H, W]


def default_batch_size(device: torch.device) -> int:
    """Points per forward pass. On a 2-core CPU, batches of 4 ran SmoothGrad on lite0 a fifth faster than batches of 8
    for one class, and 1.6x as fast for three (smaller buffers are reused, not newly mapped); a GPU wants more."""
    return 4 if device.type == "cpu" else 32


def _mean_map(
    pass_: Recording,
    point: Points,
    steps: int,
    weights: torch.Tensor,
    targets: torch.Tensor,
    method: str,
    batch_size: int | None,
    squared: bool = False,
) -> torch.Tensor:
    """sum_s weights[s] * map(point s) for each image: weights [S] -> [k, B, 3, H, W].

    `point(s, b)`: the points [n, 3, H, W] of steps s [n] for images b [n], made one batch at a time, in order
    (all S points at once would add S images to the peak memory). `batch_size` points go through each
    forward pass; map is `method`'s pixel map.
    """
    x = pass_.input.detach()
    images = len(x)
    flat_targets = targets.repeat(1, steps)  # step-major: row s * B + b is point s of image b
    weights = weights.to(x.device, x.dtype).repeat_interleave(images)
    total = torch.zeros(len(targets), *x.shape, dtype=x.dtype, device=x.device)
    size = default_batch_size(x.device) if batch_size is None else whole_number("batch_size", batch_size)
    for start in range(0, steps * images, size):
        rows = torch.arange(start, min(start + size, steps * images), device=x.device)
        owner = rows % images
        points = point(rows // images, owner)
        maps = finish(method, _pixel_maps_at(pass_, points, flat_targets[:, rows], RULES[method]), points)
        if squared:
            maps = maps * maps
        total.index_add_(1, owner, maps * weights[rows, None, None, None])
    return total


def _pixel_maps_at(pass_: Recording, points: torch.Tensor, targets: torch.Tensor, rule: Rule) -> torch.Tensor:
    """The pixel maps [k, n, 3, H, W] at a batch of points. Its own function, so that the forward pass and its
    autograd graph are freed on return: kept alive until the next batch's pass, two graphs would share the peak.
    The points' logits give the number of classes, to check the classes given for x without a pass on x."""
    at = Recording(pass_.model, points, rectifiers=rule is not Rule.VANILLA)
    pass_.check_classes(at.logits.shape[1])
    return at.pixel_map(targets, rule, last_use=True).detach()


def smoothgrad_maps(
    pass_: Recording,
    targets: torch.Tensor,
    method: str = "vanilla_backprop",
    samples: int = 25,
    noise: float = 0.15,
    squared: bool = False,
    seed: int | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """SmoothGrad [k, B, 3, H, W] of `method`: its mean map over `samples` copies of x plus Gaussian noise.

    The noise's standard deviation is noise * (max(x) - min(x)) per image (Smilkov et al. 2017, Sec. 3).
    `squared`: average the squared maps (SmoothGrad-Squared, Hooker et al. 2019).
    """
    one_of("method for smoothgrad to average", method, SMOOTHED)
    samples = whole_number("samples", samples)
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise >= 0):
        raise GradCamError(
            "noise must be a number of at least 0 (a fraction of the input's range, 0.1 to 0.2 in the paper), not "
            f"{noise!r}"
        )
    x = pass_.input.detach()
    sigma = noise * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
    draw = baselines.generator(seed, x.device)

    def noisy(s: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # Each point's noise is the generator's next draw of one image: the same noise at every batch_size (one draw
        # of a whole batch would split the stream differently), and one batch of it in memory, not all samples'.
        noise = torch.stack(
            [torch.randn(x.shape[1:], generator=draw, device=x.device, dtype=x.dtype) for _ in range(len(s))]
        )
        return x[b] + sigma[b, None, None, None] * noise

    weights = torch.full((samples,), 1 / samples, dtype=torch.float64)
    return _mean_map(pass_, noisy, samples, weights, targets, method, batch_size, squared)


def quadrature(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(alphas, weights) of the Gauss-Legendre rule on [0, 1], as captum's IntegratedGradients uses by default."""
    points, weights = np.polynomial.legendre.leggauss(steps)
    return torch.from_numpy(0.5 * (1 + points)), torch.from_numpy(0.5 * weights)


def integrated_gradients_maps(
    pass_: Recording,
    targets: torch.Tensor,
    baseline: str | torch.Tensor = "black",
    steps: int = 32,
    batch_size: int | None = None,
    seed: int = 0,
    return_delta: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Integrated Gradients [k, B, 3, H, W] (Sundararajan et al. 2017, Eq. 1), and with `return_delta` the
    completeness gap [k, B] (their Prop. 1; None without): one more forward pass, on the baseline.

    IG_i = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x')) / dx_i da, and sum_i IG_i should equal F(x) - F(x'):
    the gap is sum_i IG_i - (F(x) - F(x')), a check on the number of steps.
    """
    steps = whole_number("steps", steps)
    x = pass_.input.detach()
    start = baselines.baseline(pass_.model, x, baseline, seed)
    alphas, weights = quadrature(steps)
    alphas = alphas.to(x.device, x.dtype)[:, None, None, None]
    path = x - start

    def on_path(s: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return start[b] + alphas[s] * path[b]

    attributions = _mean_map(pass_, on_path, steps, weights, targets, "vanilla_backprop", batch_size) * path
    if not return_delta:
        return attributions, None
    with torch.no_grad():
        at_baseline = run_model(pass_.model, start)
    logits = pass_.logits.detach()
    difference = logits.gather(1, targets.T) - at_baseline.gather(1, targets.T)  # [B, k]
    return attributions, attributions.flatten(2).sum(2) - difference.T
