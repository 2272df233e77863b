"""Every method over a dataset of images with known evidence: one tidy row per image, method and measure.

`evaluate_batch` is a plain function of one batch (images, labels, masks), so the same evaluation runs under a
DataLoader here or under Ray Data's map_batches elsewhere. All the methods' maps of a batch are read from one
recorded forward pass (the random-logit class rides along as a second target). Measures:

- pointing, relevance_mass, relevance_rank: localisation.py on the map's saliency (positive part of a heatmap,
  absolute channel sum of a pixel map) against the evidence mask.
- deletion, insertion: the area under the curve of p(class) as pixels go to the grey baseline (deletion) or come back
  onto the blurred image (insertion, as Petsiuk et al. 2018 start it), divided by p(class) on the intact image so that
  images of any confidence compare, most relevant first; "... (least first)" the same with the order reversed. (With
  one baseline for both, insertion most-first would be deletion least-first read backwards: the same area.)
- randomization: how similar the map stays, |rank correlation| of the absolute maps, between the trained model and
  one whose top of the cascade (`top_of_cascade`: the classifier down to the last convolution's layer) is
  re-initialised (Adebayo et al. 2018), averaged over `seeds`; random_logit: against the map of a random other class
  (Sixt et al. 2020); data_randomization: against the map that `shuffled_model`, the same architecture trained on
  shuffled labels, gives for the same image and class (Adebayo et al. 2018, Sec. 5). 0 is unrelated, 1 the same
  ranking (or its reverse); a map that is constant has no ranking: NaN, counted.
- cost: the method's own work on the shared forward pass, in forward passes of the batch, plus the one forward
  pass it would need alone.
Three image-blind maps take the localisation and faithfulness measures too: a random map, a centre prior and an edge
map (the gradient magnitude of the image itself, which knows nothing of the model).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import GradCamError
from .evaluation import BatchCurves, randomize_layers, spearman, top_of_cascade
from .forward_pass import ForwardPass
from .layers import default_layer, get_layer
from .localisation import pointing_game, relevance_mass, relevance_rank, saliency
from .method_table import ALL_METHODS, BY_NAME, check_methods
from .models import eval_mode, run_model
from .occlusion import occlusion_maps
from .pixel_rules import needs_rectifiers

DATASET_METRICS = (
    "pointing",
    "relevance_mass",
    "relevance_rank",
    "deletion",
    "insertion",
    "randomization",
    "data_randomization",
    "random_logit",
    "cost",
)
BLIND_MAPS = ("random map", "centre prior", "edge map")
# (measure, insertion, least relevant first): the curves, each for the metric named by its first word
CURVES = (("deletion", False, False), ("deletion (least first)", False, True), ("insertion", True, False),
          ("insertion (least first)", True, True))  # fmt: skip
Row = dict[str, Any]  # {"image": index, "method": name, "measure": name, "value": float}
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]  # images, labels, masks, indices in the dataset


def edge_map(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W]: the magnitude of the image's own gradient (Sobel), summed over channels: an image-blind baseline
    that looks like many saliency maps (Adebayo et al. 2018)."""
    sobel = torch.tensor(
        [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], dtype=images.dtype, device=images.device
    )
    kernels = torch.stack([sobel, sobel.T])[:, None].repeat(images.shape[1], 1, 1, 1)
    edges = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernels, groups=images.shape[1])
    return edges.square().unflatten(1, (images.shape[1], 2)).sum(2).sqrt().sum(1)


