"""Results over many images, stated with their evidence: the mean with a seeded bootstrap interval, how many images
count (and how many gave no number), and each method against each image-blind map image by image (paired).

Bootstrap: the images are resampled with replacement, the percentile interval of the resampled means is reported
(Efron and Tibshirani 1993). Two methods on the same images are compared by their per-image differences, not by
whether their intervals overlap, and by the exact sign test on the images where one of them is better: with 4 images,
winning on every one has a two-sided p of 2/16.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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


def sign_test(wins: int, losses: int) -> float:
    """The exact two-sided sign test: the chance, if each image were a coin toss between the two maps, of a split at
    least as uneven as `wins` against `losses` (ties left out); NaN with no image to count."""
    n = wins + losses
    if n == 0:
        return math.nan
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


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
    comparison: the mean per-image difference (method - baseline) with its interval, the share of images where the
    method is better (which way is better: `BETTER`), and the sign test's p on the images that are not ties."""
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
            signed = difference * BETTER.get(measure, 1)
            wins, losses = int((signed > 0).sum()), int((signed < 0).sum())
            row |= {
                f"vs {blind}": float(difference.mean()) if len(difference) else float("nan"),
                f"vs {blind} ci low": d_low,
                f"vs {blind} ci high": d_high,
                f"wins vs {blind}": wins / len(signed) if len(signed) else float("nan"),
                f"p vs {blind}": sign_test(wins, losses),
            }
        out.append(row)
    return pd.DataFrame(out).sort_values(["measure", "method"], kind="stable").reset_index(drop=True)


def interval(row: pd.Series, against: str | None = None, digits: int = 2) -> str:
    """ "0.28 [0.25, 0.30]": a summary row's mean and its interval, or with `against` (an image-blind map) the paired
    difference from it, signed: "+0.10 [+0.07, +0.12]". Blank where there is no number."""
    keys = (
        ("mean", "ci low", "ci high")
        if against is None
        else (f"vs {against}", f"vs {against} ci low", f"vs {against} ci high")
    )
    mean, low, high = (float(row.get(key, math.nan)) for key in keys)
    if math.isnan(mean):
        return ""
    sign = "" if against is None else "+"
    return f"{mean:{sign}.{digits}f} [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def p_value(p: float) -> str:
    """ "p = 0.03", "p < 0.001": a sign test's p as prose."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def versus(row: pd.Series, against: str, digits: int = 2) -> str:
    """A method against an image-blind map, from its summary row: "+0.10 [+0.09, +0.11], better on 97% of images, sign
    test p < 0.001"; which way is better: `BETTER`."""
    wins = float(row.get(f"wins vs {against}", math.nan))
    if math.isnan(wins):
        return f"no comparison with the {against}"
    return (
        f"{interval(row, against, digits)}, better on {wins:.0%} of images, sign test "
        f"{p_value(float(row[f'p vs {against}']))}"
    )


def to_markdown(
    summary: pd.DataFrame,
    measures: Sequence[str] | None = None,
    titles: Mapping[str, str] | None = None,
    digits: int = 2,
    methods: Sequence[str] | None = None,
) -> str:
    """The summary as a Markdown table: a row per method (by its title in `titles`; `methods` picks and orders them),
    a column per measure, each cell the mean and its 95% interval; a cell over fewer images than its column's most
    says so, "(n = 39)"."""
    measures = list(dict.fromkeys(summary["measure"])) if measures is None else list(measures)
    titles = titles or {}
    methods = list(dict.fromkeys(summary["method"])) if methods is None else list(methods)
    cells = summary.set_index(["method", "measure"])
    most = summary.groupby("measure")["n"].max()
    lines = ["| method | " + " | ".join(measures) + " |", "|---" * (len(measures) + 1) + "|"]
    for method in methods:
        row = []
        for measure in measures:
            if (method, measure) not in cells.index:
                row.append("")
                continue
            found = cells.loc[(method, measure)]
            fewer = f" (n = {int(found['n'])})" if found["n"] < most[measure] else ""
            row.append(interval(found, digits=digits) + fewer)
        lines.append(f"| {titles.get(method, method)} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
