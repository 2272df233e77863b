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
    targets = torch.tensor([[class_index(target)]], device=x.device)
    return occlusion_maps(model, x, targets, patch, stride, batch_size, progress)[0, 0]


def occlusion_maps(
    model: torch.nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    patch: int = 32,
    stride: int = 16,
    batch_size: int = 64,
    progress: Progress = False,
) -> torch.Tensor:
    """[k, B, H, W]: occlusion_sensitivity for images [B, 3, H, W] and classes targets [k, B], the k classes of an image
    read from the same occluded forward passes; `batch_size` occluded images per pass."""
    _, _, height, width = images.shape
    if not (1 <= patch <= min(height, width) and stride >= 1 and batch_size >= 1):
        given = f"patch={patch}, stride={stride}, batch_size={batch_size}"
        raise GradCamError(
            f"patch must be 1 to {min(height, width)} pixels, stride and batch_size at least 1; not {given}"
        )
    corners = [
        (top, left) for top in range(0, height - patch + 1, stride) for left in range(0, width - patch + 1, stride)
    ]
    jobs = [(b, corner) for b in range(len(images)) for corner in corners]  # (image, patch position)
    rows = torch.arange(len(images), device=images.device)
    drops = []
    with torch.no_grad(), eval_mode(model):
        base = model(images).softmax(dim=1)[rows, targets]  # [k, B]
        starts = range(0, len(jobs), batch_size)
        for done, start in enumerate(
            tqdm(starts, desc="occlusion", unit="batch", disable=progress is not True), start=1
        ):
            chunk = jobs[start : start + batch_size]
            which = torch.tensor([b for b, _ in chunk], device=images.device)
            occluded = images[which].clone()
            for i, (_, (top, left)) in enumerate(chunk):
                occluded[i, :, top : top + patch, left : left + patch] = 0
            probabilities = model(occluded).softmax(dim=1)
            drops.append(base[:, which] - probabilities[torch.arange(len(chunk)), targets[:, which]])
            if callable(progress):
                progress(done, len(starts))
    per_job = torch.cat(drops, dim=1).view(len(targets), len(images), len(corners))
    total = torch.zeros(len(targets), len(images), height, width, device=images.device)
    count = torch.zeros(height, width, device=images.device)
    for p, (top, left) in enumerate(corners):
        total[..., top : top + patch, left : left + patch] += per_job[..., p, None, None]
        count[top : top + patch, left : left + patch] += 1
    return total / count.clamp(min=1)
