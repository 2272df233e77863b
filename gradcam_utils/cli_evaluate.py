"""`gradcam-utils evaluate`: every method through the same tests (notebook 12), on photos with boxes or on the shapes
set with its small models; tables written as CSV (and Markdown)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .cli_common import Parser, chosen_device, output_dir, pair, parse_options, save
from .errors import GradCamError, whole_number
from .layers import get_layer
from .models import check_arch, load_image, load_model
from .scorecard import EVALUATED, evaluate, to_markdown
from .shapes import shapes_dataset
from .small_models import load_small_model
from .summary import summarize

DATASETS = ("shapes", "shortcut-aligned", "shortcut-conflict")


def evaluate_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="gradcam-utils evaluate",
        description="Every method through the same tests (notebook 12): a table as CSV and Markdown.",
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
    p.add_argument("--readme", help="also put the table between the <!-- evaluation --> markers of this Markdown file")
    p.add_argument(
        "-o", "--output-dir", default="results", help="where evaluation.csv and evaluation.md go (default: %(default)s)"
    )
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--cuda", action=argparse.BooleanOptionalAction, help=argparse.SUPPRESS)
    return p


def evaluate_images(args: argparse.Namespace) -> Any:
    """`gradcam-utils evaluate`: gu.evaluate's table, written as evaluation.csv and evaluation.md."""
    if args.dataset:
        return evaluate_shapes(args)
    device = chosen_device(args)
    images = {Path(path).stem: load_image(path) for path in args.image_path}
    check_arch(args.arch)
    model = load_model(args.arch, device=device)
    layers = dict(
        pair(text, "=", "--target-layer", "[METHOD=]LAYER") if "=" in text else (None, text)
        for text in args.target_layer
    )
    for layer in layers.values():
        get_layer(model, layer)
    options = parse_options(args.options)
    whole_number("--steps", args.steps)
    readme = Path(args.readme) if args.readme else None
    markers = ("<!-- evaluation -->\n", "<!-- /evaluation -->")
    if readme is not None and not (readme.is_file() and all(m in readme.read_text() for m in markers)):
        raise GradCamError(f"--readme {readme} is not a file with the markers {markers[0].strip()} and {markers[1]}")
    out = output_dir(Path(args.output_dir))
    default = layers.pop(None, None)  # a bare LAYER: for every method not named
    layer = {method: layers.get(method, default) for method in args.methods or EVALUATED} if layers else default
    table = evaluate(model, images, methods=args.methods, layer=layer, steps=args.steps, options=options)
    text = (
        f"{args.arch}, {len(images)} images ({', '.join(images)}), each for its top-1 class; mean ± sd over the "
        "images.\n\n" + to_markdown(table)
    )
    save(out / "evaluation.csv", lambda f: table.to_csv(f, float_format="%.4f"))
    save(out / "evaluation.md", lambda f: Path(f).write_text(text))
    if readme is not None:
        head, rest = readme.read_text().split(markers[0], 1)
        save(readme, lambda f: Path(f).write_text(head + markers[0] + text + markers[1] + rest.split(markers[1], 1)[1]))
    print(text)
    also = f", and the table into {readme}" if readme else ""
    print(f"wrote evaluation.csv and evaluation.md to {out}{also}")
    return table


def evaluate_shapes(args: argparse.Namespace) -> Any:
    """`gradcam-utils evaluate --dataset NAME`: the per-image rows as rows.csv, their summary as summary.csv."""
    device = chosen_device(args)
    n = whole_number("--n", args.n)
    shortcut = args.dataset.partition("-")[2] or None
    model = load_small_model("shortcut" if shortcut else "shapes", device)
    options = parse_options(args.options)
    out = output_dir(Path(args.output_dir))
    rows = evaluate(
        model,
        shapes_dataset(n, "test", shortcut=shortcut),
        methods=args.methods,
        steps=args.steps,
        options=options,
        target=None if args.target == "label" else "predicted",
        per_image=True,
        shuffled_model=load_small_model("shuffled", device),
    )
    summary = summarize(rows)
    save(out / "rows.csv", lambda f: rows.to_csv(f, index=False, float_format="%.6g"))
    save(out / "summary.csv", lambda f: summary.to_csv(f, index=False, float_format="%.4f"))
    print(summary[["method", "measure", "n", "nan", "mean", "ci low", "ci high"]].to_string(index=False))
    print(f"wrote rows.csv ({len(rows)} rows) and summary.csv to {out}")
    return summary
