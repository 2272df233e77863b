"""Results over many images, stated with their evidence: the mean with a seeded bootstrap interval, how many images
count (and how many gave no number), and each method against each image-blind map image by image (paired).

Bootstrap: the images are resampled with replacement, the percentile interval of the resampled means is reported
(Efron and Tibshirani 1993). Two methods on the same images are compared by their per-image differences, not by
whether their intervals overlap.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from .errors import GradCamError, whole_number

# Which way is better, per measure: +1 higher, -1 lower.
BETTER = {
    "pointing": 1, "relevance_mass": 1, "relevance_rank": 1, "energy": 1,
    "deletion": -1, "deletion (least first)": 1, "insertion": 1, "insertion (least first)": -1,
    "randomization": -1, "data_randomization": -1, "random_logit": -1, "cost": -1,
}  # fmt: skip


def bootstrap(
    values: torch.Tensor, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """The percentile interval of the mean of `values` [n] over `resamples` resamples of the n values (seeded)."""
    if len(values) == 0:
        return float("nan"), float("nan")
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(values), (resamples, len(values)), generator=generator)
    means = values.double()[picks].mean(dim=1)
    tail = (1 - confidence) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(low), float(high)


def summarize(
    rows: pd.DataFrame | Sequence[dict],
    baselines: Sequence[str] = ("random map", "centre prior", "edge map"),
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per method and measure of evaluate(..., per_image=True)'s table: the mean, its bootstrap interval
    (`confidence`, seeded), n (images with a number) and nan (images without one: a constant map has no rank
    correlation, an empty mask no localisation), and for each image-blind baseline that took the measure, the paired
    comparison: the mean per-image difference (method - baseline) with its interval, and the share of images where
    the method is better (which way is better: `BETTER`)."""
    table = pd.DataFrame(list(rows)) if not isinstance(rows, pd.DataFrame) else rows
    missing = {"image", "method", "measure", "value"} - set(table.columns)
    if missing:
        raise GradCamError(f"summarize takes evaluate(..., per_image=True)'s rows; these lack {sorted(missing)}")
    resamples = whole_number("resamples", resamples)
    wide = table.pivot_table(
        index="image", columns=["measure", "method"], values="value", aggfunc="first", dropna=False
    )
    out = []
    # The pivot adds every pair; a blind map takes only some measures
    taken = set(zip(table["measure"], table["method"]))
    for (measure, method), column in wide.items():
        if (measure, method) not in taken:
            continue
        values = torch.tensor(column.to_numpy(dtype=float))
        valid = values[~values.isnan()]
        low, high = bootstrap(valid, resamples, confidence, seed)
        row = {
            "method": method,
            "measure": measure,
            "n": len(valid),
            "nan": int(values.isnan().sum()),
            "mean": float(valid.mean()) if len(valid) else float("nan"),
            "ci low": low,
            "ci high": high,
        }
        for blind in baselines:
            if blind == method or (measure, blind) not in taken:
                continue
            other = torch.tensor(wide[(measure, blind)].to_numpy(dtype=float))
            both = ~(values.isnan() | other.isnan())
            difference = values[both] - other[both]
            d_low, d_high = bootstrap(difference, resamples, confidence, seed)
            better = (difference * BETTER.get(measure, 1) > 0).double()
            row |= {
                f"vs {blind}": float(difference.mean()) if len(difference) else float("nan"),
                f"vs {blind} ci low": d_low,
                f"vs {blind} ci high": d_high,
                f"wins vs {blind}": float(better.mean()) if len(better) else float("nan"),
            }
        out.append(row)
    return pd.DataFrame(out).sort_values(["measure", "method"], kind="stable").reset_index(drop=True)
