"""Which explanation should I trust? `gu.evaluate`: every method through the same tests (notebook 12), on a dataset
with known evidence or on photos with boxes drawn by hand, reported the same way.

The tests are dataset_evaluation.py's (localisation, deletion and insertion both ways, model and data randomization,
the random logit, cost, beside three image-blind maps); summary.py states the results with n, intervals and paired
comparisons. Photos become such a dataset (`PhotoSet`): each preprocessed for the model and explained for its top-1
class (or the class given), its evidence mask the boxes of samples/boxes.json that stand for that class. A photo whose
class no box stands for has an empty mask: it counts for every test but localisation, where it is NaN, counted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from .dataset_evaluation import DATASET_METRICS, evaluate_dataset
from .errors import GradCamError
from .method_table import ALL_METHODS, check_methods
from .models import ImageSource, class_index, input_config, load_image, preprocess, run_model
from .summary import summarize

Images = Union[Mapping[str, ImageSource], Sequence[ImageSource], ImageSource, Dataset, DataLoader]
Boxes = dict[
    str, list[dict[str, Any]]
]  # {image name: [{"box": [left, top, right, bottom], "classes": [[first, last]]}]}

EVALUATED = (*ALL_METHODS, "occlusion")
ALIASES = {"energy": "relevance_mass"}  # the photos' old name for the share of the map inside the box


class PhotoSet(Dataset):
    """Photos as the dataset evaluation's items: (x [3, H, W] as the model takes it, class, box mask [H, W] bool).

    `names[i]`, `classes[i]` and `probabilities[i]` say which photo item i is and what it is explained for: its top-1
    class, or `target` (a class index or ImageNet name) for every photo.
    """

    def __init__(self, model: torch.nn.Module, images: Images, boxes: Boxes | None = None, target: Any = None) -> None:
        named = _named(images)
        boxes = load_boxes() if boxes is None else boxes
        self.names = list(named)
        self.items: list[tuple[torch.Tensor, int, torch.Tensor]] = []
        self.probabilities: list[float] = []
        for name, image in named.items():
            picture = load_image(image)
            x = preprocess(picture, model)
            with torch.no_grad():
                probabilities = run_model(model, x).softmax(1)[0]
            c = int(probabilities.argmax()) if target is None else class_index(target, probabilities.numel())
            mask = box_mask(boxes.get(name, []), c, picture.size, model)
            empty = torch.zeros(x.shape[-2:], dtype=torch.bool)
            self.items.append((x[0].cpu(), c, empty if mask is None else mask.cpu()))
            self.probabilities.append(float(probabilities[c]))
        self.classes = [c for _, c, _ in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        return self.items[index]


def evaluate(
    model: torch.nn.Module,
    images: Images,
    methods: str | Sequence[str] | None = None,
    target: Any = None,
    layer: str | Mapping[str, str] | None = None,
    metrics: Sequence[str] | None = None,
    boxes: Boxes | None = None,
    steps: int = 16,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    progress: bool = True,
    per_image: bool = False,
    batch_size: int = 32,
    shuffled_model: torch.nn.Module | None = None,
    seeds: Sequence[int] = (0, 1, 2),
) -> pd.DataFrame:
    """Every method through the tests of dataset_evaluation.py: `summarize` of the per-image rows (the mean with its
    seeded bootstrap interval, n and nan, paired comparisons with the image-blind maps), or with `per_image=True` the
    rows themselves (image, method, measure, value).

    `images`: a torch Dataset or DataLoader of (image, label, mask), as shapes_dataset gives; or photos: {name: path
    or PIL image} (the name finds the photo's boxes), a list of paths (named by stem), or one path (see PhotoSet).
    `methods`: any of ALL_METHODS and "occlusion" (default: all). `target`: on a dataset None (each item's label) or
    "predicted"; on photos a class for every photo, else each one's top-1. `layer`: of the layer methods, one name
    or {method: name}. `metrics`: of DATASET_METRICS (default: all, data_randomization only when `shuffled_model`,
    the same architecture trained on shuffled labels, is given). `boxes`: {name: [box, ...]} as in
    samples/boxes.json (the default). `steps`: of the deletion and insertion curves. `options`: {method: keyword
    arguments}, for "occlusion" (patch, stride) and the methods `explain` takes options for. `seeds`: of the
    randomized models; `seed`: of the random map, the other class and SmoothGrad's noise.
    """
    methods = list(EVALUATED) if methods is None else [methods] if isinstance(methods, str) else list(methods)
    check_methods(methods, EVALUATED)
    if metrics is None:
        metrics = [m for m in DATASET_METRICS if m != "data_randomization" or shuffled_model is not None]
    metrics = [ALIASES.get(m, m) for m in metrics]
    if not isinstance(images, (Dataset, DataLoader)):
        images, target = PhotoSet(model, images, boxes, target), None
    rows = evaluate_dataset(
        model,
        images,
        methods,
        metrics,
        target,
        layer,
        options,
        batch_size,
        steps,
        seeds,
        shuffled_model,
        seed,
        progress,
    )
    table = pd.DataFrame(rows, columns=["image", "method", "measure", "value"])
    return table if per_image else summarize(table)


def _named(images: Images) -> dict[str, ImageSource]:
    if isinstance(images, Mapping):
        return dict(images)
    listed: Sequence[ImageSource] = [images] if isinstance(images, (str, Path)) else images  # type: ignore[assignment]
    return {
        Path(image).stem if isinstance(image, (str, Path)) else f"image {i}": image for i, image in enumerate(listed)
    }


def load_boxes(path: str | Path | None = None) -> Boxes:
    """{image name: [box, ...]}: samples/boxes.json beside the package in a checkout, inside it in a wheel."""
    here = Path(__file__).resolve().parent
    candidates = (
        [Path(path)] if path is not None else [here.parent / "samples" / "boxes.json", here / "samples" / "boxes.json"]
    )
    for candidate in candidates:
        if candidate.exists():
            return json.loads(candidate.read_text())
    raise GradCamError(
        f"no boxes file at {candidates[0]}; give "
        f"boxes={{name: [{{'box': [left, top, right, bottom], 'classes': [[first, last]]}}]}}"
    )


def box_mask(
    boxes: list[dict[str, Any]],
    target: int,
    size: tuple[int, int],
    model: torch.nn.Module,
    device: str | torch.device = "cpu",
) -> torch.Tensor | None:
    """[H, W] bool, True inside the boxes that stand for `target`, carried through the model's resize and centre crop;
    None when no box does. `size`: the original photo's (width, height)."""
    mine = [b["box"] for b in boxes if any(first <= target <= last for first, last in b["classes"])]
    if not mine:
        return None
    resize, crop, _, _ = input_config(model)
    width, height = size
    scale = resize / min(width, height)
    left, top = (round(width * scale) - crop) / 2, (round(height * scale) - crop) / 2
    mask = torch.zeros(crop, crop, dtype=torch.bool, device=device)
    for x0, y0, x1, y1 in mine:
        columns = [min(max(round(v * scale - left), 0), crop) for v in (x0, x1)]
        rows = [min(max(round(v * scale - top), 0), crop) for v in (y0, y1)]
        mask[rows[0] : rows[1], columns[0] : columns[1]] = True
    return mask
