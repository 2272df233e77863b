"""A controlled image set where the evidence is known by construction (as BAM, SMERF and FunnyBirds build theirs).

Each image holds one object whose shape is the class (`SHAPE_CLASSES`), of random colour, size, position and
rotation, on a procedural texture, beside small distractor marks that never decide the class; its mask is the
object's pixels. With `shortcut="aligned"` a small coloured marker sits in a random corner and its colour codes the
label, a spurious cue a model can learn instead of the shape (Lapuschkin et al. 2019; Geirhos et al. 2020); with
`shortcut="conflict"` the marker codes another class than the shape, with `shortcut="random"` any class, drawn
independently of the shape (a marker that carries no information). `mask="marker"` gives the marker's mask in
place of the object's, for measuring how much of a map lands on the marker. Every image is drawn from its own generator,
seeded by (seed, split, index): the same call gives the same images, and "train" and "test" never share one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .errors import GradCamError, one_of, whole_number

SHAPE_CLASSES = ("disc", "square", "triangle", "cross")
MARKER_COLOURS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0))  # red, green, blue, yellow
SPLITS = ("train", "test")
SHORTCUTS = (None, "aligned", "conflict", "random")
MASKS = ("object", "marker")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)  # the images are (pixel - 0.5) / 0.25, pixels in [0, 1]


def _uniform(generator: np.random.Generator, low: float, high: float) -> float:
    return float(generator.uniform(low, high))


def _rand(generator: np.random.Generator, *shape: int) -> torch.Tensor:
    return torch.from_numpy(generator.random(shape, dtype=np.float32))


def _inside(shape: str, u: torch.Tensor, v: torch.Tensor, radius: float) -> torch.Tensor:
    """Which pixels lie inside the shape, in the object's own coordinates (u, v) centred on it."""
    if shape == "disc":
        return u**2 + v**2 <= radius**2
    if shape == "square":
        return (u.abs() <= 0.8 * radius) & (v.abs() <= 0.8 * radius)
    if shape == "triangle":  # equilateral, its corners on the circle of `radius`
        inside = torch.ones_like(u, dtype=torch.bool)
        for corner in range(3):
            # The outward normal of the side facing this corner
            angle = math.pi / 2 + 2 * math.pi * corner / 3 + math.pi
            inside &= u * math.cos(angle) + v * math.sin(angle) <= radius / 2
        return inside
    width = 0.3 * radius  # cross: two bars
    return ((u.abs() <= width) & (v.abs() <= radius)) | ((v.abs() <= width) & (u.abs() <= radius))


