"""Vision transformers: their blocks output tokens [B, prefix + N, D], not feature maps [B, C, h, w].

Grad-CAM and its family read a layer's N patch tokens as a sqrt(N) x sqrt(N) grid of D channels,
after dropping the prefix tokens (the class token, and timm's register tokens). Only the class token
feeds the head: at the last block's output the patch tokens' gradients are exactly zero, so the layers
offered stop at the last block's first LayerNorm, which feeds its attention.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, cast

import torch
import torchvision

from .errors import GradCamError

Reshape = Callable[[torch.Tensor], torch.Tensor]  # tokens [B, T, D] -> feature maps [B, C, h, w]


def is_timm_vit(model: torch.nn.Module) -> bool:
    return (
        type(model).__name__ == "VisionTransformer" and hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens")
    )


def token_layers(model: torch.nn.Module) -> list[str]:
    """A ViT's layers for Grad-CAM: every encoder block but the last, then the last block's first norm. [] for other
    models."""
    if isinstance(model, torchvision.models.VisionTransformer):
        blocks, norm = [f"encoder.layers.{name}" for name, _ in model.encoder.layers.named_children()], "ln_1"
    elif is_timm_vit(model):
        blocks, norm = [f"blocks.{i}" for i, _ in enumerate(model.get_submodule("blocks").children())], "norm1"
    else:
        return []
    return blocks[:-1] + [f"{blocks[-1]}.{norm}"]


def token_grid(tokens: torch.Tensor, prefix: int) -> torch.Tensor:
    """[B, prefix + N, D] -> [B, D, sqrt(N), sqrt(N)]: the patch tokens, in the order the patches were cut, as a
    grid."""
    patches = tokens[:, prefix:]
    count = patches.shape[1]
    side = math.isqrt(count)
    if side * side != count:
        raise GradCamError(
            f"the layer's {tokens.shape[1]} tokens less {prefix} prefix token(s) leave {count}, which is no square "
            "grid; "
            "pass reshape=a function from its tokens to [B, C, h, w]"
        )
    return patches.transpose(1, 2).reshape(len(tokens), -1, side, side)


def default_reshape(model: torch.nn.Module) -> Reshape | None:
    """The token-to-grid reshape for a torchvision or timm ViT; None for other models."""
    if isinstance(model, torchvision.models.VisionTransformer):
        return functools.partial(token_grid, prefix=1)
    if is_timm_vit(model):
        return functools.partial(token_grid, prefix=cast(int, model.num_prefix_tokens))
    return None
