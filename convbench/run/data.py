"""Image-classification data for short training runs, all held in memory as tensors.

- synthetic (default): a seeded, learnable set generated at the model's input size. Each class owns a smooth
  random pattern (an 8x8 field upsampled); an image is its class pattern, randomly shifted and scaled, plus
  noise. A held-out split comes from the same classes with a different seed. Nothing is downloaded.
- cifar10:PATH: the CIFAR-10 python-pickle layout (data_batch_1..5, test_batch), resized to the input size.
- folder:PATH: one sub-folder per class of image files (Pillow reads them), resized; a tenth held out."""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from convbench.errors import UserError


@dataclass
class Dataset:
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    def batches(self, batch_size: int, steps: int, seed: int, rank: int = 0, world: int = 1):
        """`steps` random batches; each rank draws a different stream of the same training set."""
        gen = torch.Generator().manual_seed(seed * 1000 + rank)
        n = len(self.train_y)
        for _ in range(steps):
            idx = torch.randint(0, n, (batch_size,), generator=gen)
            yield self.train_x[idx], self.train_y[idx]


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(dim=(0, 2, 3), keepdim=True)) / (x.std(dim=(0, 2, 3), keepdim=True) + 1e-6)


Shape = tuple[int, int, int]  # C, H, W


def synthetic(shape: Shape, num_classes: int = 10, train: int = 2048, test: int = 512, seed: int = 0) -> Dataset:
    channels, height, width = shape
    gen = torch.Generator().manual_seed(seed)
    patterns = F.interpolate(torch.randn(num_classes, channels, 8, 8, generator=gen), size=(height, width), mode="bilinear",
                             align_corners=False)

    def draw(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, num_classes, (n,), generator=g)
        scale = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
        # Shifts of up to an eighth of each side; one draw for both sides of a square image.
        shifts = torch.randint(-height // 8, height // 8 + 1, (n, 2), generator=g) if height == width else \
            torch.stack([torch.randint(-height // 8, height // 8 + 1, (n,), generator=g),
                         torch.randint(-width // 8, width // 8 + 1, (n,), generator=g)], dim=1)
        x = patterns[y] * scale
        x = torch.stack([torch.roll(img, (int(dy), int(dx)), dims=(1, 2)) for img, (dy, dx) in zip(x, shifts)])
        return x + 0.8 * torch.randn(x.shape, generator=g), y

    train_x, train_y = draw(train, torch.Generator().manual_seed(seed + 1))
    test_x, test_y = draw(test, torch.Generator().manual_seed(seed + 2))
    return Dataset("synthetic", train_x, train_y, test_x, test_y, num_classes)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def cifar10(path: Path, size: tuple[int, int]) -> Dataset:
    def load(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for name in names:
            with open(path / name, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            xs.append(torch.as_tensor(batch[b"data"], dtype=torch.uint8).reshape(-1, 3, 32, 32))
            ys.append(torch.as_tensor(batch[b"labels"], dtype=torch.long))
        return torch.cat(xs).float() / 255, torch.cat(ys)

    train_files = sorted(p.name for p in path.glob("data_batch_*"))
    if not train_files or not (path / "test_batch").exists():
        raise UserError(f"{path} is not a CIFAR-10 python folder (data_batch_1..5 and test_batch)")
    try:
        train_x, train_y = load(train_files)
        test_x, test_y = load(["test_batch"])
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
        raise UserError(f"cannot read CIFAR-10 batches in {path}: {type(exc).__name__}: {exc}") from None
    return Dataset("cifar10", _normalize(_resize(train_x, size)), train_y, _normalize(_resize(test_x, size)), test_y, 10)


def image_folder(path: Path, size: tuple[int, int], seed: int = 0) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise UserError(f"{path} needs one sub-folder per class (found {len(classes)})")
    xs, ys = [], []
    for label, name in enumerate(classes):
        for file in sorted((path / name).iterdir()):
            try:
                with Image.open(file) as img:
                    rgb = img.convert("RGB").resize((size[1], size[0]))
            except (UnidentifiedImageError, OSError):
                continue  # not an image: skipped, as image-folder loaders do
            xs.append(torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).reshape(size[0], size[1], 3).permute(2, 0, 1))
            ys.append(label)
    if len(xs) < 2:
        raise UserError(f"{path} holds fewer than two readable images")
    x, y = _normalize(torch.stack(xs).float() / 255), torch.tensor(ys)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = max(1, len(y) // 10)
    test, train = order[:n_test], order[n_test:]
    return Dataset("folder", x[train], y[train], x[test], y[test], len(classes))


def load_data(spec: str, shape: Shape, seed: int) -> Dataset:
    """The data `spec` names, as images of `shape` (C, H, W); real images are RGB, so they need 3 channels."""
    kind, _, where = spec.partition(":")
    if kind == "synthetic" and not where:
        return synthetic(shape, seed=seed)
    if kind in ("cifar10", "folder"):
        path = Path(where)
        if not where or not path.is_dir():
            raise UserError(f"--data {spec}: {where or '(no path)'} is not a readable folder")
        if shape[0] != 3:
            raise UserError(f"--data {kind} holds RGB images; the model takes {shape[0]} channels")
        return cifar10(path, shape[1:]) if kind == "cifar10" else image_folder(path, shape[1:], seed)
    raise UserError(f"unknown --data {spec!r}; use synthetic, cifar10:PATH or folder:PATH")
