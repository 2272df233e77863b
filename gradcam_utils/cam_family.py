"""Grad-CAM and what came after it: maps that weigh the activations A [B, C, h, w] of one layer.

All read the same recorded forward pass (methods.ForwardPass). The gradient variants share one
batched backward pass to the layer, G = d logit_c / d A [k, B, C, h, w]:

- gradcam     (Selvaraju et al. 2017)    relu(sum_c mean_ij(G) A)
- gradcam_pp  (Chattopadhay et al. 2018) relu(sum_c w A), w = sum_ij alpha relu(G), alpha of Eq. 19
- xgradcam    (Fu et al. 2020)           relu(sum_c w A), w = sum_ij G A / sum_ij A
- hirescam    (Draelos and Carin 2020)   relu(sum_c G A), element-wise
- layercam    (Jiang et al. 2021)        relu(sum_c relu(G) A), element-wise
Without gradients:
- cam         (Zhou et al. 2016)         sum_c W[c] A, the classifier's weights (no ReLU in the paper)
- scorecam    (Wang et al. 2020)         relu(sum_c w A), w = softmax over channels of the logit of x masked by each channel
- eigencam    (Muhammad and Yeasin 2020) relu(A projected on its first principal component): one map for every class
"""

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .models import GradCamError, eval_mode

GRADIENT_CAMS = ("gradcam", "gradcam_pp", "xgradcam", "hirescam", "layercam")
CAM_FAMILY = ("cam", "gradcam_pp", "xgradcam", "hirescam", "layercam", "scorecam", "eigencam")


def gradient_cam(method, activations, gradients):
    """[k, B, h, w] from A [B, C, h, w] and G [k, B, C, h, w], before the ReLU."""
    if method == "gradcam":
        return (gradients.mean(dim=(3, 4), keepdim=True) * activations).sum(dim=2)
    if method == "gradcam_pp":
        # Eq. 19 with the exponential score's closed form: second and third derivatives become G^2 and G^3.
        g2, g3 = gradients**2, gradients**3
        denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g3
        alpha = torch.where(denominator != 0, g2 / denominator.where(denominator != 0, 1), 0)
        weights = (alpha * F.relu(gradients)).sum(dim=(3, 4), keepdim=True)
        return (weights * activations).sum(dim=2)
    if method == "xgradcam":
        total = activations.sum(dim=(2, 3), keepdim=True)
        weights = (gradients * activations).sum(dim=(3, 4), keepdim=True) / total.where(total != 0, 1)
        return (weights * activations).sum(dim=2)
    if method == "hirescam":
        return (gradients * activations).sum(dim=2)
    return (F.relu(gradients) * activations).sum(dim=2)  # layercam


def class_activation_map(pass_, targets, activations, layer):
    """CAM [k, B, h, w]: the classifier's weights for each class on the layer's channels.

    Defined only where the model's logits are a linear layer on the global average of these
    activations; checked on this forward pass, not assumed.
    """
    channels = activations.shape[1]
    linears = [m for m in pass_.model.modules() if isinstance(m, torch.nn.Linear) and m.in_features == channels]
    pooled = activations.mean(dim=(2, 3))
    logits = pass_.logits.detach()
    if not linears or not _is_head(linears[-1], pooled, logits):
        raise GradCamError(
            f"cam needs logits = a linear layer on the global average of {layer!r}, and this model's are not; "
            "give the layer that feeds the global pooling, or use gradcam, which equals CAM wherever CAM applies"
        )
    weights = linears[-1].weight.detach()[targets]  # [k, B, C]
    return (weights[..., None, None] * activations).sum(dim=2)


def _is_head(linear, pooled, logits):
    if linear.out_features != logits.shape[1]:
        return False
    with torch.no_grad():
        predicted = F.linear(pooled, linear.weight, linear.bias)
    return bool(torch.allclose(predicted, logits, rtol=1e-3, atol=1e-3 * float(logits.abs().max())))


