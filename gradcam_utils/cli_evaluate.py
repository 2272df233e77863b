"""`gradcam-utils evaluate`: every method through the same tests (notebook 12), on photos with boxes or on the shapes
set with its small models; tables written as CSV (and Markdown)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from .cli_common import Parser, chosen_device, output_dir, pair, parse_options, save
from .errors import whole_number
from .layers import get_layer
from .method_table import TITLES
from .models import check_arch, load_image, load_model
from .scorecard import EVALUATED, evaluate
from .shapes import shapes_dataset
from .small_models import load_small_model
from .summary import summarize, to_markdown

DATASETS = ("shapes", "shortcut-aligned", "shortcut-conflict")


def evaluate_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="gradcam-utils evaluate",
        description="Every method through the same tests (notebook 12): per-image rows and their summary, as CSV and "
        "Markdown.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "-i",
        "--image-path",
        nargs="+",
        help="images; boxes for the pointing game come from samples/boxes.json, by file stem",
    )
    source.add_argument(
        "--dataset",
        choices=DATASETS,
        help="the shapes set with its small model (shapes; shortcut-*: the shortcut model on marked images)",
    )
    p.add_argument("--n", type=int, default=200, help="images of --dataset, from its test split (default: %(default)s)")
    p.add_argument(
        "--target",
        choices=["label", "predicted"],
        default="label",
        help="with --dataset, the class explained: each image's label (its shape) or the model's prediction",
    )
    p.add_argument(
        "-a", "--arch", default="efficientnet_lite0", help="embedded model or torchvision arch (default: %(default)s)"
    )
    p.add_argument("--methods", nargs="+", choices=EVALUATED, help="default: every method, occlusion included")
    p.add_argument(
        "-t",
        "--target-layer",
        nargs="+",
        default=[],
        metavar="[METHOD=]LAYER",
        help="layer for the layer methods, or for one of them (scorecam=blocks.3); default: the model's last block",
    )
    p.add_argument(
        "--options",
        nargs="+",
        default=[],
        metavar="METHOD.NAME=VALUE",
        help="e.g. occlusion.patch=64 smoothgrad.samples=10",
    )
    p.add_argument(
        "--steps", type=int, default=16, help="steps of the deletion and insertion curves (default: %(default)s)"
    )
    p.add_argument(
        "-o",
        "--output-dir",
        default="results",
        help="where rows.csv, summary.csv and summary.md go (default: %(default)s)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--cuda", action=argparse.BooleanOptionalAction, help=argparse.SUPPRESS)
    return p


def evaluate_images(args: argparse.Namespace) -> Any:
    """`gradcam-utils evaluate`: gu.evaluate's per-image rows as rows.csv, their summary as summary.csv and summary.md
    (means with their 95% intervals, a row per method, a column per measure)."""
    device = chosen_device(args)
    n = whole_number("--n", args.n)
    whole_number("--steps", args.steps)
    options = parse_options(args.options)
    if args.dataset:
        shortcut = args.dataset.partition("-")[2] or None
        model: torch.nn.Module = load_small_model("shortcut" if shortcut else "shapes", device)
        data: Any = shapes_dataset(n, "test", shortcut=shortcut)
        what = f"{args.dataset}, {n} test images, each for its {args.target} class"
        target = None if args.target == "label" else "predicted"
        shuffled = load_small_model("shuffled", device)
    else:
        data = {Path(path).stem: load_image(path) for path in args.image_path}
        check_arch(args.arch)
        model = load_model(args.arch, device=device)
        what = f"{args.arch}, {len(data)} photos ({', '.join(data)}), each for its top-1 class"
        target, shuffled = None, None
    layer = _layers(model, args.target_layer)
    out = output_dir(Path(args.output_dir))
    rows = evaluate(
        model, data, methods=args.methods, layer=layer, steps=args.steps, options=options, target=target,
        per_image=True, shuffled_model=shuffled,
    )  # fmt: skip
    summary = summarize(rows)
    text = f"{what}; mean [95% interval] over the images.\n\n" + to_markdown(summary, titles=TITLES)
    save(out / "rows.csv", lambda f: rows.to_csv(f, index=False, float_format="%.6g"))
    save(out / "summary.csv", lambda f: summary.to_csv(f, index=False, float_format="%.4f"))
    save(out / "summary.md", lambda f: Path(f).write_text(text))
    print(text)
    print(f"wrote rows.csv ({len(rows)} rows), summary.csv and summary.md to {out}")
    return summary


def _layers(model: torch.nn.Module, given: list[str]) -> Any:
    """--target-layer's [METHOD=]LAYER words as evaluate's layer: one name, or {method: name} with a bare LAYER for
    the methods not named; each name checked against the model."""
    layers = dict(
        pair(text, "=", "--target-layer", "[METHOD=]LAYER") if "=" in text else (None, text) for text in given
    )
    for layer in layers.values():
        get_layer(model, layer)
    default = layers.pop(None, None)
    if not layers:
        return default
    return {method: layers.get(method, default) for method in EVALUATED if layers.get(method, default) is not None}
