"""Beyond the seed: occlusion sensitivity, and checks of whether a map deserves trust.

- occlusion_sensitivity: slide a grey patch over the image, map the drop in the class
  probability (Zeiler & Fergus 2014). Many patches per forward pass.
- randomize_layers: a copy of the model with some layers re-initialised, for the model
  randomization test (Adebayo et al. 2018). The caller's model is never changed.
- spearman, ssim: how similar two maps are, as in Adebayo et al.
- deletion_curve, insertion_curve, area_under: faithfulness (Petsiuk et al. 2018, RISE):
  does deleting (inserting) the pixels a map ranks first destroy (restore) the class?
"""

import copy
import itertools
import math
import warnings

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .models import GradCamError, as_batch, class_index, eval_mode, get_layer, input_config, list_layers


def occlusion_sensitivity(model, x, target, patch=32, stride=16, batch_size=64, progress=True):
    """[H, W] map: how much the probability of `target` drops when a grey patch covers each pixel.

    Grey is 0 in normalised input space, the dataset's mean colour. Each pixel's value is the
    mean drop over every patch position that covers it. `progress`: True for a progress bar,
    False for none, or a function called with (batches done, batches in all) after each batch.
    """
    x = as_batch(model, x)[:1]
    target = class_index(target)
    _, _, height, width = x.shape
    if not (1 <= patch <= min(height, width) and stride >= 1 and batch_size >= 1):
        given = f"patch={patch}, stride={stride}, batch_size={batch_size}"
        raise GradCamError(f"patch must be 1 to {min(height, width)} pixels, stride and batch_size at least 1; not {given}")
    corners = [(top, left) for top in range(0, height - patch + 1, stride) for left in range(0, width - patch + 1, stride)]
    drops = []
    with torch.no_grad(), eval_mode(model):
        base = model(x).softmax(dim=1)[0, target]
        starts = range(0, len(corners), batch_size)
        for done, start in enumerate(tqdm(starts, desc="occlusion", unit="batch", disable=progress is not True), start=1):
            chunk = corners[start : start + batch_size]
            occluded = x.repeat(len(chunk), 1, 1, 1)
            for i, (top, left) in enumerate(chunk):
                occluded[i, :, top : top + patch, left : left + patch] = 0
            drops.append(base - model(occluded).softmax(dim=1)[:, target])
            if callable(progress):
                progress(done, len(starts))
    drops = torch.cat(drops)
    total = torch.zeros(height, width, device=x.device)
    count = torch.zeros(height, width, device=x.device)
    for drop, (top, left) in zip(drops, corners):
        total[top : top + patch, left : left + patch] += drop
        count[top : top + patch, left : left + patch] += 1
    return total / count.clamp(min=1)


def randomize_layers(model, layers, seed=0):
    """A copy of `model` whose named layers (a name or a list of names) have freshly initialised parameters (and batch-norm statistics)."""
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
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
            layer.to(device)
    return randomized


def cascade_order(model):
    """Layer names from the top (the classifier) to the bottom (the stem), the order of Adebayo et al.'s cascading randomization."""
    layers = list_layers(model)
    trunks = {name.split(".")[0] for name in layers}
    head = [name for name, child in model.named_children() if name not in trunks and any(True for _ in child.parameters())]
    return head[::-1] + layers[::-1]


def _as_map(map_, what="the map"):
    """A map (tensor or numpy array) as a detached float64 tensor."""
    try:
        return torch.as_tensor(map_).detach().double()
    except (TypeError, ValueError, RuntimeError):
        raise GradCamError(f"{what} must be a tensor or a numpy array, not {type(map_).__name__}") from None


def _same_shape(a, b):
    a, b = _as_map(a, "the first map"), _as_map(b, "the second map")
    if a.shape != b.shape:
        raise GradCamError(f"the two maps have shapes {list(a.shape)} and {list(b.shape)}; compare maps of the same shape")
    return a, b


def _ranks(values):
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


