"""Which explanation should I trust? Every method through the same tests, one table (notebook 12).

- randomization: the map of a fully randomized model (Adebayo et al. 2018, cascading to the stem) against the
  trained model's: rank correlation of |map| and SSIM. Low = the map depends on the weights.
- random_logit: the map for the predicted class against the map for a random other class (Sixt et al. 2020):
  rank correlation of |map|. Low = the map depends on the class.
- deletion, insertion: the AUC of notebook 09 (Petsiuk et al. 2018). Deletion low, insertion high.
- pointing: does the map's maximum fall in a box of the class (Zhang et al. 2018); energy: the share of the
  map's positive mass inside those boxes (Wang et al. 2020). Boxes from samples/boxes.json.
- cost: the time of one map, in forward passes.
A random map and a centre prior, which never look at the image, take the faithfulness and localisation tests
too: a method's number means something only beside theirs.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .dataset_evaluation import DATASET_METRICS, evaluate_dataset, other_class, rank_similarity
from .dataset_evaluation import centre_prior as batched_centre_prior
from .errors import GradCamError
from .evaluation import area_under, cascade_order, deletion_curve, insertion_curve, randomize_layers, ssim
from .forward_pass import explain
from .method_table import ALL_METHODS, BY_NAME, TITLES, check_methods
from .models import ImageSource, class_index, input_config, load_image, preprocess
from .occlusion import occlusion_sensitivity
from .summary import summarize

Images = Union[Mapping[str, ImageSource], Sequence[ImageSource], ImageSource, Dataset, DataLoader]
Boxes = dict[
    str, list[dict[str, Any]]
]  # {image name: [{"box": [left, top, right, bottom], "classes": [[first, last], ...]}]}

METRICS = {
    "randomization": ("rank corr. random model", "SSIM random model"),
    "random_logit": ("rank corr. other class",),
    "deletion": ("deletion AUC",),
    "insertion": ("insertion AUC",),
    "pointing": ("pointing game",),
    "energy": ("energy in box",),
    "cost": ("cost (forward passes)",),
}
BLIND = ("random map", "centre prior")  # image-blind maps: the floor every method's number is read against
BLIND_METRICS = ("deletion", "insertion", "pointing", "energy")
EVALUATED = (*ALL_METHODS, "occlusion")
ALIASES = {"energy": "relevance_mass"}  # the photos' name for the share of the map inside the box
PHOTO_NAMES = {"relevance_mass": "energy"}  # the datasets' name, on the photos


def evaluate(
    model: torch.nn.Module,
    images: Images,
    methods: str | Sequence[str] | None = None,
    target: Any = None,
    layer: str | Mapping[str, str | None] | None = None,
    metrics: Sequence[str] = tuple(METRICS),
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
    """A DataFrame, one row per method (and the two image-blind maps), one column per measure: the mean over the
    images, and beside it "<measure> sd", the standard deviation.

    On a dataset (a torch Dataset or DataLoader of (image, label, mask), as shapes_dataset gives) the evaluation of
    dataset_evaluation.py runs in batches of `batch_size`: `per_image=True` returns its tidy rows (image, method,
    measure, value), else `summarize` of them (means with seeded bootstrap intervals, paired comparisons with the
    image-blind maps). `metrics` then defaults to all of DATASET_METRICS (energy is relevance_mass), `target` is each
    item's label or "predicted", `shuffled_model` serves data_randomization, `seeds` the model randomization.

    `images`: {name: path or PIL image} (the name finds the image's boxes) or a list of paths (named by stem).
    `methods`: any of ALL_METHODS and "occlusion" (default: all). `target`: a class for every image, else each
    image's top-1. `layer`: for the layer methods, a name or {method: name}. `boxes`: {name: [box, ...]} as in
    samples/boxes.json (the default). `steps`: of the deletion and insertion curves. `options`: {method: keyword
    arguments}, for "occlusion" (patch, stride) and the methods `explain` takes options for.
    """
    methods = list(EVALUATED) if methods is None else [methods] if isinstance(methods, str) else list(methods)
    check_methods(methods, EVALUATED)
    if isinstance(images, (Dataset, DataLoader)):
        chosen = DATASET_METRICS if tuple(metrics) == tuple(METRICS) else [ALIASES.get(m, m) for m in metrics]
        if layer is not None and not isinstance(layer, str):
            raise GradCamError(
                "on a dataset, give one layer name for the layer methods (or None: the model's last block)"
            )
        rows = evaluate_dataset(
            model,
            images,
            methods,
            chosen,
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
    metrics = [PHOTO_NAMES.get(m, m) for m in metrics]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise GradCamError(f"unknown metric {unknown[0]!r}; choose from: {', '.join(METRICS)}")
    images = _named(images)
    boxes = load_boxes() if boxes is None else boxes
    options = options or {}
    randomized = randomize_layers(model, cascade_order(model), seed) if "randomization" in metrics else model
    scores: dict[str, dict[str, list[float]]] = {
        name: {label: [] for m in metrics for label in METRICS[m]} for name in [*methods, *BLIND]
    }
    bar = tqdm(total=len(images) * len(methods), desc="evaluate", unit="map", disable=not progress)
    for index, (name, image) in enumerate(images.items()):
        picture = load_image(image)
        x = preprocess(picture, model)
        forward, logits = _forward_seconds(model, x)
        c = int(logits.argmax()) if target is None else class_index(target, logits.numel())
        other = other_class(c, logits.numel(), seed + index)
        box = box_mask(boxes.get(name, []), c, picture.size, model, x.device)
        blind = {
            "random map": torch.rand(x.shape[-2:], generator=torch.Generator().manual_seed(seed + index)).to(x.device),
            "centre prior": centre_prior(x),
        }
        for method in methods:
            where = layer.get(method) if isinstance(layer, Mapping) else layer
            timed = [
                _timed(model, x, method, k, where, options.get(method, {}))
                for k in ([c, other] if "random_logit" in metrics else [c])
            ]
            map_ = timed[0][0]
            found = scores[method]
            if "cost" in metrics:  # the faster of the two maps: the first may pay for warming up
                found["cost (forward passes)"].append(min(seconds for _, seconds in timed) / forward)
            if "randomization" in metrics:
                after = explanation(randomized, x, method, c, where, options.get(method, {}))
                found["rank corr. random model"].append(rank_similarity(map_, after))
                found["SSIM random model"].append(ssim(map_, after))
            if "random_logit" in metrics:
                found["rank corr. other class"].append(rank_similarity(map_, timed[1][0]))
            _faithful_and_local(found, metrics, model, x, map_, c, box, steps)
            bar.update()
        for blind_name, map_ in blind.items():
            _faithful_and_local(scores[blind_name], metrics, model, x, map_, c, box, steps)
    bar.close()
    return _table(scores, methods, metrics)


def explanation(
    model: torch.nn.Module,
    x: torch.Tensor,
    method: str,
    target: int,
    layer: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """One map [H, W] or [3, H, W] of `method` for class `target`: occlusion, or any of ALL_METHODS."""
    options = (
        {"progress": False, **(options or {})} if "progress" in BY_NAME[method].option_names() else dict(options or {})
    )
    if method == "occlusion":
        return occlusion_sensitivity(model, x, target, **options)
    where = layer if BY_NAME[method].layer else None
    return explain(model, x, target, where, methods=[method], options={method: options} if options else None)[method]


def _timed(
    model: torch.nn.Module, x: torch.Tensor, method: str, target: int, layer: str | None, options: Mapping[str, Any]
) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    map_ = explanation(model, x, method, target, layer, options)
    return map_, time.perf_counter() - start


def _faithful_and_local(
    found: dict[str, list[float]],
    metrics: Sequence[str],
    model: torch.nn.Module,
    x: torch.Tensor,
    map_: torch.Tensor,
    target: int,
    box: torch.Tensor | None,
    steps: int,
) -> None:
    if "deletion" in metrics:
        found["deletion AUC"].append(area_under(*deletion_curve(model, x, map_, target, steps=steps)))
    if "insertion" in metrics:
        found["insertion AUC"].append(area_under(*insertion_curve(model, x, map_, target, steps=steps)))
    if box is not None and "pointing" in metrics:
        found["pointing game"].append(pointing_game(map_, box))
    if box is not None and "energy" in metrics:
        found["energy in box"].append(energy_in_box(map_, box))


def _table(scores: dict[str, dict[str, list[float]]], methods: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    rows = {}
    for name, found in scores.items():
        row = {}
        for label in (label for m in metrics for label in METRICS[m]):
            values = [v for v in found[label] if not math.isnan(v)]
            row[label] = statistics.fmean(values) if values else math.nan
            row[f"{label} sd"] = statistics.stdev(values) if len(values) > 1 else math.nan
        rows[TITLES.get(name, name)] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def to_markdown(table: pd.DataFrame, digits: int = 2) -> str:
    """The table as Markdown, each measure as "mean ± sd" (blank where a test does not apply)."""
    measures = [c for c in table.columns if not c.endswith(" sd")]
    lines = ["| method | " + " | ".join(measures) + " |", "|---" * (len(measures) + 1) + "|"]
    for name, row in table.iterrows():
        cells = [_cell(row[m], row.get(f"{m} sd", math.nan), digits) for m in measures]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(mean: float, sd: float, digits: int) -> str:
    """ "0.42 ± 0.05"; the mean alone without a spread; blank where the test does not apply."""
    if math.isnan(mean):
        return ""
    if math.isnan(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _named(images: Images) -> dict[str, ImageSource]:
    if isinstance(images, Mapping):
        return dict(images)
    listed: Sequence[ImageSource] = [images] if isinstance(images, (str, Path)) else images  # type: ignore[assignment]
    return {
        Path(image).stem if isinstance(image, (str, Path)) else f"image {i}": image for i, image in enumerate(listed)
    }


def _forward_seconds(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The median time of a plain forward pass on x, and the logits [num_classes] it gives."""
    times = []
    with torch.no_grad():
        for _ in range(3):
            start = time.perf_counter()
            logits = model(x)[0]
            times.append(time.perf_counter() - start)
    return statistics.median(times), logits


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


def _saliency(map_: Any) -> torch.Tensor:
    map_ = torch.as_tensor(map_).detach().double()
    return map_.abs().sum(0) if map_.dim() == 3 else map_


def pointing_game(map_: Any, box: torch.Tensor) -> float:
    """1 when the map's maximum falls inside the box, else 0 (a constant map points nowhere: 0)."""
    saliency = _saliency(map_)
    if bool((saliency == saliency.flatten()[0]).all()):
        return 0.0
    return float(box.flatten()[int(saliency.flatten().argmax())])


def energy_in_box(map_: Any, box: torch.Tensor) -> float:
    """The share of the map's positive mass inside the box, in [0, 1] (NaN for a map with none)."""
    energy = _saliency(map_).clamp(min=0)
    total = float(energy.sum())
    return float(energy[box.to(energy.device)].sum()) / total if total > 0 else math.nan


def centre_prior(x: torch.Tensor) -> torch.Tensor:
    """[H, W]: a Gaussian bump in the middle of the frame, sigma a quarter of the side: where photographers put their
    subject (dataset_evaluation.centre_prior, for one image)."""
    return batched_centre_prior(x.detach().float().reshape(-1, *x.shape[-2:])[:1])[0]
