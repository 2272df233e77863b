"""Grad-CAM and what came after it: maps that weigh the activations A [B, C, h, w] of one layer.

All read the same recorded forward pass (recording.Recording). The gradient variants share one
batched backward pass to the layer, G = d logit_c / d A [k, B, C, h, w]:

- gradcam     (Selvaraju et al. 2017)    relu(sum_c mean_ij(G) A)
- gradcam_pp  (Chattopadhay et al. 2018) relu(sum_c w A), w = sum_ij alpha relu(G), alpha of Eq. 19
- xgradcam    (Fu et al. 2020)           relu(sum_c w A), w = sum_ij G A / sum_ij A
- hirescam    (Draelos and Carin 2020)   relu(sum_c G A), element-wise
- layercam    (Jiang et al. 2021)        relu(sum_c relu(G) A), element-wise
Without gradients:
- cam         (Zhou et al. 2016)         sum_c W[c] A, the classifier's weights (no ReLU in the paper)
- scorecam    (Wang et al. 2020)         relu(sum_c w A), w = softmax over channels of the logit of x masked by each
channel
- eigencam    (Muhammad and Yeasin 2020) relu(A projected on its first principal component): one map for every class
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import GradCamError, one_of, whole_number
from .models import eval_mode
from .recording import Recording


def _gradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    return (gradients.mean(dim=(3, 4), keepdim=True) * activations).sum(dim=2)


def _gradcam_pp(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    # Eq. 19 with the exponential score's closed form: second and third derivatives become G^2 and G^3.
    g2, g3 = gradients**2, gradients**3
    denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g3
    alpha = torch.where(denominator != 0, g2 / denominator.where(denominator != 0, 1), 0)
    weights = (alpha * F.relu(gradients)).sum(dim=(3, 4), keepdim=True)
    return (weights * activations).sum(dim=2)


def _xgradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    total = activations.sum(dim=(2, 3), keepdim=True)
    weights = (gradients * activations).sum(dim=(3, 4), keepdim=True) / total.where(total != 0, 1)
    return (weights * activations).sum(dim=2)


def _hirescam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    return (gradients * activations).sum(dim=2)


def _layercam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    return (F.relu(gradients) * activations).sum(dim=2)


# The gradient variants, A [B, C, h, w] and G [k, B, C, h, w] -> [k, B, h, w] before the ReLU.
GRADIENT_CAMS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam": _gradcam,
    "gradcam_pp": _gradcam_pp,
    "xgradcam": _xgradcam,
    "hirescam": _hirescam,
    "layercam": _layercam,
}
WITHOUT_GRADIENTS = ("cam", "scorecam", "eigencam")


def gradient_cam(method: str, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """[k, B, h, w] from A [B, C, h, w] and G [k, B, C, h, w], before the ReLU."""
    return GRADIENT_CAMS[method](activations, gradients)


def class_activation_map(
    pass_: Recording, targets: torch.Tensor, activations: torch.Tensor, layer: str
) -> torch.Tensor:
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


def _is_head(linear: torch.nn.Linear, pooled: torch.Tensor, logits: torch.Tensor) -> bool:
    if linear.out_features != logits.shape[1]:
        return False
    with torch.no_grad():
        predicted = F.linear(pooled, linear.weight, linear.bias)
    return bool(torch.allclose(predicted, logits, rtol=1e-3, atol=1e-3 * float(logits.abs().max())))


def score_cam(
    pass_: Recording, targets: torch.Tensor, activations: torch.Tensor, batch_size: int = 32, progress: bool = True
) -> torch.Tensor:
    """Score-CAM [k, B, h, w]: x masked by each channel of A, upsampled to x's size and scaled to [0, 1] (Eq. 3),
    one forward pass per channel, batched; every class is read from the same masked passes.

    The weights are the softmax over the channels of each masked input's logit, as in torchcam and pytorch-grad-cam.
    `progress`: a progress bar when it takes more than a couple of seconds.
    """
    batch_size = whole_number("batch_size", batch_size)
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


def eigen_cam(activations: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
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


def upsample(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """[N, C, h, w] -> [N, C, H, W], bilinear, as Grad-CAM is shown at the input's size."""
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


def cams(
    pass_: Recording,
    methods: Sequence[str],
    targets: torch.Tensor,
    layer: str,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    upsample_to_input: bool = True,
) -> dict[str, torch.Tensor]:
    """{method: [k, B, H, W]} for methods of the Grad-CAM family at `layer`, one backward pass for all the gradient
    ones.

    A transformer's tokens are read as a grid by the pass's `reshape` (see vit.py). `options`: {"scorecam": {...}}.
    """
    for method in methods:
        one_of("method of the Grad-CAM family", method, [*GRADIENT_CAMS, *WITHOUT_GRADIENTS])
    options = options or {}
    tokens = pass_.activations[layer]
    grid = pass_.reshape if tokens.dim() == 3 and pass_.reshape is not None else (lambda maps: maps)
    activations = grid(tokens.detach())
    gradients = torch.empty(0)
    if any(method in GRADIENT_CAMS for method in methods):
        by_class = pass_.gradients(targets, tokens, batched=len(targets) > 1).detach()  # [k, *tokens.shape]
        # The k classes as one batch of k * B: for feature maps `grid` is the identity, and this costs no copy.
        gradients = grid(by_class.flatten(0, 1)).unflatten(0, by_class.shape[:2])
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
        result[method] = (
            upsample(raw.transpose(0, 1), pass_.input.shape[-2:]).transpose(0, 1) if upsample_to_input else raw
        )
    return result
