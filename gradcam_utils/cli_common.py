"""What the command line's commands share: one-line argument errors, the device, the output directory, and files
written whole or not at all."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, NoReturn

import torch

from .errors import GradCamError

Writer = Callable[[Path], Any]  # writes the file at the path it is given


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit status 2, like every other error of the command
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def chosen_device(args: argparse.Namespace) -> torch.device:
    wanted = args.device or ({True: "cuda", False: "cpu"}[args.cuda] if args.cuda is not None else None)
    if wanted == "cuda" and not torch.cuda.is_available():
        raise GradCamError("CUDA was asked for, but torch sees no CUDA device here; use --device cpu")
    return torch.device(wanted or ("cuda" if torch.cuda.is_available() else "cpu"))


def output_dir(path: Path) -> Path:
    """The output directory, made once every argument has been checked and before any work starts."""
    if path.exists() and not path.is_dir():
        raise GradCamError(f"the output directory {path} is a file; give a directory with -o")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GradCamError(f"cannot create the output directory {path}: {exc.strerror}; give another with -o") from None
    if not os.access(path, os.W_OK):
        raise GradCamError(f"the output directory {path} is not writable; give another with -o")
    return path


def save(path: Path, write: Writer) -> Path:
    """Write through a temporary file, so an interrupted run leaves no truncated PNG behind."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        write(temporary)
        os.replace(temporary, path)
    except OSError as exc:  # a full disk, or the directory removed while running
        raise GradCamError(f"could not write {path}: {exc.strerror or exc}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


def parse_options(texts: Sequence[str]) -> dict[str, dict[str, int | float | str]]:
    options: dict[str, dict[str, int | float | str]] = {}
    for text in texts:
        key, value = pair(text, "=", "--options", "METHOD.NAME=VALUE")
        method, name = pair(key, ".", "--options", "METHOD.NAME=VALUE")
        options.setdefault(method, {})[name] = number(value)
    return options


def pair(text: str, separator: str, option: str, form: str) -> tuple[str, str]:
    first, _, second = text.partition(separator)
    if not first or not second:
        raise GradCamError(f"{option} takes {form}, not {text!r}")
    return first, second


def number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