def centre_prior(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W]: a Gaussian bump in the middle of the frame, sigma a quarter of the side."""
    height, width = images.shape[-2:]
    rows = torch.arange(height, dtype=images.dtype, device=images.device)[:, None] - (height - 1) / 2
    columns = torch.arange(width, dtype=images.dtype, device=images.device)[None] - (width - 1) / 2
    sigma = min(height, width) / 4
    return torch.exp(-(rows**2 + columns**2) / (2 * sigma**2)).expand(len(images), -1, -1)


def _auc(values: torch.Tensor) -> torch.Tensor:
    return torch.trapezoid(values, dx=1 / (values.shape[1] - 1), dim=1)


def rank_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """|Rank correlation| of the absolute maps: 0 unrelated, 1 the same ranking or its reverse (a map's sign, say
    Eigen-CAM's, is arbitrary, and a reversed ranking is as much the old map as the same one); NaN for a constant
    map."""
    with warnings.catch_warnings():  # a constant map has no ranking: NaN, counted in the summary's "nan" column
        warnings.simplefilter("ignore", RuntimeWarning)
        return abs(spearman(a, b, absolute=True))


def _maps(
    model: torch.nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    methods: Sequence[str],
    layers: Mapping[str, str],
    options: Mapping[str, Mapping[str, Any]],
    seed: int,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """{method: maps [k, B, ...]} for targets [k, B] from one forward pass, and each method's seconds on it. `layers`:
    {method: layer} for the layer methods. SmoothGrad draws its noise with `seed` unless its options give one."""
    explained = [m for m in methods if m != "occlusion"]
    pass_ = ForwardPass(
        model, images, sorted({layers[m] for m in explained if m in layers}), needs_rectifiers(explained)
    )
    side = images.shape[-1]
    defaults: dict[str, dict[str, Any]] = {
        "smoothgrad": {"seed": seed},
        "scorecam": {"progress": False},
        "occlusion": {"patch": side // 4, "stride": side // 8},
    }
    maps, seconds = {}, {}
    for method in methods:
        start = time.perf_counter()
        given = {**defaults.get(method, {}), **options.get(method, {})}
        if method == "occlusion":
            given.pop("progress", None)
            maps[method] = occlusion_maps(model, images, targets, **given)
        else:
            maps[method] = pass_.maps([method], targets, layers.get(method), {method: given} if given else None)[method]
        seconds[method] = time.perf_counter() - start
    return maps, seconds


def evaluate_batch(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    indices: Sequence[int],
    methods: Sequence[str],
    metrics: Sequence[str] = DATASET_METRICS,
    layer: str | Mapping[str, str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    steps: int = 16,
    randomized: Sequence[torch.nn.Module] = (),
    shuffled_model: torch.nn.Module | None = None,
    seed: int = 0,
) -> list[Row]:
    """The rows of one batch: images [B, 3, H, W], the classes to explain [B], evidence masks [B, H, W] (bool), and
    the images' indices in the dataset (for the rows and the seeded random parts). `layer`: of the layer methods, one
    name for all or {method: name} (the rest at the model's last block). `randomized`: the model with the top of its
    cascade re-initialised, one per seed (`randomized_models`), for the randomization measure."""
    options = options or {}
    layers = layers_of(model, methods, layer)
    classes = _classes(model, images)
    others = torch.tensor([other_class(int(c), classes, seed + int(i)) for c, i in zip(labels, indices)])
    wanted = torch.stack([labels, others]) if "random_logit" in metrics else labels[None]
    with torch.no_grad():
        start = time.perf_counter()
        run_model(model, images)
        forward = time.perf_counter() - start
    # Each batch its own noise: the same seed for every batch would give image i and image i + batch_size one draw
    noise_seed = seed + int(indices[0])
    maps, seconds = _maps(model, images, wanted.to(images.device), methods, layers, options, noise_seed)
    rows: list[Row] = []

    def add(method: str, measure: str, values: Iterable[float]) -> None:
        rows.extend(
            {"image": int(i), "method": method, "measure": measure, "value": float(v)} for i, v in zip(indices, values)
        )

    def similarity(method: str, others: torch.Tensor) -> list[float]:
        return [rank_similarity(a, b) for a, b in zip(maps[method][0], others)]

    curved = [c for c in CURVES if c[0].split(" ")[0] in metrics]
    curves = BatchCurves(model, images, labels, steps, seed) if curved else None
    random_maps = [
        torch.rand(images.shape[-2:], generator=torch.Generator().manual_seed(seed + int(i))) for i in indices
    ]
    shown = {m: saliency(maps[m][0], not BY_NAME[m].heatmap).cpu() for m in methods} | {
        "random map": torch.stack(random_maps),
        "centre prior": centre_prior(images).cpu(),
        "edge map": edge_map(images).cpu(),
    }
    for method, picture in shown.items():
        for measure, metric in (
            ("pointing", pointing_game),
            ("relevance_mass", relevance_mass),
            ("relevance_rank", relevance_rank),
        ):
            if measure in metrics:
                add(method, measure, metric(picture, masks))
        for measure, insertion, least_first in curved:
            assert curves is not None
            add(method, measure, _auc(curves(picture, insertion, least_first)).tolist())
    targets = labels[None].to(images.device)
    if "random_logit" in metrics:
        for method in methods:
            add(method, "random_logit", similarity(method, maps[method][1]))
    if "randomization" in metrics:
        after = [_maps(other, images, targets, methods, layers, options, noise_seed)[0] for other in randomized]
        for method in methods:
            add(
                method,
                "randomization",
                torch.tensor([similarity(method, a[method][0]) for a in after]).mean(0).tolist(),
            )
    if "data_randomization" in metrics and shuffled_model is not None:
        shuffled = _maps(shuffled_model, images, targets, methods, layers, options, noise_seed)[0]
        for method in methods:
            add(method, "data_randomization", similarity(method, shuffled[method][0]))
    if "cost" in metrics:
        for method in methods:
            add(method, "cost", [1 + seconds[method] / forward] * len(images))
    return rows


class BatchEvaluator:
    """`evaluate_batch` in the form Ray Data's `map_batches` takes. It is built once per worker, so each worker loads
    its model once, with `load` (a picklable function of no arguments), on the worker's GPU where Ray gives it one.
    Then it is called with batches of columns {"image", "label", "mask", "index"} and returns the rows as columns.
    Keyword arguments are evaluate_batch's (methods, metrics, layer, options, steps, seed), plus `seeds` and
    `load_shuffled` for the randomization measures."""

    def __init__(self, load: Callable[[], torch.nn.Module], load_shuffled: Callable[[], torch.nn.Module] | None = None,
                 seeds: Sequence[int] = (0, 1, 2), **kwargs: Any) -> None:  # fmt: skip
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load().to(device).eval()
        metrics = kwargs.get("metrics", DATASET_METRICS)
        self.randomized = randomized_models(self.model, seeds) if "randomization" in metrics else []
        self.shuffled = load_shuffled().to(device).eval() if load_shuffled is not None else None
        self.kwargs = kwargs

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        device = next(self.model.parameters()).device
        images = torch.as_tensor(batch["image"]).to(device)
        labels, masks = torch.as_tensor(batch["label"]), torch.as_tensor(batch["mask"]).bool()
        indices = [int(i) for i in batch["index"]]
        kwargs = {"methods": ALL_METHODS, **self.kwargs, "randomized": self.randomized, "shuffled_model": self.shuffled}
        rows = evaluate_batch(self.model, images, labels, masks, indices, **kwargs)
        return {key: [row[key] for row in rows] for key in ("image", "method", "measure", "value")}


def layers_of(model: torch.nn.Module, methods: Sequence[str], layer: str | Mapping[str, str] | None) -> dict[str, str]:
    """{method: layer} for the layer methods among `methods`: `layer` for all, or as {method: layer}, the rest at the
    model's last block."""
    given: Mapping[str, str] = layer if isinstance(layer, Mapping) else {}
    chosen = {m: given.get(m, layer if isinstance(layer, str) else None) for m in methods if BY_NAME[m].layer}
    fallback = default_layer(model) if None in chosen.values() else ""
    return {m: name or fallback for m, name in chosen.items()}


def randomized_models(model: torch.nn.Module, seeds: Sequence[int]) -> list[torch.nn.Module]:
    """Copies of the model whose top of the cascade (`top_of_cascade`) is re-initialised, one per seed."""
    return [randomize_layers(model, top_of_cascade(model), s) for s in seeds]


def _classes(model: torch.nn.Module, images: torch.Tensor) -> int:
    classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if classifier:
        return classifier[-1].out_features
    with torch.no_grad():
        return run_model(model, images[:1]).shape[1]


def other_class(target: int, classes: int, seed: int) -> int:
    """A class other than `target`, drawn with `seed`: the random-logit test's (Sixt et al. 2020)."""
    other = int(torch.randint(classes - 1, (1,), generator=torch.Generator().manual_seed(seed)))
    return other + (other >= target)


def batches(data: Any, batch_size: int) -> Iterable[Batch]:
    """(images, labels, masks, indices) from a Dataset or a DataLoader of (image, label, mask), checked."""
    if isinstance(data, torch.utils.data.DataLoader):
        start = 0
        for images, labels, masks in data:
            yield _checked(images, torch.as_tensor(labels), masks, start)
            start += len(images)
        return
    for start in range(0, len(data), batch_size):
        items = [data[i] for i in range(start, min(start + batch_size, len(data)))]
        if any(not isinstance(item, (tuple, list)) or len(item) != 3 for item in items):
            raise GradCamError(
                "each dataset item must be (image [3, H, W], label, mask [H, W]), as shapes_dataset gives"
            )
        images, labels, masks = (list(column) for column in zip(*items))
        shapes = {tuple(image.shape) for image in images}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3:
            raise GradCamError(f"dataset images must be [3, H, W] and of one size; got shapes {sorted(shapes)[:3]}")
        yield _checked(torch.stack(images), torch.tensor([int(label) for label in labels]), torch.stack(masks), start)


def _checked(images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, start: int) -> Batch:
    if images.dim() != 4 or masks.shape != (images.shape[0], *images.shape[-2:]):
        raise GradCamError(
            f"masks {list(masks.shape)} do not match images {list(images.shape)}: give one [H, W] mask per image"
        )
    if masks.dtype != torch.bool:
        raise GradCamError(f"masks must be bool (True on the evidence), not {masks.dtype}")
    return images, labels, masks, list(range(start, start + len(images)))


def evaluate_dataset(
    model: torch.nn.Module,
    data: Any,
    methods: Sequence[str] | None = None,
    metrics: Sequence[str] = DATASET_METRICS,
    target: str | None = None,
    layer: str | Mapping[str, str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int = 32,
    steps: int = 16,
    seeds: Sequence[int] = (0, 1, 2),
    shuffled_model: torch.nn.Module | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[Row]:
    """Every method's rows over a Dataset or DataLoader of (image, label, mask), in batches on the model's device.
    The explained class is each item's label, or the model's own prediction with target="predicted"."""
    methods = check_methods(
        list(ALL_METHODS) + ["occlusion"] if methods is None else list(methods), (*ALL_METHODS, "occlusion")
    )
    unknown = [m for m in metrics if m not in DATASET_METRICS]
    if unknown:
        raise GradCamError(f"unknown metric {unknown[0]!r}; choose from: {', '.join(DATASET_METRICS)}")
    if target not in (None, "predicted"):
        raise GradCamError(f"on a dataset, target is None (each item's label) or 'predicted', not {target!r}")
    if "data_randomization" in metrics and shuffled_model is None:
        raise GradCamError("data_randomization needs shuffled_model=, the same architecture trained on shuffled labels")
    for name in set(layers_of(model, methods, layer).values()):
        get_layer(model, name)  # a wrong name: one line with the close matches, before any work
    device = next(model.parameters()).device
    randomized = randomized_models(model, seeds) if "randomization" in metrics else []
    rows: list[Row] = []
    total = len(data.dataset) if isinstance(data, torch.utils.data.DataLoader) else len(data)  # type: ignore[arg-type]
    with tqdm(total=total, desc="evaluate", unit="image", disable=not progress) as bar, eval_mode(model):
        for images, labels, masks, indices in batches(data, batch_size):
            images = images.to(device)
            if target == "predicted":
                with torch.no_grad():
                    labels = run_model(model, images).argmax(1).cpu()
            rows += evaluate_batch(
                model,
                images,
                labels,
                masks,
                indices,
                methods,
                metrics,
                layer,
                options,
                steps,
                randomized,
                shuffled_model,
                seed,
            )
            bar.update(len(images))
    return rows
