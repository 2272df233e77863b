"""Pixel maps: d logit_c / d x, read back through the rectifiers with one of the backward rules (recording.Rule).

- vanilla_backprop (Simonyan et al. 2014): the plain gradient.
- deconvnet (Zeiler & Fergus 2014): rectifiers pass max(g, 0), whatever their forward input.
- guided_backprop (Springenberg et al. 2015): rectifiers pass g only where x > 0 and g > 0.
- input_x_gradient (Shrikumar et al. 2016): x times the plain gradient, element by element.
- guided_gradcam (Selvaraju et al. 2017): guided backpropagation times the upsampled Grad-CAM.
Methods that share a rule share its backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .recording import Recording, Rule

RULES = {
    "vanilla_backprop": Rule.VANILLA,
    "deconvnet": Rule.DECONVNET,
    "guided_backprop": Rule.GUIDED,
    "input_x_gradient": Rule.VANILLA,
    "guided_gradcam": Rule.GUIDED,
}


def needs_rectifiers(methods: Sequence[str]) -> bool:
    """True when a method reads a rule other than the plain gradient: the forward pass must route its rectifiers."""
    return any(RULES.get(m, Rule.VANILLA) is not Rule.VANILLA for m in methods)


def finish(method: str, gradient: torch.Tensor, x: torch.Tensor, gradcam: torch.Tensor | None = None) -> torch.Tensor:
    """The method's map from its rule's gradient [k, B, 3, H, W] at the points x [B, 3, H, W]."""
    if method == "input_x_gradient":
        return gradient * x
    if method == "guided_gradcam":
        assert gradcam is not None, "guided_gradcam needs the Grad-CAM maps [k, B, H, W]"
        return gradient * gradcam[:, :, None]
    return gradient


def pixel_maps(
    pass_: Recording, methods: Sequence[str], targets: torch.Tensor, gradcam: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """{method: maps [k, B, 3, H, W]} for pixel methods, one backward pass per rule; `gradcam` [k, B, H, W] for
    guided_gradcam."""
    gradients = {rule: pass_.pixel_map(targets, rule).detach() for rule in dict.fromkeys(RULES[m] for m in methods)}
    x = pass_.input.detach()
    return {m: finish(m, gradients[RULES[m]], x, gradcam) for m in methods}
