"""One function per method, each `explain` with one method: the names the notebooks and most users call.

Shapes as for `explain`: one image and one class (or none: the predicted one) give one map; a list of k classes
puts [k] in front; a batch of B images puts [B] in front of that. Pixel maps are [3, H, W], the Grad-CAM family's
[H, W] at the input's size.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import torch

from .forward_pass import explain
from .recording import Target
from .vit import Reshape


def _one(
    name: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target,
    layer: str | None = None,
    reshape: Reshape | None = None,
    /,
    **options: Any,
) -> torch.Tensor:
    return explain(
        model, x, target, layer, methods=name, options={name: options} if options else None, reshape=reshape
    )[name]


def vanilla_backprop(model: torch.nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
    """d logit_target / d x (Simonyan et al. 2014)."""
    return _one("vanilla_backprop", model, x, target)


def deconvnet(model: torch.nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
    """The deconvnet backward (Zeiler & Fergus 2014): rectifiers pass max(g, 0), whatever their forward input."""
    return _one("deconvnet", model, x, target)


def guided_backprop(model: torch.nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015): rectifiers pass g only where x > 0 and g > 0."""
    return _one("guided_backprop", model, x, target)


def input_x_gradient(model: torch.nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
    """Gradient x Input (Shrikumar et al. 2016): x times d logit_target / d x, element by element."""
    return _one("input_x_gradient", model, x, target)


def gradcam(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    layer: str | None = None,
    reshape: Reshape | None = None,
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) at `layer` (default: the last layer with a spatial output), upsampled to x.
    `reshape`: tokens to feature maps, for transformers other than torchvision's and timm's ViTs (see vit.py)."""
    return _one("gradcam", model, x, target, layer, reshape)


def guided_gradcam(
    model: torch.nn.Module, x: torch.Tensor, target: Target = None, layer: str | None = None
) -> torch.Tensor:
    """Guided backpropagation times the upsampled Grad-CAM (Selvaraju et al. 2017)."""
    return _one("guided_gradcam", model, x, target, layer)


def cam(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    layer: str | None = None,
    reshape: Reshape | None = None,
) -> torch.Tensor:
    """CAM (Zhou et al. 2016): the classifier's weights on `layer`, which must feed global average pooling and then the
    linear classifier."""
    return _one("cam", model, x, target, layer, reshape)


def gradcam_pp(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    layer: str | None = None,
    reshape: Reshape | None = None,
) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018, Eq. 19): positive gradients weighted per position, for several instances of
    a class."""
    return _one("gradcam_pp", model, x, target, layer, reshape)


def xgradcam(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    layer: str | None = None,
    reshape: Reshape | None = None,
) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020): gradients averaged with the activations as weights."""
    return _one("xgradcam", model, x, target, layer, reshape)


def hirescam(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    layer: str | None = None,
    reshape: Reshape | None = None,
) -> torch.Tensor:
    """HiResCAM (Draelos and Carin 2020): gradient times activation at each position, summed over channels."""
    return _one("hirescam", model, x, target, layer, reshape)


def layercam(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    layer: str | None = None,
    reshape: Reshape | None = None,
) -> torch.Tensor:
    """Layer-CAM (Jiang et al. 2021): positive gradient times activation at each position: sharp maps at early layers
    too."""
    return _one("layercam", model, x, target, layer, reshape)


def scorecam(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    layer: str | None = None,
    batch_size: int = 32,
    progress: bool = True,
    reshape: Reshape | None = None,
) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020): no gradients; one masked forward pass per channel of `layer`, `batch_size` at a
    time."""
    return _one("scorecam", model, x, target, layer, reshape, batch_size=batch_size, progress=progress)


def eigencam(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    layer: str | None = None,
    reshape: Reshape | None = None,
) -> torch.Tensor:
    """Eigen-CAM (Muhammad and Yeasin 2020): the activations' first principal component. Class-agnostic: every target
    gets the same map."""
    return _one("eigencam", model, x, target, layer, reshape)


def smoothgrad(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    method: str = "vanilla_backprop",
    samples: int = 25,
    noise: float = 0.15,
    squared: bool = False,
    seed: int | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the mean of `method`'s map over `samples` noisy copies of x.

    `method`: vanilla_backprop, deconvnet, guided_backprop or input_x_gradient. `noise`: the standard
    deviation as a fraction of each image's range. `seed`: the same maps every time, without touching
    torch's random state. `batch_size`: noisy copies per forward pass (default: 4 on a CPU, 32 on a GPU).
    """
    options = {
        "method": method,
        "samples": samples,
        "noise": noise,
        "squared": squared,
        "seed": seed,
        "batch_size": batch_size,
    }
    return _one("smoothgrad", model, x, target, None, None, **options)


@overload
def integrated_gradients(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = ...,
    baseline: str | torch.Tensor = ...,
    steps: int = ...,
    batch_size: int | None = ...,
    seed: int = ...,
    return_delta: Literal[False] = ...,
) -> torch.Tensor: ...
@overload
def integrated_gradients(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = ...,
    baseline: str | torch.Tensor = ...,
    steps: int = ...,
    batch_size: int | None = ...,
    seed: int = ...,
    *,
    return_delta: Literal[True],
) -> tuple[torch.Tensor, torch.Tensor]: ...
def integrated_gradients(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    baseline: str | torch.Tensor = "black",
    steps: int = 32,
    batch_size: int | None = None,
    seed: int = 0,
    return_delta: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrated Gradients (Sundararajan et al. 2017) from `baseline` to x, in `steps` Gauss-Legendre points.

    `baseline`: a tensor of x's shape, or a name from baselines.py: "black" (black pixels), "zeros" (the dataset's
    mean colour, captum's default), "blur" (a strongly blurred x) or "noise" (uniform noise drawn with `seed`).
    `batch_size`: path points per forward pass (default: 4 on a CPU, 32 on a GPU). With `return_delta`, also the
    completeness gap sum(attributions) - (logit(x) - logit(baseline)), one number per map.
    """
    options = {
        "integrated_gradients": {
            "baseline": baseline,
            "steps": steps,
            "batch_size": batch_size,
            "seed": seed,
            "return_delta": return_delta,
        }
    }
    result = explain(model, x, target, methods="integrated_gradients", options=options)
    return (
        (result["integrated_gradients"], result["integrated_gradients_gap"])
        if return_delta
        else result["integrated_gradients"]
    )
