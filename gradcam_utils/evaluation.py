"""Checks of whether a map deserves trust, and how similar two maps are.

- randomize_layers: a copy of the model with some layers re-initialised, for the model
  randomization test (Adebayo et al. 2018). The caller's model is never changed.
- spearman, ssim: how similar two maps are, as in Adebayo et al.
- deletion_curve, insertion_curve, area_under: faithfulness (Petsiuk et al. 2018, RISE):
  does deleting (inserting) the pixels a map ranks first destroy (restore) the class? Deleted pixels
  become a baseline of baselines.py, and insertion starts from one.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .baselines import baseline as baseline_of
from .errors import GradCamError, whole_number
from .layers import get_layer, list_layers
from .models import as_batch, class_index, eval_mode


def randomize_layers(model: torch.nn.Module, layers: str | Sequence[str], seed: int = 0) -> torch.nn.Module:
    """A copy of `model` whose named layers (a name or a list of names) have freshly initialised parameters (and
    batch-norm statistics)."""
    layers = [layers] if isinstance(layers, str) else layers
    randomized = copy.deepcopy(model)
    # The new values are drawn by the CPU's generator, whatever the model's device: a seed then gives
    # the same model on a CPU and on a GPU, and the caller's random state (every device's) is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        for name in layers:
            layer = get_layer(randomized, name)
            device = next(itertools.chain(layer.parameters(), layer.buffers()), torch.empty(0)).device
            layer.cpu()
            for module in layer.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
            layer.to(device)
    return randomized


def cascade_order(model: torch.nn.Module) -> list[str]:
    """Layer names from the top (the classifier) to the bottom (the stem), the order of Adebayo et al.'s cascading
    randomization."""
    layers = list_layers(model)
    trunks = {name.split(".")[0] for name in layers}
    head = [
        name for name, child in model.named_children() if name not in trunks and any(True for _ in child.parameters())
    ]
    return head[::-1] + layers[::-1]


def top_of_cascade(model: torch.nn.Module) -> list[str]:
    """The top of Adebayo et al.'s cascade: from the classifier down to the first layer that holds a convolution (the
    small models' classifier and features.3; EfficientNet-Lite's classifier, bn2 and conv_head). A map that explains
    the learned weights must already change here; the whole cascade, down to the stem, leaves numerically dead maps
    (1e-10 and below), and every method "passes" on those."""
    cascade = cascade_order(model)
    for depth, name in enumerate(cascade, start=1):
        if any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in get_layer(model, name).modules()):
            return cascade[:depth]
    return cascade


def _as_map(map_: Any, what: str = "the map") -> torch.Tensor:
    """A map (tensor or numpy array) as a detached float64 tensor."""
    try:
        return torch.as_tensor(map_).detach().double()
    except (TypeError, ValueError, RuntimeError):
        raise GradCamError(f"{what} must be a tensor or a numpy array, not {type(map_).__name__}") from None


def _same_shape(a: Any, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _as_map(a, "the first map"), _as_map(b, "the second map")
    if a.shape != b.shape:
        raise GradCamError(
            f"the two maps have shapes {list(a.shape)} and {list(b.shape)}; compare maps of the same shape"
        )
    return a, b


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 0 .. n-1, tied values sharing the average of their ranks (as scipy.stats.rankdata).

    Grad-CAM maps are exactly zero over large areas: ranking those ties in pixel order
    would invent an order that the map does not have, and bias the correlation.
    """
    ordered, order = values.sort()
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    last = counts.cumsum(0) - 1
    average = last - (counts - 1) / 2
    ranks = torch.empty_like(values)
    ranks[order] = average[group].to(values.dtype)
    return ranks


def spearman(a: Any, b: Any, absolute: bool = False) -> float:
    """Spearman rank correlation of two maps of the same shape (optionally of their absolute values), ties
    ranked by their average rank.

    When a map is constant (an all-zero Grad-CAM, say) the correlation is undefined: the result is NaN,
    with a warning, as with scipy.stats.spearmanr. `math.isnan` tells the caller.
    """
    a, b = (m.flatten() for m in _same_shape(a, b))
    if absolute:
        a, b = a.abs(), b.abs()
    constant = [name for name, m in (("first", a), ("second", b)) if m.numel() and bool((m == m[0]).all())]
    if constant:
        warnings.warn(
            f"spearman: the {' and '.join(constant)} map is constant, so the rank correlation is undefined (NaN)",
            RuntimeWarning,
            stacklevel=2,
        )
        return math.nan
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return ((ra @ rb) / (ra.norm() * rb.norm())).item()


def ssim(a: Any, b: Any, window: int = 11, sigma: float = 1.5) -> float:
    """Structural similarity of two maps (Wang et al. 2004), each first scaled to [0, 1] by its own min and max.

    A [3, H, W] map is reduced to [H, W] by the absolute sum over its channels.
    """

    def prepare(m: torch.Tensor) -> torch.Tensor:
        m = m.abs().sum(0) if m.dim() == 3 else m
        m = m - m.min()
        return (m / m.max() if m.max() > 0 else m)[None, None]

    a, b = (prepare(m) for m in _same_shape(a, b))
    if a.dim() != 4 or min(a.shape[-2:]) < window:
        raise GradCamError(
            f"ssim needs [H, W] or [3, H, W] maps of at least {window} x {window} pixels, not {list(a.shape[2:])}"
        )
    coords = torch.arange(window, dtype=torch.float64, device=a.device) - window // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]

    def blur(m: torch.Tensor) -> torch.Tensor:
        return F.conv2d(m, kernel)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).mean().item()


def pixel_order(saliency: Any) -> torch.Tensor:
    """Pixel indices from the most to the least salient; a [3, H, W] map counts by its absolute sum over channels."""
    saliency = _as_map(saliency, "saliency")
    if saliency.dim() == 3:
        saliency = saliency.abs().sum(0)
    return saliency.flatten().argsort(descending=True)


