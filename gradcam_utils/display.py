"""Maps -> pictures: the min-max normalisation the papers use, heatmap overlays, and grids of classes x methods."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from .models import GradCamError

TITLES = {
    "vanilla_backprop": "Vanilla backpropagation",
    "deconvnet": "Deconvnet",
    "guided_backprop": "Guided backpropagation",
    "gradcam": "Grad-CAM",
    "guided_gradcam": "Guided Grad-CAM",
    "occlusion": "Occlusion sensitivity",
}
CAM_METHODS = ("gradcam", "occlusion")


def normalize(map_):
    """A map scaled to [0, 1] by its own min and max, as numpy: [3, H, W] -> H x W x 3, [H, W] -> H x W.

    A constant map (an all-zero gradient) becomes all zeros rather than 0/0 = NaN.
    """
    array = map_.detach().float().cpu().numpy() if torch.is_tensor(map_) else np.asarray(map_, dtype=np.float32)
    if array.ndim == 3:
        array = array.transpose(1, 2, 0)
    array = array - array.min()
    top = array.max()
    return array / top if top > 0 else np.zeros_like(array)


def gradient_image(gradient):
    """A [3, H, W] gradient as an H x W x 3 picture, the way the Grad-CAM authors' code shows it:
    centred on grey (no gradient), one standard deviation = 0.1, clipped to [0, 1].
    Plain min-max would let a few extreme pixels wash everything else out to flat grey."""
    array = gradient.detach().float().cpu().numpy().transpose(1, 2, 0)
    array = (array - array.mean()) / (array.std() + 1e-5)
    return np.clip(0.5 + 0.1 * array, 0, 1)


def heatmap(cam, cmap="jet"):
    """A [H, W] map as an H x W x 3 colour image."""
    return matplotlib.colormaps[cmap](normalize(cam))[..., :3]


def overlay(image, map_, alpha=0.5, cmap="jet"):
    """The map drawn over the image (H x W x 3 in [0, 1]) with opacity alpha: a heatmap for a [H, W] map,
    the gradient image for a [3, H, W] one."""
    map_ = torch.as_tensor(map_)
    image = np.asarray(image, dtype=np.float64)
    if map_.dim() not in (2, 3) or map_.shape[-2:] != image.shape[:2]:
        size = f"{image.shape[0]} x {image.shape[1]}"
        raise GradCamError(f"a map of shape {list(map_.shape)} does not fit an image of {size}; give [H, W] or [3, H, W] at the image's size")
    shown = heatmap(map_, cmap) if map_.dim() == 2 else gradient_image(map_)
    return (1 - alpha) * image + alpha * shown


def default_alpha(method):
    """Heatmaps are read over the image; pixel-space gradients are read on their own."""
    return 0.5 if method in CAM_METHODS else 1.0


def plot_grid(image, maps, labels, alpha=None, title=None, size=2.2):
    """A figure with one row per method and one column per class, as in the seed's README.

    `maps`: {method: [k, ...] maps}; `labels`: the k column titles.
    """
    methods = list(maps)
    short = [m for m in methods if len(maps[m]) != len(labels)]
    if short:
        raise GradCamError(f"{len(labels)} labels but {len(maps[short[0]])} {short[0]} maps; give one label per map")
    fig, axes = plt.subplots(len(methods), len(labels), figsize=(size * len(labels), size * len(methods) + 0.4), squeeze=False)
    for row, method in enumerate(methods):
        for col, label in enumerate(labels):
            ax = axes[row, col]
            ax.imshow(overlay(image, maps[method][col], default_alpha(method) if alpha is None else alpha))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label, fontsize=9)
            if col == 0:
                ax.set_ylabel(TITLES.get(method, method), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def class_labels(rows):
    """Column titles "#1 bull mastiff (0.717)" from predict()'s rows."""
    return [f"#{rank} {name} ({probability:.3f})" for rank, (_, name, probability) in enumerate(rows, start=1)]
