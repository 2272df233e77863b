"""Every method from one recorded forward pass: `ForwardPass.maps` and `explain`.

The k target classes share the forward pass. The Grad-CAM family's k backward passes, from the logits down
to one layer, run as one batched pass; the pixel maps take one backward pass per rule and class on a CPU,
one batched pass per rule on a GPU (see Recording.gradients). SmoothGrad and Integrated Gradients run forward
passes of their own over points near x.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from . import cam_family, noise_and_paths, pixel_rules
from .errors import GradCamError
from .layers import default_layer
from .method_table import BY_NAME, METHODS, Family, Options, check_methods, check_options
from .recording import Recording, Target, is_single
from .vit import Reshape, default_reshape


class ForwardPass(Recording):
    """One forward pass of `model` on `x`, kept so that any number of explanations can be read from it:
    the recording core (see Recording for the arguments) and the method families on top of it."""

    gaps: torch.Tensor | None = None  # Integrated Gradients' completeness gaps [k, B], when its options ask for them

    def cam(self, targets: torch.Tensor, layer: str, upsample: bool = True) -> torch.Tensor:
        """Grad-CAM [k, B, h, w] at `layer` (Selvaraju et al. 2017), bilinearly upsampled to the input size by
        default."""
        return cam_family.cams(self, ["gradcam"], targets, layer, upsample_to_input=upsample)["gradcam"]

    def maps(
        self, methods: Sequence[str], targets: torch.Tensor, layer: str | None = None, options: Options | None = None
    ) -> dict[str, Any]:
        """{method: maps [k, B, ...]} for some of ALL_METHODS, running each backward pass they need once.

        `options`: {method: keyword arguments} for SmoothGrad and Integrated Gradients (see noise_and_paths.py), and
        Score-CAM.
        Integrated Gradients' completeness gaps [k, B], when its options ask for return_delta, are left in `self.gaps`.
        """
        check_methods(methods)
        options = check_options(options)
        families: dict[Family, list[str]] = {family: [] for family in Family}
        for method in methods:
            families[BY_NAME[method].family].append(method)
        cams = families[Family.CAM] + (["gradcam"] if "guided_gradcam" in methods and "gradcam" not in methods else [])
        if cams and layer is None:
            raise GradCamError(
                f"{cams[0]} weighs one layer's activations: give layer=, one of the layers this pass recorded"
            )
        maps = cam_family.cams(self, cams, targets, layer, options) if cams and layer is not None else {}
        if families[Family.PIXEL]:
            maps.update(pixel_rules.pixel_maps(self, families[Family.PIXEL], targets, maps.get("gradcam")))
        for method in families[Family.MANY_POINTS]:
            if method == "smoothgrad":
                maps[method] = noise_and_paths.smoothgrad_maps(self, targets, **options.get(method, {}))
            else:
                maps[method], self.gaps = noise_and_paths.integrated_gradients_maps(
                    self, targets, **options.get(method, {})
                )
        return {m: maps[m] for m in methods}


def explain(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    layer: str | None = None,
    methods: str | Sequence[str] = METHODS,
    topk: int | None = None,
    options: Options | None = None,
    reshape: Reshape | None = None,
) -> dict[str, torch.Tensor]:
    """Several methods from one forward pass: {method: maps}, plus "targets" (the class indices used).

    Shapes: a single image gives [k, ...] for a list of k classes (or topk), and one map for an
    int target or none (the predicted class); a batch of B images puts [B, ...] in front.
    `options`: {method: keyword arguments} for "smoothgrad" and "integrated_gradients", which run
    forward passes of their own over points near x (see noise_and_paths.py), and "scorecam" (cam_family.py). With
    Integrated
    Gradients' option return_delta=True comes "integrated_gradients_gap", the completeness gap of each map.
    `reshape`: tokens to feature maps, for a transformer other than torchvision's and timm's ViTs (see ForwardPass).
    """
    methods = check_methods([methods] if isinstance(methods, str) else list(methods))
    rows = [BY_NAME[m] for m in methods]
    takes_layer = any(row.layer for row in rows)
    rectifiers = pixel_rules.needs_rectifiers(methods)
    pixel_maps = any(row.family is Family.PIXEL for row in rows)
    find_default_layer = takes_layer and layer is None
    if find_default_layer and (reshape or default_reshape(model)):  # a transformer: no feature maps to find on the way
        layer, find_default_layer = default_layer(model), False
    # Grad-CAM alone at a given layer records the graph from that layer only; finding the default
    # layer on the way needs it from the input, as the pixel maps do.
    layers = [layer] if takes_layer and layer is not None else []
    pass_ = ForwardPass(
        model, x, layers, rectifiers, find_default_layer, from_input=pixel_maps or find_default_layer, reshape=reshape
    )
    if find_default_layer:
        layer = pass_.default_layer
        assert layer is not None  # found on the way, or the pass raised
        if layer not in pass_.activations:  # changed in place after it ran (densenet), or run twice: record again
            pass_ = ForwardPass(model, x, [layer], rectifiers, from_input=pixel_maps, reshape=reshape)
    targets = pass_.targets(target, topk)
    single_class = is_single(target) and topk is None
    single_image = pass_.input.shape[0] == 1

    def shaped(maps: torch.Tensor) -> torch.Tensor:  # [k, B, ...] -> the shapes promised above
        maps = maps.transpose(0, 1)
        if single_class:
            maps = maps[:, 0]
        return maps[0] if single_image else maps

    result = {method: shaped(maps) for method, maps in pass_.maps(methods, targets, layer, options).items()}
    result["targets"] = shaped(targets[..., None])[..., 0]
    if pass_.gaps is not None:
        result["integrated_gradients_gap"] = shaped(pass_.gaps[..., None])[..., 0]
    return result
