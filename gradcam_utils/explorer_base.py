"""What every explorer of the notebooks shares: the model and image, a class slider of the top classes, an overlay
alpha, a status line and one picture, redrawn as a PNG in an Image widget.

A PNG in an Image widget, not a figure displayed into an Output widget: headless runs (nbclient, nbconvert)
sometimes hung waiting on the Output widget's messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import matplotlib.figure
import torch
from IPython.display import display

from .display import figure_png
from .errors import GradCamError
from .method_table import TITLES
from .models import class_name, load_model

STYLE = {"description_width": "initial"}
WIDE = widgets.Layout(width="480px")


def sample_image() -> Path:
    """samples/cat_dog.png: beside the package in a checkout, inside it (gradcam_utils/samples) in an installed
    wheel."""
    here = Path(__file__).resolve().parent
    for path in (here.parent / "samples" / "cat_dog.png", here / "samples" / "cat_dog.png"):
        if path.exists():
            return path
    raise GradCamError(
        "the sample image samples/cat_dog.png is not installed with gradcam_utils; pass image=<a path or a PIL image>"
    )


def method_menu(methods: Sequence[str], value: str) -> widgets.Dropdown:
    """A dropdown of the methods' titles, or a one-line error for a method it does not offer."""
    if value not in methods:
        raise GradCamError(f"unknown method {value!r}; choose one of: {', '.join(methods)}")
    return widgets.Dropdown(options=[(TITLES[m], m) for m in methods], value=value, description="Method", style=STYLE)


def ranked(probabilities: torch.Tensor, topk: int, model: torch.nn.Module | None = None) -> list[tuple[str, int]]:
    """The class slider's options: ("1. bull mastiff (0.717)", 243), best first, named as the model names them."""
    top = probabilities.topk(min(topk, probabilities.numel()))
    return [
        (f"{rank}. {class_name(int(i), model)} ({float(p):.3f})", int(i))
        for rank, (p, i) in enumerate(zip(*top), start=1)
    ]


class ExplorerBase:
    """The widgets every explorer has. A subclass lays them out in `self.widget` and draws into `self.show`."""

    def __init__(self, model: torch.nn.Module | None, topk: int) -> None:
        self.model = model if model is not None else load_model()
        self.class_slider = widgets.SelectionSlider(
            options=[("-", 0)], description=f"Class (top-{topk})", style=STYLE, layout=WIDE
        )
        self.alpha = widgets.FloatSlider(value=0.5, min=0, max=1, step=0.05, description="Overlay alpha", style=STYLE)
        self.status = widgets.Label()
        self.picture_widget = widgets.Image(format="png")
        self.widget = widgets.VBox()

    def show(self, figure: matplotlib.figure.Figure) -> None:
        self.picture_widget.value = figure_png(figure)

    def failed(self, exc: Exception) -> None:
        self.status.value = f"Error: {exc}"

    def _ipython_display_(self) -> Any:
        display(self.widget)
