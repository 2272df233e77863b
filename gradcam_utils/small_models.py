"""Small CNNs trained on the shapes set (shapes.py), whose weights ship with the package: models with known answers.

- "shapes": trained on the shape labels; at least 95% accuracy on a fresh test split.
- "shortcut": the same network trained with the aligned marker (shortcut="aligned"); on conflict images it follows
  the marker, which shows that the marker, not the shape, is the evidence it uses.
- "shuffled": the same network trained on shuffled labels, the data-randomization test of Adebayo et al. 2018
  (Sec. 5): chance accuracy on the test split.

The architecture: four blocks of 3 x 3 convolution, batch norm and ReLU (8, 16, 32 and 64 channels; the first three
followed by 2 x 2 max pooling, so the last block's maps are 8 x 8), global average pooling and one linear layer, so
that every method of the series applies, CAM included. The recipe (`train_small_model`): Adam, learning rate 3e-3 with
a cosine decay to 0, batches of 64, `epochs` passes over `n` training images drawn with the model's seed; the images
carry the aligned marker for "shortcut", none for the others, or the marker `shortcut=` names ("random": a marker
whose colour says nothing of the class, the fix notebook 13 tries).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .errors import GradCamError, close_matches, whole_number
from .shapes import MEAN, SHAPE_CLASSES, SHORTCUTS, STD, shapes_dataset

SMALL_MODELS = ("shapes", "shortcut", "shuffled")
WEIGHTS = Path(__file__).resolve().parent / "weights"
IMAGES, EPOCHS, BATCH, LEARNING_RATE = 4000, 16, 64, 3e-3  # the recipe


def _block(inputs: int, outputs: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """features.0 ... features.3 (the layers list_layers offers), global average pooling, one linear classifier."""

    def __init__(self, classes: int = len(SHAPE_CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(3, 8, True), _block(8, 16, True), _block(16, 32, True), _block(32, 64, False)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, classes)
        # input_config reads this: (resize, crop, mean, std) of shapes.py's images, which come ready-made.
        self.gradcam_input = (64, 64, MEAN, STD)
        self.class_names = SHAPE_CLASSES  # what predict and the explorers call the classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _check_name(name: str) -> str:
    if name not in SMALL_MODELS:
        raise GradCamError(f"unknown small model {name!r}{close_matches(name, SMALL_MODELS)}")
    return name


def load_small_model(name: str, device: str | torch.device = "cpu") -> SmallCNN:
    """The shipped `name` model ("shapes", "shortcut" or "shuffled"), in eval mode on `device`."""
    path = WEIGHTS / f"{_check_name(name)}.pt"
    if not path.exists():
        raise GradCamError(
            f"the weights {path} are not installed with gradcam_utils; train them with train_small_model({name!r})"
        )
    model = SmallCNN()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval().to(device)


def _training_set(name: str, n: int, seed: int, shortcut: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    data = shapes_dataset(n, "train", seed, shortcut=shortcut)
    items = [data[i] for i in tqdm(range(n), desc=f"drawing {name} images", unit="image", delay=2)]
    images, labels = torch.stack([image for image, _, _ in items]), torch.tensor([label for _, label, _ in items])
    if name == "shuffled":  # the labels of other images: nothing in an image decides its label
        labels = labels[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    return images, labels


def train_small_model(
    name: str,
    seed: int = 0,
    n: int = IMAGES,
    epochs: int = EPOCHS,
    progress: bool = True,
    shortcut: str | None = "default",
) -> SmallCNN:
    """A freshly trained `name` model (see the module's doc for the recipe), in eval mode on the CPU. `shortcut`: the
    training images' marker (one of shapes.SHORTCUTS); by default the aligned one for "shortcut", none otherwise."""
    n, epochs = whole_number("n", n), whole_number("epochs", epochs)
    if shortcut == "default":
        shortcut = "aligned" if name == "shortcut" else None
    elif shortcut not in SHORTCUTS:
        raise GradCamError(f"unknown shortcut {shortcut!r}; choose from: {', '.join(map(str, SHORTCUTS))}")
    images, labels = _training_set(_check_name(name), n, seed, shortcut)
    torch.manual_seed(seed)
    model = SmallCNN()
    batches = (n + BATCH - 1) // BATCH
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs * batches)
    order = torch.Generator().manual_seed(seed)
    model.train()
    with tqdm(total=epochs * batches, desc=f"training {name}", unit="batch", disable=not progress) as bar:
        for _ in range(epochs):
            for rows in torch.randperm(n, generator=order).split(BATCH):
                loss = F.cross_entropy(model(images[rows]), labels[rows])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                bar.update()
    return model.eval()


def accuracy(
    model: nn.Module, data: torch.utils.data.Dataset, labels: list[int] | None = None, batch_size: int = 256
) -> float:
    """The share of `data`'s images whose predicted class is their label (or the given `labels`)."""
    correct, total = 0, 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(data), batch_size):  # type: ignore[arg-type]
            items = [data[i] for i in range(start, min(start + batch_size, len(data)))]  # type: ignore[arg-type]
            images = torch.stack([item[0] for item in items]).to(device)
            wanted = torch.tensor(
                labels[start : start + len(items)] if labels is not None else [item[1] for item in items]
            )
            correct += int((model(images).argmax(1).cpu() == wanted).sum())
            total += len(items)
    return correct / total
