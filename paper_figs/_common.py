"""Shared plumbing for the figure scripts in ``paper_figs/`` (not installed; imported by scripts).

Each figure script defines

  compute(quick: bool, seed: int) -> pandas.DataFrame   pure and seeded: the data of the figure
  plot(data: pandas.DataFrame) -> matplotlib.figure.Figure   data in, Figure out, no I/O

and ends with ``if __name__ == "__main__": figure_main(__file__, compute, plot)``. ``figure_main``
parses ``--quick``, ``--seed`` and ``--out`` and writes ``<out>/<slug>.png``, ``<out>/<slug>.csv``
(the data, long format) and ``<out>/<slug>.json`` (seed, quick flag, versions, timings). The test
suite runs every script once with ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.5,
}

# Colour-blind-safe palette (Okabe–Ito), assigned to algorithms in a stable order.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def figure_main(
    script: str,
    compute: Callable[[bool, int], pd.DataFrame],
    plot: Callable[[pd.DataFrame], "plt.Figure"],
    argv: list[str] | None = None,
) -> Path:
    """Parse ``--quick/--seed/--out``, compute, plot, and write PNG + CSV + JSON. Returns the PNG."""
    slug = Path(script).stem
    parser = argparse.ArgumentParser(description=(compute.__doc__ or slug).strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small, fast version (for tests)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--out", type=Path, default=Path(script).resolve().parent / "out", help="output folder"
    )
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")
    start = time.perf_counter()
    data = compute(args.quick, args.seed)
    compute_s = time.perf_counter() - start
    with plt.rc_context(STYLE):
        figure = plot(data)
        args.out.mkdir(parents=True, exist_ok=True)
        png = args.out / f"{slug}.png"
        figure.savefig(png, bbox_inches="tight")
        plt.close(figure)
    data.to_csv(args.out / f"{slug}.csv", index=False)
    from fixpoint_rl.benchmarks._runner import provenance

    meta = provenance()
    meta.update({"figure": slug, "quick": args.quick, "seed": args.seed, "compute_s": compute_s})
    (args.out / f"{slug}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {png} and {slug}.csv ({len(data)} rows, {compute_s:.1f} s)")
    return png