def score_cam(pass_, targets, activations, batch_size=32, progress=True):
    """Score-CAM [k, B, h, w]: x masked by each channel of A, upsampled to x's size and scaled to [0, 1] (Eq. 3),
    one forward pass per channel, batched; every class is read from the same masked passes.

    The weights are the softmax over the channels of each masked input's logit, as in torchcam and pytorch-grad-cam.
    `progress`: a progress bar when it takes more than a couple of seconds.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise GradCamError(f"batch_size must be a whole number of at least 1, not {batch_size!r}")
    x = pass_.input.detach()
    images, channels = activations.shape[:2]
    scores = torch.empty(images, channels, pass_.logits.shape[1], device=x.device)
    with torch.no_grad(), eval_mode(pass_.model):
        for image in range(images):
            starts = range(0, channels, batch_size)
            for start in tqdm(starts, desc="Score-CAM", unit="batch", delay=2, disable=not progress):
                masks = upsample(activations[image, start : start + batch_size, None], x.shape[-2:])
                low, high = masks.amin(dim=(2, 3), keepdim=True), masks.amax(dim=(2, 3), keepdim=True)
                masks = (masks - low) / (high - low).where(high > low, 1)
                scores[image, start : start + batch_size] = pass_.model(x[image] * masks)
    index = targets[:, :, None, None].expand(-1, -1, channels, 1)  # [k, B, C, 1]
    weights = scores.expand(len(targets), -1, -1, -1).gather(3, index)[..., 0].softmax(dim=2)  # [k, B, C]
    return (weights[..., None, None] * activations).sum(dim=2)


def eigen_cam(activations, targets):
    """Eigen-CAM [k, B, h, w]: the centred activations projected on their first principal component.

    The component's sign is arbitrary; it is chosen so that the largest value is positive (as
    pytorch-grad-cam's sign correction). The same map for every class: the method never sees the target.
    """
    images, channels, height, width = activations.shape
    rows = activations.flatten(2).transpose(1, 2)  # [B, hw, C]: one row per position
    rows = rows - rows.mean(dim=1, keepdim=True)
    _, _, components = torch.linalg.svd(rows.double(), full_matrices=False)
    projection = (rows.double() @ components[:, 0, :, None])[..., 0].to(rows.dtype)  # [B, hw]
    flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
    projection = torch.where(flip[:, None], -projection, projection)
    return projection.view(1, images, height, width).expand(len(targets), -1, -1, -1)


def upsample(maps, size):
    """[N, C, h, w] -> [N, C, H, W], bilinear, as Grad-CAM is shown at the input's size."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def cams(pass_, methods, targets, layer, options=None, upsample_to_input=True):
    """{method: [k, B, H, W]} for methods of the Grad-CAM family at `layer`, one backward pass for all the gradient ones.

    Every function takes `reshape` for a transformer's tokens (see vit.py); torchvision's and timm's ViTs need none.
    """
    options = options or {}
    tokens = pass_.activations[layer]
    grid = pass_.reshape if tokens.dim() == 3 else (lambda maps: maps)  # a transformer's tokens as a grid
    activations = grid(tokens.detach())
    gradients = None
    if set(methods) & set(GRADIENT_CAMS):
        gradients = pass_._gradients(targets, tokens, "vanilla", batched=len(targets) > 1).detach()
        gradients = torch.stack([grid(g) for g in gradients])
    result = {}
    for method in methods:
        if method in GRADIENT_CAMS:
            raw = F.relu(gradient_cam(method, activations, gradients))
        elif method == "cam":
            raw = class_activation_map(pass_, targets, activations, layer)
        elif method == "scorecam":
            raw = F.relu(score_cam(pass_, targets, activations, **options.get(method, {})))
        else:
            raw = F.relu(eigen_cam(activations, targets))
        result[method] = upsample(raw.transpose(0, 1), pass_.input.shape[-2:]).transpose(0, 1) if upsample_to_input else raw
    return result


def _explain(method, model, x, target, layer, reshape, **options):
    from .methods import explain  # methods.py imports this module: read at call time

    return explain(model, x, target, layer, methods=method, options={method: options} if options else None, reshape=reshape)[method]


def cam(model, x, target=None, layer=None, reshape=None):
    """CAM (Zhou et al. 2016): the classifier's weights on `layer`, which must feed global average pooling and then the linear classifier."""
    return _explain("cam", model, x, target, layer, reshape)


def gradcam_pp(model, x, target=None, layer=None, reshape=None):
    """Grad-CAM++ (Chattopadhay et al. 2018, Eq. 19): positive gradients weighted per position, for several instances of a class."""
    return _explain("gradcam_pp", model, x, target, layer, reshape)


def xgradcam(model, x, target=None, layer=None, reshape=None):
    """XGrad-CAM (Fu et al. 2020): gradients averaged with the activations as weights."""
    return _explain("xgradcam", model, x, target, layer, reshape)


def hirescam(model, x, target=None, layer=None, reshape=None):
    """HiResCAM (Draelos and Carin 2020): gradient times activation at each position, summed over channels."""
    return _explain("hirescam", model, x, target, layer, reshape)


def layercam(model, x, target=None, layer=None, reshape=None):
    """Layer-CAM (Jiang et al. 2021): positive gradient times activation at each position: sharp maps at early layers too."""
    return _explain("layercam", model, x, target, layer, reshape)


def scorecam(model, x, target=None, layer=None, batch_size=32, progress=True, reshape=None):
    """Score-CAM (Wang et al. 2020): no gradients; one masked forward pass per channel of `layer`, `batch_size` at a time."""
    return _explain("scorecam", model, x, target, layer, reshape, batch_size=batch_size, progress=progress)


def eigencam(model, x, target=None, layer=None, reshape=None):
    """Eigen-CAM (Muhammad and Yeasin 2020): the activations' first principal component. Class-agnostic: every target gets the same map."""
    return _explain("eigencam", model, x, target, layer, reshape)
