"""Occlusion sensitivity (Zeiler & Fergus 2014): explaining with forward passes only."""

from __future__ import annotations

from typing import Any, Callable, Union

import torch
from tqdm.auto import tqdm

from .errors import GradCamError
from .models import as_batch, class_index, eval_mode

Progress = Union[bool, Callable[[int, int], Any]]


def occlusion_sensitivity(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Any,
    patch: int = 32,
    stride: int = 16,
    batch_size: int = 64,
    progress: Progress = True,
) -> torch.Tensor:
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
        raise GradCamError(
            f"patch must be 1 to {min(height, width)} pixels, stride and batch_size at least 1; not {given}"
        )
    corners = [
        (top, left) for top in range(0, height - patch + 1, stride) for left in range(0, width - patch + 1, stride)
    ]
    drops = []
    with torch.no_grad(), eval_mode(model):
        base = model(x).softmax(dim=1)[0, target]
        starts = range(0, len(corners), batch_size)
        for done, start in enumerate(
            tqdm(starts, desc="occlusion", unit="batch", disable=progress is not True), start=1
        ):
            chunk = corners[start : start + batch_size]
            occluded = x.repeat(len(chunk), 1, 1, 1)
            for i, (top, left) in enumerate(chunk):
                occluded[i, :, top : top + patch, left : left + patch] = 0
            drops.append(base - model(occluded).softmax(dim=1)[:, target])
            if callable(progress):
                progress(done, len(starts))
    total = torch.zeros(height, width, device=x.device)
    count = torch.zeros(height, width, device=x.device)
    for drop, (top, left) in zip(torch.cat(drops), corners):
        total[top : top + patch, left : left + patch] += drop
        count[top : top + patch, left : left + patch] += 1
    return total / count.clamp(min=1)
