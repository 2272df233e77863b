"""Explorers fitted to notebooks 07-09: occlusion's patch and stride, the sanity check's randomization
depth, faithfulness's curve, step and baseline. Each redraws one figure when a control moves, and keeps
what it computed, so that going back to a setting is instant.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import torch

from .baselines import baseline as baseline_of
from .display import default_alpha, overlay
from .errors import GradCamError
from .evaluation import (
    area_under,
    cascade_order,
    deletion_curve,
    insertion_curve,
    pixel_order,
    randomize_layers,
    spearman,
    ssim,
    step_image,
)
from .explorer_base import STYLE, WIDE, ExplorerBase, method_menu, ranked, sample_image
from .forward_pass import explain
from .method_table import ALL_METHODS, MANY_POINTS, TITLES
from .models import ImageSource, class_name, deprocess, load_image, preprocess, run_model
from .occlusion import occlusion_sensitivity

# These take many forward passes per map: seconds to a minute on a CPU
ONE_POINT = tuple(m for m in ALL_METHODS if m not in (*MANY_POINTS, "scorecam"))
PATCHES = (16, 24, 32, 48, 56, 64, 96)
STRIDES = (8, 12, 16, 24, 28, 32, 48)
FILLS = ("grey", "black", "blur", "noise")  # what deleted pixels become, and what insertion starts from: baselines.py


def _choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise GradCamError(f"{name} {value!r} is not offered; choose one of: {', '.join(map(str, choices))}")
    return value


class TopicExplorer(ExplorerBase):
    """The image, its top-5 classes, an overlay alpha, and a picture redrawn by `draw(figure)` whenever a control
    moves."""

    def __init__(self, model: torch.nn.Module | None = None, image: ImageSource | None = None) -> None:
        super().__init__(model, topk=5)
        self.x = preprocess(load_image(image if image is not None else sample_image()), self.model)
        self.picture = deprocess(self.x, self.model)
        with torch.no_grad():
            probabilities = run_model(self.model, self.x)[0].softmax(dim=0)
        self.class_slider.options = ranked(probabilities, 5, self.model)

    def _start(self, rows: Sequence[widgets.Widget], controls: Sequence[widgets.Widget]) -> None:
        self.widget.children = [*rows, self.status, self.picture_widget]
        self.widget.add_class("gu-topic-explorer")  # how the browser test tells it from the main explorer
        for control in controls:
            control.observe(self.update, names="value")
        self.update()

    def draw(self, figure: matplotlib.figure.Figure) -> None:
        raise NotImplementedError

    def update(self, change: Any = None) -> None:
        figure = plt.figure(figsize=(10.5, 3.8), layout="constrained")
        plt.close(figure)  # shown only inside the widget
        try:
            self.draw(figure)
        except GradCamError as exc:
            self.failed(exc)
            return
        self.show(figure)

    def _panel(self, figure: matplotlib.figure.Figure, position: int, picture: np.ndarray, title: str) -> None:
        ax = figure.add_subplot(1, 3, position)
        ax.imshow(picture)
        ax.set_title(title, fontsize=10)
        ax.axis("off")


class OcclusionExplorer(TopicExplorer):
    """Occlusion sensitivity (notebook 07) with the patch size and the stride as sliders.

    Small strides cost many forward passes (a 32-pixel patch at stride 8: 625 of them, about half a
    minute on a 2-core CPU): a progress bar shows while a new setting is computed.
    """

    def __init__(
        self, model: torch.nn.Module | None = None, image: ImageSource | None = None, patch: int = 56, stride: int = 28
    ) -> None:
        super().__init__(model, image)
        self.patch = widgets.SelectionSlider(
            options=PATCHES,
            value=_choice("patch", patch, PATCHES),
            description="Patch (px)",
            style=STYLE,
            continuous_update=False,
        )
        self.stride = widgets.SelectionSlider(
            options=STRIDES,
            value=_choice("stride", stride, STRIDES),
            description="Stride (px)",
            style=STYLE,
            continuous_update=False,
        )
        self.progress = widgets.IntProgress(description="Occluding", style=STYLE, layout=widgets.Layout(display="none"))
        self.maps: dict[tuple[int, int, int], torch.Tensor] = {}
        self._start(
            [self.class_slider, widgets.HBox([self.patch, self.stride]), self.alpha, self.progress],
            [self.class_slider, self.patch, self.stride, self.alpha],
        )

    def occlusion(self, target: int, patch: int, stride: int) -> torch.Tensor:
        key = (target, patch, stride)
        if key not in self.maps:
            self.progress.layout.display = None

            def progress(done: int, total: int) -> None:
                self.progress.max, self.progress.value = total, done

            try:
                self.maps[key] = occlusion_sensitivity(self.model, self.x, target, patch, stride, progress=progress)
            finally:
                self.progress.layout.display = "none"
        return self.maps[key]

    def draw(self, figure: matplotlib.figure.Figure) -> None:
        patch, stride, target = self.patch.value, self.stride.value, self.class_slider.value
        map_ = self.occlusion(target, patch, stride)
        side = self.x.shape[-1]
        positions = ((side - patch) // stride + 1) ** 2
        self._panel(figure, 1, self.picture, "Input")
        self._panel(
            figure,
            2,
            overlay(self.picture, map_, self.alpha.value),
            f"Occlusion of '{class_name(target, self.model)}'\npatch {patch}, stride {stride}: {positions} positions",
        )
        ax = figure.add_subplot(1, 3, 3)
        ax.imshow(self.picture)
        for top in range(0, side - patch + 1, stride):
            ax.axhline(top, color="white", linewidth=0.5)
            ax.axvline(top, color="white", linewidth=0.5)
        ax.add_patch(plt.Rectangle((0, 0), patch, patch, fill=False, edgecolor="red", linewidth=2))
        ax.set_title("Patch (red) and the grid of its corners", fontsize=10)
        ax.axis("off")
        self.status.value = (
            f"heatmap scaled by its own min and max; largest drop in probability {float(map_.max()):.3f}"
        )


class RandomizationExplorer(TopicExplorer):
    """The model-randomization test (notebook 08): the map of the trained model beside the map after
    randomizing down to a chosen layer (cascading, from the classifier down) or that layer alone."""

    def __init__(
        self, model: torch.nn.Module | None = None, image: ImageSource | None = None, method: str = "guided_backprop"
    ) -> None:
        super().__init__(model, image)
        self.method = method_menu(ONE_POINT, method)
        self.order = cascade_order(self.model)
        self.depth = widgets.SelectionSlider(
            options=["trained", *self.order],
            value="trained",
            description="Randomized down to",
            style=STYLE,
            layout=WIDE,
            continuous_update=False,
        )
        self.mode = widgets.ToggleButtons(options=["cascading", "independent"], description="Randomize", style=STYLE)
        self.maps: dict[tuple[str, int, str, str], torch.Tensor] = {}
        self.alpha.value = default_alpha(method)
        self.method.observe(self._method_changed, names="value")
        self._start(
            [widgets.HBox([self.method, self.mode]), self.depth, self.class_slider, self.alpha],
            [self.depth, self.mode, self.class_slider, self.alpha],
        )

    def explanation(self, method: str, target: int, mode: str, depth: str) -> torch.Tensor:
        key = (method, target, mode, depth)
        if key not in self.maps:
            if depth == "trained":
                model = self.model
            else:
                layers = self.order[: self.order.index(depth) + 1] if mode == "cascading" else [depth]
                model = randomize_layers(self.model, layers)
            self.maps[key] = explain(model, self.x, target, methods=[method])[method].detach()
        return self.maps[key]

    def draw(self, figure: matplotlib.figure.Figure) -> None:
        method, target, mode, depth = self.method.value, self.class_slider.value, self.mode.value, self.depth.value
        trained = self.explanation(method, target, mode, "trained")
        randomized = self.explanation(method, target, mode, depth)
        what = (
            ""
            if depth == "trained"
            else f"{depth} and every layer above it"
            if mode == "cascading"
            else f"{depth} alone"
        )
        self._panel(figure, 1, self.picture, "Input")
        self._panel(
            figure,
            2,
            overlay(self.picture, trained, self.alpha.value),
            f"{TITLES[method]}, trained model\n'{class_name(target, self.model)}'",
        )
        self._panel(
            figure,
            3,
            overlay(self.picture, randomized, self.alpha.value),
            f"{depth} randomized" if what else "trained (move the slider)",
        )
        with torch.no_grad():
            size = float(randomized.abs().max() / trained.abs().max().clamp(min=1e-30))
        # A constant map (an all-zero Grad-CAM) has no ranking: said in the status instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            correlation = spearman(trained, randomized, absolute=True)
        rank = "undefined (a constant map)" if math.isnan(correlation) else f"{correlation:.2f}"
        similarity = f"rank correlation of |map| {rank}, SSIM {ssim(trained, randomized):.2f}"
        scale = f"max |map| {size:.2g} x the trained one's. Each map scaled on its own."
        self.status.value = f"randomized: {what or 'nothing'}. {similarity}; {scale}"

    def _method_changed(self, change: dict[str, Any]) -> None:
        self.alpha.value = default_alpha(change["new"])  # redraws too


class FaithfulnessExplorer(TopicExplorer):
    """Deletion and insertion (notebook 09): the image the model sees at each step of the curve, the
    baseline that deleted pixels become (or that insertion starts from), and the curve beside a random map's."""

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        image: ImageSource | None = None,
        method: str = "gradcam",
        curve: str = "deletion",
        baseline: str = "grey",
        steps: int = 16,
    ) -> None:
        super().__init__(model, image)
        self.method = method_menu(ONE_POINT, method)
        self.curve = widgets.ToggleButtons(
            options=["deletion", "insertion"],
            value=_choice("curve", curve, ("deletion", "insertion")),
            description="Curve",
            style=STYLE,
        )
        self.baseline = widgets.Dropdown(
            options=FILLS, value=_choice("baseline", baseline, FILLS), description="Baseline", style=STYLE
        )
        self.step = widgets.IntSlider(value=steps // 4, min=0, max=steps, description="Step", style=STYLE, layout=WIDE)
        self.steps = steps
        self.random = torch.rand(self.x.shape[-2:], generator=torch.Generator().manual_seed(0)).to(self.x.device)
        self.curves: dict[tuple[str, int, str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self.maps: dict[tuple[str, int], torch.Tensor] = {}
        self._start(
            [widgets.HBox([self.method, self.curve]), self.baseline, self.step, self.class_slider],
            [self.method, self.curve, self.baseline, self.step, self.class_slider],
        )

    def saliency(self, method: str, target: int) -> torch.Tensor:
        if method == "random":
            return self.random
        if (method, target) not in self.maps:
            self.maps[method, target] = explain(self.model, self.x, target, methods=[method])[method].detach()
        return self.maps[method, target]

    def points(self, method: str, target: int, curve: str, baseline: str) -> tuple[torch.Tensor, torch.Tensor]:
        key = (method, target, curve, baseline)
        if key not in self.curves:
            measure = deletion_curve if curve == "deletion" else insertion_curve
            self.curves[key] = measure(
                self.model, self.x, self.saliency(method, target), target, steps=self.steps, baseline=baseline
            )
        return self.curves[key]

    def draw(self, figure: matplotlib.figure.Figure) -> None:
        method, target, curve, baseline = (
            self.method.value,
            self.class_slider.value,
            self.curve.value,
            self.baseline.value,
        )
        saliency = self.saliency(method, target)
        start, finish = (
            (self.x, baseline_of(self.model, self.x, baseline))
            if curve == "deletion"
            else (baseline_of(self.model, self.x, baseline), self.x)
        )
        order = pixel_order(saliency)
        count = round(order.numel() * self.step.value / self.steps)
        seen = deprocess(step_image(start, finish, order, count)[None], self.model)
        self._panel(
            figure,
            1,
            overlay(self.picture, saliency, default_alpha(method)),
            f"{TITLES[method]}, '{class_name(target, self.model)}'",
        )
        verb, better = ("deleted", "lower") if curve == "deletion" else ("inserted", "higher")
        self._panel(figure, 2, seen, f"What the model sees: {count / order.numel():.0%} {verb}\n(baseline: {baseline})")
        ax = figure.add_subplot(1, 3, 3)
        for name, style, colour in ((method, "-", None), ("random", "--", "grey")):
            fractions, probabilities = self.points(name, target, curve, baseline)
            label = f"{TITLES.get(name, 'random map')} (AUC {area_under(fractions, probabilities):.2f})"
            ax.plot(fractions, probabilities, linestyle=style, color=colour, label=label)
        fractions, probabilities = self.points(method, target, curve, baseline)
        ax.plot(fractions[self.step.value], probabilities[self.step.value], "o", color="red")
        ax.set_xlabel(f"fraction of pixels {verb}")
        ax.set_ylabel(f"p('{class_name(target, self.model)}')")
        ax.set_title(f"{curve.capitalize()}: {better} AUC is more faithful", fontsize=10)
        ax.legend(fontsize=8)
        self.status.value = (
            f"the red point: p = {float(probabilities[self.step.value]):.3f} at step {self.step.value} of {self.steps}"
        )


def explore_occlusion(
    model: torch.nn.Module | None = None, image: ImageSource | None = None, patch: int = 56, stride: int = 28
) -> OcclusionExplorer:
    """Notebook 07's explorer: occlusion sensitivity with patch size and stride sliders."""
    return OcclusionExplorer(model, image, patch, stride)


def explore_randomization(
    model: torch.nn.Module | None = None, image: ImageSource | None = None, method: str = "guided_backprop"
) -> RandomizationExplorer:
    """Notebook 08's explorer: a map before and after randomizing the model down to a layer."""
    return RandomizationExplorer(model, image, method)


def explore_faithfulness(
    model: torch.nn.Module | None = None,
    image: ImageSource | None = None,
    method: str = "gradcam",
    curve: str = "deletion",
    baseline: str = "grey",
    steps: int = 16,
) -> FaithfulnessExplorer:
    """Notebook 09's explorer: deletion or insertion, step by step, with the baseline as a choice."""
    return FaithfulnessExplorer(model, image, method, curve, baseline, steps)
