"""The command line: the seed's main.py job, `python -m gradcam_utils --image-path IMG --arch ARCH --topk 3`."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .cli_common import Parser, chosen_device, output_dir, save
from .cli_evaluate import evaluate_images, evaluate_parser
from .display import class_labels, default_alpha, overlay, plot_grid
from .errors import GradCamError
from .forward_pass import ForwardPass
from .layers import default_layer, get_layer, list_layers
from .method_table import ALL_METHODS, BY_NAME, METHODS
from .models import EMBEDDED, check_arch, class_index, class_name, deprocess, load_image, load_model, preprocess

__all__ = ["main", "parser", "evaluate_parser"]


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="gradcam-utils", description=__doc__)
    p.add_argument("-i", "--image-path", action="append", required=True, help="an image; repeat for several")
    p.add_argument(
        "-a", "--arch", default="efficientnet_lite0", help="embedded model or torchvision arch (default: %(default)s)"
    )
    p.add_argument(
        "-t",
        "--target-layer",
        help="layer for Grad-CAM, as model.named_modules() names it (default: the model's last block)",
    )
    p.add_argument("-k", "--topk", type=int, default=3, help="explain the top-k classes (default: %(default)s)")
    p.add_argument("-o", "--output-dir", default="results", help="where the PNGs go (default: %(default)s)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument(
        "--cuda", action=argparse.BooleanOptionalAction, help="the seed's spelling of --device cuda / --device cpu"
    )
    p.add_argument(
        "--methods", nargs="+", choices=ALL_METHODS, default=list(METHODS), help="default: the five of notebooks 01-05"
    )
    p.add_argument(
        "--layer-sweep",
        nargs="*",
        metavar="LAYER",
        help="Grad-CAM of one class at several layers (default: every list_layers layer)",
    )
    p.add_argument("--compare-archs", nargs="+", metavar="ARCH", help="Grad-CAM of one class across these archs")
    p.add_argument(
        "--target-class",
        help="class for --layer-sweep and --compare-archs: ImageNet name or index (default: the top-1 class)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    matplotlib.use("Agg")  # the command draws to files; no window, whatever the environment says
    argv = sys.argv[1:] if argv is None else list(argv)
    evaluating = bool(argv) and argv[0] == "evaluate"
    try:
        if evaluating:
            evaluate_images(evaluate_parser().parse_args(argv[1:]))
        else:
            run(parser().parse_args(argv))
    except GradCamError as exc:
        print(f"gradcam-utils: error: {exc}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace) -> list[Path]:
    device = chosen_device(args)
    images = {
        Path(path): load_image(path) for path in args.image_path
    }  # every image checked before anything is written
    for arch in args.compare_archs or [args.arch]:
        check_arch(arch)
    target = (
        None
        if args.target_class is None
        else class_index(int(args.target_class) if args.target_class.isdigit() else args.target_class)
    )
    out = Path(args.output_dir)
    if args.compare_archs:
        return compare_archs(images, args.compare_archs, target, device, output_dir(out))
    model = load_model(args.arch, device=device)
    if args.target_layer is not None:
        get_layer(model, args.target_layer)
    if args.layer_sweep is not None:
        layers = args.layer_sweep or list_layers(model)
        for layer in layers:
            get_layer(model, layer)
        return layer_sweep(images, model, args.arch, layers, target, output_dir(out))
    return explain_images(
        images, model, args.arch, args.target_layer or default_layer(model), args.topk, args.methods, output_dir(out)
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def _save_picture(path: Path, picture: np.ndarray) -> Path:
    return save(path, lambda f: plt.imsave(f, picture.clip(0, 1), format="png"))


def _save_figure(path: Path, fig: matplotlib.figure.Figure) -> Path:
    save(path, lambda f: fig.savefig(f, format="png", dpi=72))
    plt.close(fig)
    return path


def _wrote(written: list[Path], out: Path) -> list[Path]:
    print(f"wrote {len(written)} files to {out}")
    return written


def _record(
    image: Image.Image, model: torch.nn.Module, layers: Sequence[str], rectifiers: bool, from_input: bool = True
) -> tuple[ForwardPass, np.ndarray]:
    """The one forward pass that every map of a command reads, and the picture the maps are drawn on."""
    x = preprocess(image, model)
    return ForwardPass(model, x, layers, rectifiers, from_input=from_input), deprocess(x, model)


def explain_images(
    images: dict[Path, Image.Image],
    model: torch.nn.Module,
    arch: str,
    layer: str,
    topk: int,
    methods: Sequence[str],
    out: Path,
) -> list[Path]:
    """For each image and each of its top-k classes, one PNG per method, plus a classes x methods summary grid."""
    takes_layer = {m for m in methods if BY_NAME[m].layer}
    steps = tqdm(total=len(images) * topk, unit="class", disable=len(images) < 2)
    written = []
    for path, image in images.items():
        forward, picture = _record(image, model, [layer] if takes_layer else [], rectifiers=True)
        targets = forward.targets(topk=topk)
        probabilities = forward.probabilities[0]
        rows = [(int(i), class_name(int(i)), float(probabilities[i])) for i in targets[:, 0]]
        maps = {method: maps[:, 0] for method, maps in forward.maps(methods, targets, layer).items()}
        print(f"{path.name} ({arch}):")
        for rank, (index, name, probability) in enumerate(rows, start=1):
            print(f"  #{rank}  {probability:.3f}  {name} ({index})")
            for method in methods:
                where = f"-{_slug(layer)}" if method in takes_layer else ""
                file = f"{path.stem}-{arch}-{method}{where}-{_slug(name)}.png"
                written.append(
                    _save_picture(out / file, overlay(picture, maps[method][rank - 1], default_alpha(method)))
                )
            steps.update()
        fig = plot_grid(picture, maps, class_labels(rows), title=f"{path.name}: {arch}, Grad-CAM at {layer}")
        written.append(_save_figure(out / f"{path.stem}-{arch}-summary.png", fig))
    steps.close()
    return _wrote(written, out)


def layer_sweep(
    images: dict[Path, Image.Image],
    model: torch.nn.Module,
    arch: str,
    layers: Sequence[str],
    target: int | None,
    out: Path,
) -> list[Path]:
    """Grad-CAM of one class at each of several layers: how the map sharpens or blurs with depth."""
    written = []
    for path, image in images.items():
        forward, picture = _record(image, model, layers, rectifiers=False, from_input=False)
        targets = forward.targets(target)
        name = class_name(int(targets[0, 0]))
        cams = {layer: forward.cam(targets, layer)[0, 0] for layer in layers}
        for layer, cam in cams.items():
            written.append(
                _save_picture(
                    out / f"{path.stem}-{arch}-gradcam-{_slug(layer)}-{_slug(name)}.png", overlay(picture, cam)
                )
            )
        fig = plot_grid(
            picture,
            {"gradcam": list(cams.values())},
            layers,
            title=f"{path.name}: Grad-CAM of {name!r} by layer ({arch})",
        )
        written.append(_save_figure(out / f"{path.stem}-{arch}-layers-{_slug(name)}.png", fig))
    return _wrote(written, out)


def compare_archs(
    images: dict[Path, Image.Image], archs: Sequence[str], target: int | None, device: torch.device, out: Path
) -> list[Path]:
    """Grad-CAM of one class across architectures; archs whose weights can't be had are skipped with a line."""
    models = {}
    for arch in archs:
        try:
            models[arch] = load_model(arch, device=device)
        except GradCamError as exc:
            print(f"skipping {arch}: {exc}", file=sys.stderr)
    if not models:
        raise GradCamError("none of the archs could be loaded; the embedded ones work offline: " + ", ".join(EMBEDDED))
    written = []
    for path, image in images.items():
        columns, labels, image_target = [], [], target
        for arch, model in models.items():
            layer = default_layer(model)
            forward, picture = _record(image, model, [layer], rectifiers=False, from_input=False)
            if image_target is None:
                # The first model's top-1 class, then the same class for all
                image_target = int(forward.targets()[0, 0])
            cam = forward.cam(forward.targets(image_target), layer)[0, 0]
            columns.append(overlay(picture, cam))
            labels.append(f"{arch}\n{layer}, p={float(forward.probabilities[0, image_target]):.3f}")
            name = _slug(class_name(image_target))
            written.append(_save_picture(out / f"{path.stem}-{arch}-gradcam-{_slug(layer)}-{name}.png", columns[-1]))
        assert image_target is not None  # set by the first model
        fig, axes = plt.subplots(1, len(columns), figsize=(2.4 * len(columns), 2.9), squeeze=False)
        for ax, column, label in zip(axes[0], columns, labels):
            ax.imshow(column)
            ax.set_title(label, fontsize=8)
            ax.axis("off")
        fig.suptitle(f"{path.name}: Grad-CAM of {class_name(image_target)!r} across architectures", fontsize=10)
        fig.tight_layout()
        written.append(_save_figure(out / f"{path.stem}-archs-{_slug(class_name(image_target))}.png", fig))
    return _wrote(written, out)