def spearman(a, b, absolute=False):
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
        warnings.warn(f"spearman: the {' and '.join(constant)} map is constant, so the rank correlation is undefined (NaN)", RuntimeWarning, stacklevel=2)
        return math.nan
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return ((ra @ rb) / (ra.norm() * rb.norm())).item()


def ssim(a, b, window=11, sigma=1.5):
    """Structural similarity of two maps (Wang et al. 2004), each first scaled to [0, 1] by its own min and max.

    A [3, H, W] map is reduced to [H, W] by the absolute sum over its channels.
    """

    def prepare(m):
        m = m.abs().sum(0) if m.dim() == 3 else m
        m = m - m.min()
        return (m / m.max() if m.max() > 0 else m)[None, None]

    a, b = (prepare(m) for m in _same_shape(a, b))
    if a.dim() != 4 or min(a.shape[-2:]) < window:
        raise GradCamError(f"ssim needs [H, W] or [3, H, W] maps of at least {window} x {window} pixels, not {list(a.shape[2:])}")
    coords = torch.arange(window, dtype=torch.float64, device=a.device) - window // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]

    def blur(m):
        return F.conv2d(m, kernel)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).mean().item()


def pixel_order(saliency):
    """Pixel indices from the most to the least salient; a [3, H, W] map counts by its absolute sum over channels."""
    saliency = _as_map(saliency, "saliency")
    if saliency.dim() == 3:
        saliency = saliency.abs().sum(0)
    return saliency.flatten().argsort(descending=True)


FILLS = ("grey", "black", "blur")  # what deleted pixels become, and what insertion starts from


def fill(model, x, baseline):
    """x with every pixel replaced: "grey" (the dataset's mean colour, 0 after normalisation),
    "black", or "blur" (two 11 x 11 box blurs: only the largest blobs of colour survive)."""
    if baseline == "grey":
        return torch.zeros_like(x)
    if baseline == "black":
        _, _, mean, std = input_config(model)
        mean, std = (torch.tensor(v, device=x.device, dtype=x.dtype)[:, None, None] for v in (mean, std))
        return ((0 - mean) / std).expand_as(x).clone()
    if baseline == "blur":
        box = dict(stride=1, padding=5, count_include_pad=False)
        return F.avg_pool2d(F.avg_pool2d(x, 11, **box), 11, **box)
    raise GradCamError(f"unknown baseline {baseline!r}; choose one of: {', '.join(FILLS)}")


def step_image(start, finish, order, count):
    """`start` with its `count` first pixels in `order` taken from `finish`: one point of a deletion or insertion curve."""
    mask = torch.zeros(order.numel(), device=start.device)
    mask[order[:count]] = 1
    mask = mask.view(1, *start.shape[-2:])
    return start[0] * (1 - mask) + finish[0] * mask


def _curve(model, start, finish, saliency, target, steps, batch_size):
    """The probability of `target` as the pixels, in the map's order, go from `start` to `finish`."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1 or batch_size < 1:
        raise GradCamError(f"steps and batch_size must be whole numbers of at least 1, not steps={steps!r}, batch_size={batch_size!r}")
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


def deletion_curve(model, x, saliency, target, steps=32, batch_size=33, baseline="grey"):
    """(fraction of pixels deleted, probability of target): the most salient pixels become the `baseline`
    (one of FILLS) first. Lower area = more faithful."""
    x = as_batch(model, x)[:1]
    return _curve(model, x, fill(model, x, baseline), saliency, class_index(target), steps, batch_size)


def insertion_curve(model, x, saliency, target, steps=32, batch_size=33, baseline="blur"):
    """(fraction of pixels inserted, probability of target): starting from the `baseline` (one of FILLS),
    the most salient pixels come back first. Higher area = more faithful."""
    x = as_batch(model, x)[:1]
    return _curve(model, fill(model, x, baseline), x, saliency, class_index(target), steps, batch_size)


def area_under(fractions, probabilities):
    """Area under a deletion or insertion curve (trapezoid rule, fractions in [0, 1])."""
    return torch.trapezoid(_as_map(probabilities, "probabilities"), _as_map(fractions, "fractions")).item()