def _texture(generator: np.random.Generator, size: int, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """[3, size, size] in [0, 1]: a base colour, two sinusoidal gratings (random orientation and period), fine noise."""
    base = 0.25 + 0.5 * _rand(generator, 3, 1, 1)
    texture = base.expand(3, size, size).clone()
    for _ in range(2):
        angle, period = _uniform(generator, 0, math.pi), _uniform(generator, 4, 16)
        phase = (columns * math.cos(angle) + rows * math.sin(angle)) * 2 * math.pi / period
        # numpy's sin: torch's spins up its thread pool for a 64 x 64 grid, ten times slower on a busy 2-core machine
        texture += 0.08 * torch.from_numpy(np.sin(phase.numpy())) * (_rand(generator, 3, 1, 1) - 0.5) * 2
    return texture + 0.03 * torch.from_numpy(generator.standard_normal((3, size, size), dtype=np.float32))


class ShapesDataset(Dataset):
    """(image [3, size, size] float32, normalised; label; mask [size, size] bool of the object's pixels, or of the
    marker's with mask="marker").

    `markers[i]`: (the class the marker's colour codes, the marker's mask), for a dataset with a shortcut.
    """

    def __init__(
        self,
        n: int,
        split: str = "test",
        seed: int = 0,
        shortcut: str | None = None,
        size: int = 64,
        mask: str = "object",
    ) -> None:
        self.n = whole_number("n", n)
        self.split = one_of("split", split, SPLITS)
        self.seed = whole_number("seed", seed, minimum=0)
        self.shortcut = one_of("shortcut", shortcut, SHORTCUTS)
        self.size = whole_number("size", size, minimum=32)
        self.mask = one_of("mask", mask, MASKS)
        if self.mask == "marker" and self.shortcut is None:
            raise GradCamError("mask='marker' needs a marker: give shortcut='aligned', 'conflict' or 'random'")
        self.markers = _Markers(self)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        image, label, mask, marker = self.draw(index)
        return image, label, marker[1] if self.mask == "marker" and marker is not None else mask

    def picture(self, index: int) -> Image.Image:
        """Item `index` as a 64 x 64 RGB photo (what preprocess turns back into the item's image, to 1/255), for the
        explorers and for saving."""
        pixels = self.draw(index)[0] * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]
        return Image.fromarray((pixels.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())

    def generator(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} is out of range for a dataset of {self.n} images")
        # A stream of its own for every (seed, split, index), by numpy's SeedSequence: torch's CPU generator keeps only
        # 32 bits of its seed, so seeds like (seed, split) * 2^40 + index gave the train and test splits one stream.
        return np.random.default_rng([self.seed, SPLITS.index(self.split), index])

    def draw(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor, tuple[int, torch.Tensor] | None]:
        """The item and, with a shortcut, its marker: (image, label, mask, (marker label, marker mask) or None)."""
        generator, size = self.generator(index), self.size
        rows, columns = torch.meshgrid(
            torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
        )
        picture = _texture(generator, size, rows, columns)
        for _ in range(int(generator.integers(2, 5))):  # distractors: short strokes, under the object
            length, angle = _uniform(generator, 0.08, 0.16) * size, _uniform(generator, 0, math.pi)
            top, left = _uniform(generator, 0, size), _uniform(generator, 0, size)
            along = (columns - left) * math.cos(angle) + (rows - top) * math.sin(angle)
            across = -(columns - left) * math.sin(angle) + (rows - top) * math.cos(angle)
            stroke = (along.abs() <= length / 2) & (across.abs() <= 0.8)
            picture[:, stroke] = _rand(generator, 3, 1)
        label = int(generator.integers(len(SHAPE_CLASSES)))
        radius = _uniform(generator, 0.16, 0.22) * size
        reach = 1.15 * radius + size / 8  # clear of the corners, where a marker may sit
        centre_row, centre_column = _uniform(generator, reach, size - reach), _uniform(generator, reach, size - reach)
        angle = _uniform(generator, 0, 2 * math.pi)
        u = (columns - centre_column) * math.cos(angle) + (rows - centre_row) * math.sin(angle)
        v = -(columns - centre_column) * math.sin(angle) + (rows - centre_row) * math.cos(angle)
        mask = _inside(SHAPE_CLASSES[label], u, v, radius)
        background = picture.mean(dim=(1, 2))
        colour = _rand(generator, 3)
        while float((colour - background).abs().sum()) < 0.6:  # keep the object visible against its background
            colour = _rand(generator, 3)
        picture[:, mask] = colour[:, None]
        marker = None
        if self.shortcut is not None:
            offset = int(generator.integers(1, len(SHAPE_CLASSES)))
            if self.shortcut == "random":
                coded = int(generator.integers(len(SHAPE_CLASSES)))
            else:
                coded = label if self.shortcut == "aligned" else (label + offset) % len(SHAPE_CLASSES)
            side, corner = max(3, size // 16), int(generator.integers(4))
            top, left = (2 if corner < 2 else size - 2 - side), (2 if corner % 2 == 0 else size - 2 - side)
            marker_mask = torch.zeros(size, size, dtype=torch.bool)
            marker_mask[top : top + side, left : left + side] = True
            picture[:, marker_mask] = torch.tensor(MARKER_COLOURS[coded])[:, None]
            marker = (coded, marker_mask)
        image = (picture.clamp(0, 1) - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        return image, label, mask, marker


class _Markers:
    """dataset.markers[i] = (marker label, marker mask), drawn with the image; an error for a dataset without them."""

    def __init__(self, dataset: ShapesDataset) -> None:
        self.dataset = dataset

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        marker = self.dataset.draw(index)[3]
        if marker is None:
            raise GradCamError("this dataset has no markers; make one with shortcut='aligned', 'conflict' or 'random'")
        return marker

    def __len__(self) -> int:
        return len(self.dataset)


def shapes_dataset(
    n: int, split: str = "test", seed: int = 0, shortcut: str | None = None, size: int = 64, mask: str = "object"
) -> ShapesDataset:
    """`n` images of `SHAPE_CLASSES` on textured backgrounds, with the masks of their evidence (see the module doc)."""
    return ShapesDataset(n, split, seed, shortcut, size, mask)
