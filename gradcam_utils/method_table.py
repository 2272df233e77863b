"""The method table: every method once, with what the rest of the package needs to know about it.

`METHODS`, `ALL_METHODS`, `LAYER_METHODS`, the display titles, the command line's choices and the explorers'
menus are all read from `TABLE`. A new method is a function in its family's module and one row here.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from .cam_family import score_cam
from .errors import GradCamError
from .noise_and_paths import integrated_gradients_maps, smoothgrad_maps
from .occlusion import occlusion_sensitivity

Options = Mapping[str, Mapping[str, Any]]  # {method: {option: value}}


class Family(enum.Enum):
    """How a method's maps are made, and so which module holds it."""

    PIXEL = "pixel"  # a backward pass to the input with a rule at the rectifiers: pixel_rules.py
    CAM = "cam"  # weights on one layer's activations: cam_family.py
    MANY_POINTS = "many points"  # pixel maps over many forward passes near x: noise_and_paths.py
    OCCLUSION = "occlusion"  # forward passes only, one class at a time: occlusion.py (not part of explain)


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    family: Family
    layer: bool = False  # it reads one layer's activations, so it takes a layer
    options: Callable[..., Any] | None = None  # the function whose keyword arguments with defaults are its options
    first_five: bool = False  # one of the series' first five (notebooks 01-05), the command line's default

    @property
    def heatmap(self) -> bool:
        """[H, W] maps, drawn as a heatmap over the image; the others are [3, H, W] pixel maps."""
        return self.family in (Family.CAM, Family.OCCLUSION)

    def option_names(self) -> list[str]:
        if self.options is None:
            return []
        return [p.name for p in inspect.signature(self.options).parameters.values() if p.default is not p.empty]


TABLE = (
    Method("vanilla_backprop", "Vanilla backpropagation", Family.PIXEL, first_five=True),
    Method("deconvnet", "Deconvnet", Family.PIXEL, first_five=True),
    Method("guided_backprop", "Guided backpropagation", Family.PIXEL, first_five=True),
    Method("gradcam", "Grad-CAM", Family.CAM, layer=True, first_five=True),
    Method("guided_gradcam", "Guided Grad-CAM", Family.PIXEL, layer=True, first_five=True),
    Method("input_x_gradient", "Gradient x Input", Family.PIXEL),
    Method("smoothgrad", "SmoothGrad", Family.MANY_POINTS, options=smoothgrad_maps),
    Method("integrated_gradients", "Integrated Gradients", Family.MANY_POINTS, options=integrated_gradients_maps),
    Method("cam", "CAM", Family.CAM, layer=True),
    Method("gradcam_pp", "Grad-CAM++", Family.CAM, layer=True),
    Method("xgradcam", "XGrad-CAM", Family.CAM, layer=True),
    Method("hirescam", "HiResCAM", Family.CAM, layer=True),
    Method("layercam", "Layer-CAM", Family.CAM, layer=True),
    Method("scorecam", "Score-CAM", Family.CAM, layer=True, options=score_cam),
    Method("eigencam", "Eigen-CAM", Family.CAM, layer=True),
    Method("occlusion", "Occlusion sensitivity", Family.OCCLUSION, options=occlusion_sensitivity),
)
BY_NAME = {method.name: method for method in TABLE}

METHODS = tuple(m.name for m in TABLE if m.first_five)  # the series' first five
ALL_METHODS = tuple(m.name for m in TABLE if m.family is not Family.OCCLUSION)  # what explain computes
LAYER_METHODS = tuple(m.name for m in TABLE if m.layer)  # maps of one layer's activations: they take a layer
MANY_POINTS = tuple(m.name for m in TABLE if m.family is Family.MANY_POINTS)  # a forward pass over many points near x
# Notebook 11's, after Grad-CAM
CAM_FAMILY = tuple(m.name for m in TABLE if m.family is Family.CAM and m.name != "gradcam")
TITLES = {m.name: m.title for m in TABLE}
HEATMAPS = tuple(m.name for m in TABLE if m.heatmap)


def check_methods(methods: Sequence[str], choices: Sequence[str] = ALL_METHODS) -> list[str]:
    """The methods as a list, or a one-line error naming the first unknown one and the choices."""
    unknown = [m for m in methods if m not in choices]
    if unknown:
        raise GradCamError(f"unknown method {unknown[0]!r}; choose from: {', '.join(choices)}")
    return list(methods)


def check_options(options: Options | None) -> Options:
    """{method: keyword arguments} for the methods that take options, or a one-line error naming the bad key."""
    options = options or {}
    takes = [m.name for m in TABLE if m.options is not None]
    for method, given in options.items():
        if method not in takes:
            raise GradCamError(f"options given for {method!r}, which takes none; options are for: {', '.join(takes)}")
        names = BY_NAME[method].option_names()
        unknown = [name for name in given if name not in names]
        if unknown:
            raise GradCamError(f"unknown option {unknown[0]!r} for {method}; choose from: {', '.join(names)}")
    return options
