"""One interactive explorer for every notebook: class, layer, method, overlay and image widgets over one cached forward
pass."""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as widgets
import matplotlib.figure
import matplotlib.pyplot as plt
import torch

from .baselines import BASELINES
from .display import default_alpha, overlay
from .errors import GradCamError, whole_number
from .explorer_base import STYLE, WIDE, ExplorerBase, method_menu, ranked, sample_image
from .forward_pass import ForwardPass
from .layers import last_layer, list_layers
from .method_table import ALL_METHODS, BY_NAME, TITLES
from .models import ImageSource, class_name, class_names, deprocess, load_image, preprocess


class Explorer(ExplorerBase):
    """The widgets, and the forward pass they all read from.

    The forward pass runs once per image, keeping every listed layer's activations and
    recording the rectifiers; moving a slider then costs one backward pass, never a forward.
    """

    def __init__(
        self,
        method: str = "gradcam",
        model: torch.nn.Module | None = None,
        image: ImageSource | None = None,
        topk: int = 5,
        layer: str | None = None,
        alpha: float | None = None,
    ) -> None:
        self.method = method_menu(ALL_METHODS, method)
        super().__init__(model, topk)
        self.layers = list_layers(self.model)
        if layer is not None and layer not in self.layers:
            raise GradCamError(
                f"the explorer's layer slider has no layer {layer!r}; choose one of: {', '.join(self.layers)}"
            )
        self.topk = whole_number("topk", topk)
        self.alpha.value = default_alpha(method) if alpha is None else alpha
        self.class_picker = widgets.Combobox(
            options=class_names(self.model),
            placeholder="or type any class of the model",
            ensure_option=True,
            description="Any class",
            style=STYLE,
        )
        self.layer = widgets.SelectionSlider(
            options=self.layers,
            value=layer or last_layer(self.model, self.layers),
            description="Layer",
            style=STYLE,
            layout=WIDE,
        )
        self.path = widgets.Text(
            placeholder="path to another image", description="Image path", continuous_update=False, style=STYLE
        )
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload image")
        # SmoothGrad's and Integrated Gradients' own controls, shown only for their method.
        self.samples = widgets.IntSlider(
            value=25, min=1, max=50, description="Samples", style=STYLE, continuous_update=False
        )
        self.noise = widgets.FloatSlider(
            value=0.15, min=0, max=0.5, step=0.05, description="Noise", style=STYLE, continuous_update=False
        )
        self.steps = widgets.IntSlider(
            value=32, min=1, max=64, description="Steps", style=STYLE, continuous_update=False
        )
        self.baseline = widgets.Dropdown(options=BASELINES, value="black", description="Baseline", style=STYLE)
        self.options = {
            "smoothgrad": widgets.HBox([self.samples, self.noise]),
            "integrated_gradients": widgets.HBox([self.steps, self.baseline]),
        }
        self.widget.children = [
            widgets.HBox([self.method, self.alpha]),
            self.class_slider,
            self.class_picker,
            self.layer,
            *self.options.values(),
            widgets.HBox([self.path, self.upload]),
            self.status,
            self.picture_widget,
        ]
        self._quiet = True  # no redraws while the widgets are being set up
        self.set_image(image if image is not None else sample_image())
        self._figure = self._draw_figure()
        for control in (self.layer, self.alpha, self.samples, self.noise, self.steps, self.baseline):
            control.observe(self.update, names="value")
        self.method.observe(self._method_changed, names="value")
        self.class_slider.observe(self._slider_moved, names="value")
        self.class_picker.observe(self.update, names="value")
        self.path.observe(self._path_changed, names="value")
        self.upload.observe(self._uploaded, names="value")
        self._quiet = False
        self.update()

    def set_image(self, image: ImageSource) -> None:
        """Run the one forward pass for a new image and rank its classes."""
        image = load_image(image)
        x = preprocess(image, self.model)
        forward_pass = ForwardPass(self.model, x, layers=self.layers, rectifiers=True)
        self.image, self.forward_pass = image, forward_pass  # only once all of it worked: a bad image changes nothing
        self.picture = deprocess(x, self.model)
        self._probabilities = self.forward_pass.probabilities[0]
        quiet, self._quiet = self._quiet, True
        self.class_slider.options = ranked(self._probabilities, self.topk, self.model)
        self.class_slider.index = 0
        self.class_picker.value = ""
        self._quiet = quiet

    @property
    def target(self) -> int:
        """The class shown: the one typed into the picker, else the one on the slider."""
        name = self.class_picker.value
        names = class_names(self.model)
        return names.index(name) if name in names else int(self.class_slider.value)

    def compute(self) -> torch.Tensor:
        """The current method's map for the current class and layer: one backward pass on the cached forward."""
        targets = self.forward_pass.targets(self.target)
        layer = self.layer.value if BY_NAME[self.method.value].layer else None
        options = {  # seed 0: the same noise at every change, so that only the control moved changes the picture
            "smoothgrad": {"samples": self.samples.value, "noise": self.noise.value, "seed": 0},
            "integrated_gradients": {"steps": self.steps.value, "baseline": self.baseline.value},
        }
        return self.forward_pass.maps([self.method.value], targets, layer, options)[self.method.value][0, 0]

    def update(self, change: Any = None) -> None:
        if self._quiet:
            return
        takes_layer = BY_NAME[self.method.value].layer
        self.layer.disabled = not takes_layer
        for method, box in self.options.items():
            box.layout.display = None if self.method.value == method else "none"
        try:
            map_ = self.compute()
        except GradCamError as exc:
            self.failed(exc)
            return
        target = self.target
        where = f" at {self.layer.value}" if takes_layer else ""
        self._input.set_data(self.picture)
        self._explanation.set_data(overlay(self.picture, map_, self.alpha.value))
        name, probability = class_name(target, self.model), float(self._probabilities[target])
        self._title.set_text(f"{TITLES[self.method.value]}{where}\n{name} (p = {probability:.3f})")
        self.show(self._figure)

    def _draw_figure(self) -> matplotlib.figure.Figure:
        """The figure is built once; each update only swaps its pictures and title."""
        figure, (left, right) = plt.subplots(1, 2, figsize=(7, 3.6))
        plt.close(figure)  # shown only inside the explorer's output, not as a stray figure under the cell
        self._input = left.imshow(self.picture)
        left.set_title("Input", fontsize=10)
        self._explanation = right.imshow(self.picture)
        self._title = right.set_title("\n", fontsize=10)
        for ax in (left, right):
            ax.axis("off")
        figure.tight_layout()
        return figure

    def _method_changed(self, change: dict[str, Any]) -> None:
        quiet, self._quiet = self._quiet, True
        self.alpha.value = default_alpha(change["new"])  # heatmaps over the image, gradients on their own
        self._quiet = quiet
        self.update()

    def _slider_moved(self, change: dict[str, Any]) -> None:
        quiet, self._quiet = self._quiet, True
        self.class_picker.value = ""  # the slider's class wins over a previously typed one
        self._quiet = quiet
        self.update()

    def _load(self, image: ImageSource) -> None:
        try:
            self.set_image(image)
        except GradCamError as exc:
            self.failed(exc)
            return
        self.status.value = ""
        self.update()

    def _path_changed(self, change: dict[str, Any]) -> None:
        if change["new"].strip():
            self._load(change["new"].strip())

    def _uploaded(self, change: dict[str, Any]) -> None:
        files = change["new"]
        # ipywidgets 7 gives {name: {"content": bytes, ...}}, ipywidgets 8 a tuple of {"name", "content", ...}.
        files = [{**file, "name": name} for name, file in files.items()] if isinstance(files, dict) else list(files)
        if files:
            upload = io.BytesIO(bytes(files[-1]["content"]))
            upload.name = files[-1]["name"]  # for the error messages
            self._load(upload)


def explore(
    method: str = "gradcam",
    model: torch.nn.Module | None = None,
    image: ImageSource | None = None,
    topk: int = 5,
    layer: str | None = None,
    alpha: float | None = None,
) -> Explorer:
    """The interactive explorer for `method` (any of ALL_METHODS) on `image` (default: samples/cat_dog.png)."""
    return Explorer(method, model, image, topk, layer, alpha)
