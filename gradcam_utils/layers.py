"""Layers, by the names that model.named_modules() prints: which ones have feature maps, and the usual Grad-CAM
choice."""

from __future__ import annotations

from typing import Any

import torch

from .errors import GradCamError, close_matches
from .models import as_batch, check_model, example_input, run_model
from .vit import token_layers


def get_layer(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """The submodule called `name`, or a one-line error with the close matches."""
    check_model(model)
    try:
        if isinstance(name, str) and name:
            return model.get_submodule(name)
    except AttributeError:
        pass
    names = [n for n, _ in model.named_modules()][1:]
    raise GradCamError(
        f"{type(model).__name__} has no layer named {name!r}{close_matches(name, names)}; list_layers(model) shows "
        "the usual choices"
    )


def list_layers(model: torch.nn.Module, x: torch.Tensor | None = None) -> list[str]:
    """Names of the layers with a spatial [B, C, H, W] output, from the stem to the last block, in execution order.

    These are the model's top-level children, except that when exactly one of them is a
    plain nn.Sequential (vgg's `features`, EfficientNet's `blocks`), it is the trunk and
    its children are listed instead: features.0 ... features.36, blocks.0 ... blocks.6.
    `x`: an input to trace with (default: a blank image of the model's input size).
    A torchvision or timm vision transformer lists its encoder blocks instead (see vit.py).
    """
    check_model(model)
    tokens = token_layers(model)
    if tokens:
        return tokens
    candidates = layer_candidates(model)
    spatial: list[str] = []  # in the order their outputs appear

    def keep(name: str) -> Any:
        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            if is_spatial(output) and name not in spatial:
                spatial.append(name)

        return hook

    handles = [module.register_forward_hook(keep(name)) for name, module in candidates.items()]
    try:
        with torch.no_grad():
            run_model(model, as_batch(model, x) if x is not None else example_input(model))
    finally:
        for handle in handles:
            handle.remove()
    return choose_layers(candidates, spatial)


def layer_candidates(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """{name: module} that list_layers considers: the top-level children and those of top-level nn.Sequentials."""
    candidates = {}
    for name, child in model.named_children():
        if isinstance(child, (torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d)):
            continue  # the head's pooling: its map is the last block's, resampled
        candidates[name] = child
        if type(child) is torch.nn.Sequential:
            candidates.update({f"{name}.{sub}": grandchild for sub, grandchild in child.named_children()})
    return candidates


def is_spatial(output: Any) -> bool:
    return torch.is_tensor(output) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1


def choose_layers(candidates: dict[str, torch.nn.Module], spatial: list[str]) -> list[str]:
    """list_layers's answer, from the candidates whose outputs were spatial, in the order they appeared."""
    top = [name for name in spatial if "." not in name]
    trunks = [name for name in top if type(candidates[name]) is torch.nn.Sequential]
    if len(trunks) == 1:
        return [name for name in spatial if name != trunks[0] and ("." not in name or name.startswith(trunks[0] + "."))]
    return top


def default_layer(model: torch.nn.Module, x: torch.Tensor | None = None) -> str:
    """The last layer with a spatial output: the usual Grad-CAM choice."""
    return last_layer(model, list_layers(model, x))


def last_layer(model: torch.nn.Module, layers: list[str]) -> str:
    if not layers:
        raise GradCamError(
            f"{type(model).__name__} has no layer with a spatial [B, C, H, W] output, so Grad-CAM has no feature maps "
            "to weight"
        )
    return layers[-1]
