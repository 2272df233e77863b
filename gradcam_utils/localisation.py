"""Localisation metrics on maps with known evidence, each a small function on a batch: maps [N, H, W] and bool masks
[N, H, W] of the evidence's pixels in, one score per image [N] out, NaN where a mask is empty (no evidence to find).

They take the map as it is, negative values included, as Quantus's metrics do with abs=False, normalise=False. The
evaluation feeds them the positive part of a signed map (evidence for the class), and a pixel map [3, H, W] reduced
to [H, W] by the absolute sum over its channels (`saliency`): say which when reporting a score.
"""

from __future__ import annotations

import math

import torch

from .errors import GradCamError


def _check(maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    maps, masks = torch.as_tensor(maps), torch.as_tensor(masks)
    if maps.dim() != 3 or maps.shape != masks.shape:
        raise GradCamError(
            f"give maps and masks of one shape [N, H, W]; got maps {list(maps.shape)} and masks {list(masks.shape)}"
        )
    if masks.dtype != torch.bool:
        raise GradCamError(f"masks must be bool (True on the evidence), not {masks.dtype}")
    return maps.detach().double().flatten(1), masks.to(maps.device).flatten(1)


def _empty_to_nan(scores: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return scores.masked_fill(masks.sum(1) == 0, math.nan)


def pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """1 where a pixel holding the map's maximum lies in the mask, else 0 (Zhang et al. 2018): ties for the maximum
    count as a hit when any of them is inside, as in Quantus. A constant map holds its maximum everywhere."""
    maps, masks = _check(maps, masks)
    top = maps == maps.amax(dim=1, keepdim=True)
    return _empty_to_nan((top & masks).any(dim=1).double(), masks)


def relevance_mass(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of the map's sum inside the mask (Arras et al. 2022, relevance mass accuracy). Negative values count
    as they are, so a signed map can score below 0 or above 1; a map that sums to 0 gives NaN."""
    maps, masks = _check(maps, masks)
    total = maps.sum(dim=1)
    inside = (maps * masks).sum(dim=1)
    return _empty_to_nan(inside / total.where(total != 0, math.nan), masks)


def relevance_rank(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of the K highest pixels of the map that lie in the mask, K the mask's size (Arras et al. 2022,
    relevance rank accuracy). Ties at the K-th value are taken in pixel order; Quantus leaves their order to numpy's
    unstable sort, so the two can differ only on maps with ties there."""
    maps, masks = _check(maps, masks)
    sizes = masks.sum(dim=1, keepdim=True)
    largest = int(sizes.max()) if len(sizes) else 0
    if largest == 0:
        return _empty_to_nan(torch.zeros(len(maps), dtype=maps.dtype, device=maps.device), masks)
    # The K-th largest value of each map, by a partial sort (a full sort of every map costs three times as much).
    kth = maps.topk(largest, dim=1).values.gather(1, (sizes - 1).clamp(min=0))
    above, tied = maps > kth, maps == kth
    chosen = above | (tied & (tied.cumsum(dim=1) <= sizes - above.sum(dim=1, keepdim=True)))
    return _empty_to_nan(((chosen & masks).sum(dim=1) / sizes[:, 0].clamp(min=1)).double(), masks)


def saliency(maps: torch.Tensor, pixel_maps: bool) -> torch.Tensor:
    """What the metrics read from maps [..., H, W]: the positive part of heatmaps; pixel maps [..., 3, H, W] by the
    absolute sum over their channels (say which: a batch of three heatmaps has the shape of one pixel map)."""
    maps = torch.as_tensor(maps).detach()
    return maps.abs().sum(dim=-3) if pixel_maps else maps.clamp(min=0)
