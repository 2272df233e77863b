"""Maps -> pictures: the min-max normalisation the papers use, heatmap overlays, grids of classes x methods, and
per-image results as strips."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from .errors import GradCamError
from .method_table import HEATMAPS, TITLES
from .models import Prediction
from .summary import bootstrap


def normalize(map_: Any) -> np.ndarray:
    """A map scaled to [0, 1] by its own min and max, as numpy: [3, H, W] -> H x W x 3, [H, W] -> H x W.

    A constant map (an all-zero gradient) becomes all zeros rather than 0/0 = NaN.
    """
    array = map_.detach().float().cpu().numpy() if torch.is_tensor(map_) else np.asarray(map_, dtype=np.float32)
    if array.ndim == 3:
        array = array.transpose(1, 2, 0)
    array = array - array.min()
    top = array.max()
    return array / top if top > 0 else np.zeros_like(array)


def gradient_image(gradient: Any) -> np.ndarray:
    """A [3, H, W] gradient as an H x W x 3 picture, the way the Grad-CAM authors' code shows it:
    centred on grey (no gradient), one standard deviation of the map's own = 0.1, clipped to [0, 1].
    Plain min-max would let a few extreme pixels wash everything else out to flat grey.

    Scale-free: a map times 1e-9 looks the same (the gradients of a deep or randomised model can be
    that small). Only a map that is constant everywhere is flat grey.
    """
    array = torch.as_tensor(gradient).detach().double().cpu().numpy().transpose(1, 2, 0)
    array = array - array.mean()
    spread = array.std()
    array = array / spread if spread > 1e-12 * np.abs(array).max() else np.zeros_like(array)
    return np.clip(0.5 + 0.1 * array, 0, 1).astype(np.float32)


def heatmap(cam: Any, cmap: str = "jet") -> np.ndarray:
    """A [H, W] map as an H x W x 3 colour image."""
    return matplotlib.colormaps[cmap](normalize(cam))[..., :3]


def overlay(image: Any, map_: Any, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """The map drawn over the image (H x W x 3 in [0, 1]) with opacity alpha: a heatmap for a [H, W] map,
    the gradient image for a [3, H, W] one."""
    map_ = torch.as_tensor(map_)
    image = np.asarray(image, dtype=np.float64)
    if map_.dim() not in (2, 3) or map_.shape[-2:] != image.shape[:2]:
        size = f"{image.shape[0]} x {image.shape[1]}"
        raise GradCamError(
            f"a map of shape {list(map_.shape)} does not fit an image of {size}; give [H, W] or [3, H, W] at the "
            "image's size"
        )
    shown = heatmap(map_, cmap) if map_.dim() == 2 else gradient_image(map_)
    return (1 - alpha) * image + alpha * shown


def figure_png(figure: matplotlib.figure.Figure, dpi: int = 72) -> bytes:
    """The figure as PNG bytes, for an explorer's Image widget."""
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=dpi)
    return png.getvalue()


def default_alpha(method: str) -> float:
    """Heatmaps are read over the image; pixel-space gradients are read on their own."""
    return 0.5 if method in HEATMAPS else 1.0


def plot_grid(
    image: Any,
    maps: Mapping[str, Any],
    labels: Sequence[str],
    alpha: float | None = None,
    title: str | None = None,
    size: float = 3.2,
    note: bool | str = True,
    show_input: bool = True,
) -> matplotlib.figure.Figure:
    """A figure with one row per method and one column per class, as in the seed's README, the input
    photo in a first column (a pixel map drawn on its own hides the photo).

    `maps`: {method: [k, ...] maps}; `labels`: the k column titles; `size`: inches per panel (3.2: about
    the 224 pixels of the input at 72 dpi). `note`: a line at the foot saying how the maps are scaled
    (True: scaling_note's), or a text of your own, or False for none.
    """
    methods = list(maps)
    short = [m for m in methods if len(maps[m]) != len(labels)]
    if short:
        raise GradCamError(f"{len(labels)} labels but {len(maps[short[0]])} {short[0]} maps; give one label per map")
    first = int(bool(show_input))
    columns = first + len(labels)
    fig, axes = plt.subplots(len(methods), columns, figsize=(size * columns, size * len(methods) + 0.6), squeeze=False)
    for row, method in enumerate(methods):
        if first:
            axes[row, 0].imshow(image)
        for col, label in enumerate(labels):
            axes[row, first + col].imshow(
                overlay(image, maps[method][col], default_alpha(method) if alpha is None else alpha)
            )
            if row == 0:
                axes[row, first + col].set_title(label, fontsize=10)
        axes[row, 0].set_ylabel(TITLES.get(method, method), fontsize=10)
    if first:
        axes[0, 0].set_title("input", fontsize=10)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=12)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, 0.4 / height if note else 0, 1, 1 - 0.35 / height if title else 1))
    if note:
        fig.text(
            0.5, 0.005, scaling_note(methods) if note is True else note, ha="center", va="bottom", fontsize=9, wrap=True
        )
    return fig


def scaling_note(methods: Sequence[str]) -> str:
    """How plot_grid and overlay scale each kind of map, for the foot of a figure."""
    heat = [m for m in methods if m in HEATMAPS]
    parts = ["heatmaps: each min-max scaled over its own range"] if heat else []
    if len(heat) < len(methods):
        parts.append("pixel maps: each centred on grey (0), black to white = -5 to +5 of its own standard deviations")
    return "Every map is scaled on its own: " + "; ".join(parts) + "."


def class_labels(rows: Sequence[Prediction]) -> list[str]:
    """Column titles "#1 bull mastiff (0.717)" from predict()'s rows."""
    return [f"#{rank} {name} ({probability:.3f})" for rank, (_, name, probability) in enumerate(rows, start=1)]


def strip_plot(
    ax: matplotlib.axes.Axes, rows: Any, measure: str, methods: Sequence[str], seed: int = 0
) -> matplotlib.axes.Axes:
    """One row per method: every image's value of `measure` as a dot (jittered up and down, so that equal values stay
    visible), and the mean with its 95% bootstrap interval as a black bar. `rows`: evaluate(..., per_image=True)'s."""
    generator = np.random.default_rng(seed)
    for y, method in enumerate(methods):
        values = rows[(rows["method"] == method) & (rows["measure"] == measure)]["value"].dropna().to_numpy()
        ax.scatter(values, y + generator.uniform(-0.25, 0.25, len(values)), s=6, alpha=0.35, color=f"C{y % 10}")
        if len(values):
            low, high = bootstrap(torch.tensor(values))
            ax.errorbar(values.mean(), y, xerr=[[values.mean() - low], [high - values.mean()]], fmt="o", color="black",
                        markersize=4, capsize=3)  # fmt: skip
    ax.set_yticks(range(len(methods)), [TITLES.get(m, m) for m in methods], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel(measure)
    return ax
