"""The reference inputs that stand for "no evidence": one definition shared by Integrated Gradients' path start,
the deletion and insertion curves' fill, and the explorers.

- black: black pixels, normalised as the model's input.
- zeros (also called grey or mean): all zeros after normalisation, the dataset's mean colour (captum's default).
- blur: x under a Gaussian blur of sigma a tenth of the image's shorter side: only the largest blobs of colour
  survive (Petsiuk et al. 2018 start insertion from a blurred image; Sundararajan et al. 2017 suggest one for IG).
- noise: uniform noise in [0, 1] per pixel and channel, normalised, drawn with a seed.
"""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF

from .errors import GradCamError
from .models import input_config

BASELINES = ("black", "zeros", "blur", "noise")
ALIASES = {"grey": "zeros", "mean": "zeros"}  # one tensor, three names: captum says zeros, a deletion says grey


def generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator of its own on `device`, seeded, or from fresh entropy when seed is None: the caller's random
    state is left alone."""
    made = torch.Generator(device)
    if seed is None:
        made.seed()
    else:
        made.manual_seed(seed)
    return made


def baseline(
    model: torch.nn.Module, x: torch.Tensor, name: str | torch.Tensor = "black", seed: int = 0
) -> torch.Tensor:
    """The baseline for a batch x [B, 3, H, W] of `model`'s normalised inputs, of x's shape: a name in BASELINES
    (or ALIASES), or a tensor of x's shape (or one image's) given as it is."""
    if torch.is_tensor(name):
        if name.shape not in (x.shape, x.shape[1:]):
            raise GradCamError(
                f"baseline has shape {list(name.shape)}; give one of x's shape {list(x.shape[1:])}, or one of: "
                f"{', '.join(BASELINES)}"
            )
        return name.detach().to(x.device, x.dtype).expand_as(x)
    name = ALIASES.get(name, name)
    if name not in BASELINES:
        raise GradCamError(
            f"unknown baseline {name!r}; give a tensor of x's shape or one of: {', '.join(BASELINES)} (grey and mean: "
            "zeros)"
        )
    if name == "zeros":
        return torch.zeros_like(x)
    if name == "blur":
        sigma = min(x.shape[-2:]) / 10
        return TF.gaussian_blur(x, kernel_size=2 * int(2 * sigma) + 1, sigma=sigma)
    _, _, mean, std = input_config(model)
    mean_, std_ = (torch.tensor(v, device=x.device, dtype=x.dtype)[:, None, None] for v in (mean, std))
    if name == "black":
        return ((0 - mean_) / std_).expand_as(x)
    uniform = torch.rand(x.shape, generator=generator(seed, x.device), device=x.device, dtype=x.dtype)
    return (uniform - mean_) / std_
