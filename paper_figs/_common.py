"""Shared plumbing for the figure scripts in ``paper_figs/`` (not installed; imported by scripts).

Each figure script defines

  compute(quick: bool, seed: int) -> pandas.DataFrame   pure and seeded: the data of the figure
  plot(data: pandas.DataFrame) -> matplotlib.figure.Figure   data in, Figure out, no I/O

and a module constant ``UNCERTAINTY`` (a string, or a function of ``quick`` returning one) saying
what the bands / error bars are and over how many seeds, or that the figure is exact (no bands);
``figure_main`` prints it under the figure and records it in the JSON. Each script ends with
``if __name__ == "__main__": figure_main(__file__, compute, plot)``. ``figure_main``
parses ``--quick``, ``--seed`` and ``--out`` and writes ``<out>/<slug>.png``, ``<out>/<slug>.csv``
(the data, long format) and ``<out>/<slug>.json`` (seed, quick flag, versions, timings). The test
suite runs every script once with ``--quick``.
"""

from __future__ import annotations

import argparse
import io
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


def add_footnote(figure, text: str) -> None:
    """Print ``text`` under everything drawn (legends below the axes included).

    ``savefig(bbox_inches="tight")`` re-anchors figure-level legends to the cropped box, which would
    move them onto a note placed below them; so the legends are first pinned to the first axes
    (whose position tight saving keeps), and the note is placed in the same axes' coordinates.
    """
    if not figure.axes:
        return
    figure.canvas.draw()  # lay out legends first: their positions are settled at draw time
    renderer = figure.canvas.get_renderer()
    reference = figure.axes[0]
    to_axes = reference.transAxes.inverted()
    for legend in figure.legends:
        extent = legend.get_window_extent(renderer)
        (x0, y0), (x1, y1) = to_axes.transform([(extent.x0, extent.y0), (extent.x1, extent.y1)])
        legend.set_bbox_to_anchor((x0, y0, x1 - x0, y1 - y0), transform=reference.transAxes)
        legend.set_loc("lower left")
        legend.borderaxespad = 0.0
    bottom = min(artist.get_tightbbox(renderer).y0 for artist in [*figure.axes, *figure.legends])
    left = min(artist.get_tightbbox(renderer).x0 for artist in figure.axes)
    x, y = to_axes.transform((left, bottom - 4.0 * figure.dpi / 72.0))  # 4 points below
    reference.text(x, y, text, transform=reference.transAxes, fontsize=7, color="0.3",
                   ha="left", va="top", clip_on=False)


def sweep_seeds(run_seed: Callable, seeds, quick: bool, workers: int = 2) -> pd.DataFrame:
    """Rows of ``run_seed(dict(seed=s, quick=quick))`` for every seed, one seed per worker process
    of ``fixpoint_rl.deep.sweep.run_sweep`` (each worker on one thread), as one long DataFrame."""
    import os

    from fixpoint_rl.deep.sweep import run_sweep

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per worker process
    results = run_sweep(run_seed, [dict(seed=s, quick=quick) for s in seeds], workers=workers)
    return pd.DataFrame([row for rows in results for row in rows])


def uncertainty_note(compute: Callable, quick: bool) -> str:
    """The script's ``UNCERTAINTY`` statement (bands and seeds, or "exact"), for this size."""
    note = compute.__globals__.get("UNCERTAINTY")
    if note is None:  # tests/test_docs.py fails on a figure script without one
        return "(this figure does not state its bands or seeds)"
    return note(quick) if callable(note) else str(note)


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
    uncertainty = uncertainty_note(compute, args.quick)
    with plt.rc_context(STYLE):
        figure = plot(data)
        add_footnote(figure, uncertainty)
        image = io.BytesIO()
        figure.savefig(image, format="png", bbox_inches="tight")
        plt.close(figure)
    from fixpoint_rl.tabular.core.records import atomic_write_files, dumps_header, provenance

    meta = provenance()
    meta.update({"figure": slug, "quick": args.quick, "seed": args.seed, "compute_s": compute_s,
                 "uncertainty": uncertainty})
    png = args.out / f"{slug}.png"
    # PNG, data and header appear together (temporary files renamed into place), never partially
    atomic_write_files({png: image.getvalue(), args.out / f"{slug}.csv": data.to_csv(index=False),
                        args.out / f"{slug}.json": dumps_header(meta)})
    print(f"wrote {png} and {slug}.csv ({len(data)} rows, {compute_s:.1f} s)")
    return png