def step_image(start: torch.Tensor, finish: torch.Tensor, order: torch.Tensor, count: int) -> torch.Tensor:
    """`start` with its `count` first pixels in `order` taken from `finish`: one point of a deletion or insertion
    curve."""
    mask = torch.zeros(order.numel(), device=start.device)
    mask[order[:count]] = 1
    mask = mask.view(1, *start.shape[-2:])
    return start[0] * (1 - mask) + finish[0] * mask


def _curve(
    model: torch.nn.Module,
    start: torch.Tensor,
    finish: torch.Tensor,
    saliency: Any,
    target: int,
    steps: int,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The probability of `target` as the pixels, in the map's order, go from `start` to `finish`."""
    steps, batch_size = whole_number("steps", steps), whole_number("batch_size", batch_size)
    order = pixel_order(saliency)
    pixels = order.numel()
    if pixels != start.shape[-2] * start.shape[-1]:
        size = f"{start.shape[-2]} x {start.shape[-1]}"
        raise GradCamError(f"saliency has {pixels} pixels, x has {size}; give a map of x's size, [H, W] or [3, H, W]")
    counts = [round(pixels * i / steps) for i in range(steps + 1)]
    probabilities = []
    with torch.no_grad(), eval_mode(model):
        for begin in range(0, len(counts), batch_size):
            images = [step_image(start, finish, order, count) for count in counts[begin : begin + batch_size]]
            probabilities.append(model(torch.stack(images)).softmax(dim=1)[:, target])
    fractions = torch.tensor(counts, dtype=torch.float64) / pixels
    return fractions, torch.cat(probabilities).double().cpu()


def deletion_curve(
    model: torch.nn.Module,
    x: torch.Tensor,
    saliency: Any,
    target: Any,
    steps: int = 32,
    batch_size: int = 33,
    baseline: str = "grey",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fraction of pixels deleted, probability of target): the most salient pixels become the `baseline`
    (a name of baselines.BASELINES) first. Lower area = more faithful."""
    x = as_batch(model, x)[:1]
    return _curve(model, x, baseline_of(model, x, baseline), saliency, class_index(target), steps, batch_size)


def insertion_curve(
    model: torch.nn.Module,
    x: torch.Tensor,
    saliency: Any,
    target: Any,
    steps: int = 32,
    batch_size: int = 33,
    baseline: str = "blur",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fraction of pixels inserted, probability of target): starting from the `baseline` (a name of
    baselines.BASELINES),
    the most salient pixels come back first. Higher area = more faithful."""
    x = as_batch(model, x)[:1]
    return _curve(model, baseline_of(model, x, baseline), x, saliency, class_index(target), steps, batch_size)


MIN_PROBABILITY = 0.01  # below it, a curve normalised by p(class | intact image) is not reported (NaN)


class BatchCurves:
    """Deletion and insertion curves for a batch of images [B, 3, H, W] and their classes [B], normalised by p(class)
    on the intact image, for any number of maps: the baselines and the curves' two ends (the intact image, and the
    baseline, which no map changes) run once for all of them. Pixels of equal value go in a random order (seeded): in
    pixel order, a blank map would delete the top rows first, which is a map of its own.

    Deletion greys out the map's pixels from the image; insertion puts them back onto the blurred image (Petsiuk et
    al. 2018). With one baseline for both, insertion most-first would be deletion least-first read backwards. Where
    the model gives the class less than MIN_PROBABILITY on the intact image the ratio is noise over noise: NaN."""

    def __init__(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, steps: int, seed: int = 0
    ) -> None:
        self.model, self.images, self.steps = model, images, whole_number("steps", steps)
        pixels = images.shape[-2] * images.shape[-1]
        self.shuffle = torch.randperm(pixels, generator=torch.Generator().manual_seed(seed)).to(images.device)
        self.rows, self.targets = torch.arange(len(images), device=images.device), targets.to(images.device)
        self.grey, self.blurred = baseline_of(model, images, "grey"), baseline_of(model, images, "blur")
        intact, self.at_grey, self.at_blurred = (self.probability(x) for x in (images, self.grey, self.blurred))
        self.intact = intact.where(intact >= MIN_PROBABILITY, math.nan)

    def probability(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), eval_mode(self.model):
            return self.model(batch).softmax(1)[self.rows, self.targets]

    def __call__(self, maps: torch.Tensor, insertion: bool, least_first: bool = False) -> torch.Tensor:
        """p(class) / p(class | intact) [B, steps + 1] as the pixels, in the order of maps [B, H, W] (most relevant
        first, or least), leave the image (deletion) or come back (insertion): one forward pass per inner step."""
        start, finish = (self.blurred, self.images) if insertion else (self.images, self.grey)
        shuffled = maps.to(self.images.device).flatten(1)[:, self.shuffle]
        order = self.shuffle[shuffled.argsort(dim=1, descending=not least_first, stable=True)]
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
        pixels, shape = order.shape[1], (len(self.images), 1, *self.images.shape[-2:])
        inner = [
            self.probability(torch.where((ranks < round(pixels * step / self.steps)).view(shape), finish, start))
            for step in range(1, self.steps)
        ]
        ends = (self.at_blurred, self.intact) if insertion else (self.intact, self.at_grey)
        return torch.stack([ends[0], *inner, ends[1]], dim=1) / self.intact[:, None]


def area_under(fractions: Any, probabilities: Any) -> float:
    """Area under a deletion or insertion curve (trapezoid rule, fractions in [0, 1])."""
    return torch.trapezoid(_as_map(probabilities, "probabilities"), _as_map(fractions, "fractions")).item()
