"""Training records: CSV files, TensorBoard, a log file, and PNG plots at the end."""

from __future__ import annotations

import csv
import logging
import math
import sys
from collections.abc import Mapping
from pathlib import Path

from realesr.atomic import atomic_path
from realesr.imagefiles import write_figure
from realesr.schema import Int
from realesr.statefiles import read_csv

__all__ = ["MetricsLog", "attach_log_file", "close_logging", "plot_curves", "setup_logging"]

log = logging.getLogger("realesr.train")


class _Held(logging.Handler):
    """Keeps the records logged before the run folder is used, for train.log once it is opened."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")


def setup_logging(is_main: bool) -> None:
    """Rank 0 logs INFO to stderr (and, from :func:`attach_log_file` on, to ``<run>/train.log``); other ranks only
    warnings. Until the file is attached the records are held, so a run refused at start writes nothing."""
    close_logging()
    log.propagate = False
    log.setLevel(logging.INFO if is_main else logging.WARNING)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(_FORMAT)
    log.addHandler(stream)
    if is_main:
        log.addHandler(_Held())


def attach_log_file(run_dir: Path) -> None:
    """Open ``<run>/train.log`` (appending) and write the records held since :func:`setup_logging` into it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    fh.setFormatter(_FORMAT)
    for h in list(log.handlers):
        if isinstance(h, _Held):
            for record in h.records:
                fh.handle(record)
            log.removeHandler(h)
    log.addHandler(fh)


def close_logging() -> None:
    for h in list(log.handlers):
        h.close()
        log.removeHandler(h)


class MetricsLog:
    """Rows of ``iteration`` + named values to a CSV file (and TensorBoard scalars under ``prefix/``).

    On resume, rows past the resumed iteration (written after the checkpoint by the interrupted run) are
    dropped, so the file reads as one uninterrupted run.
    """

    def __init__(
        self, path: Path, columns: list[str], resume_iteration: int | None = None, tb=None, prefix: str = ""
    ) -> None:
        self.path = path
        self.columns = ["iteration", *columns]
        self.tb = tb
        self.prefix = prefix
        kept: list[dict] = []
        if resume_iteration is not None and path.is_file():
            rows = read_csv(
                path,
                {"iteration": Int(0, text=True)},
                what="a training log",
                remedy="repair or delete it",
                required=("iteration",),
            )
            kept = [r for r in rows if r["iteration"] <= resume_iteration]
        with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
        self._file = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, self.columns, extrasaction="ignore")

    def write(self, iteration: int, values: Mapping[str, float | str]) -> None:
        row = {"iteration": iteration, **{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in values.items()}}
        self._writer.writerow(row)
        self._file.flush()
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{self.prefix}{k}", v, iteration)

    def close(self) -> None:
        self._file.close()


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _smoothed(values: list[float], weight: float = 0.9) -> list[float]:
    """A debiased exponential moving average (as TensorBoard's smoothing); NaN entries are skipped."""
    out, avg, n = [], 0.0, 0
    for v in values:
        if math.isfinite(v):
            avg, n = weight * avg + (1 - weight) * v, n + 1
        out.append(avg / (1 - weight**n) if n else math.nan)
    return out


def plot_curves(run_dir: Path) -> list[Path]:
    """``plots/losses.png`` (every loss and gradient-norm column of train_log.csv, raw and smoothed, and the lr) and
    ``plots/validation.png`` (one panel per metric, a curve per validation set)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    out_dir = run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = _read_csv(run_dir / "train_log.csv")
    loss_cols = [c for c in (rows[0].keys() if rows else []) if c.startswith(("l_", "grad_norm", "lr_"))]
    val_rows = [r for r in _read_csv(run_dir / "val_log.csv") if r.get("metric")]
    figures = []
    if rows and loss_cols:
        figures.append(("losses.png", _plot_losses(plt, run_dir, rows, loss_cols)))
    if val_rows:
        figures.append(("validation.png", _plot_validation(plt, val_rows)))
    for name, fig in figures:
        path = out_dir / name
        write_figure(path, fig, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _plot_losses(plt, run_dir: Path, rows: list[dict], loss_cols: list[str]):
    fig, axes = plt.subplots(len(loss_cols), 1, figsize=(8, 2.2 * len(loss_cols)), sharex=True, squeeze=False)
    its = [int(r["iteration"]) for r in rows]
    for ax, col in zip(axes[:, 0], loss_cols):
        vals = [float(r[col]) if r[col] not in ("", None) else math.nan for r in rows]
        if col.startswith("lr_"):
            ax.plot(its, vals, lw=1.2)
        else:  # raw values faint underneath, an exponential moving average on top
            ax.plot(its, vals, lw=0.8, alpha=0.35, label="raw")
            ax.plot(its, _smoothed(vals), lw=1.4, label="smoothed")
        ax.set_ylabel(col, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("iteration")
    fig.suptitle(f"{run_dir.name}: training losses")
    fig.tight_layout()
    return fig


def _plot_validation(plt, val_rows: list[dict]):
    metrics = [m for m in ("psnr", "ssim", "niqe") if any(r["metric"] == m for r in val_rows)]
    metrics += sorted({r["metric"] for r in val_rows} - set(metrics))
    titles = {
        "psnr": "PSNR (Y) [dB], higher is better",
        "ssim": "SSIM (Y), higher is better",
        "niqe": "NIQE (Y), lower is better",
    }
    colour = {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys(r["set"] for r in val_rows))}
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sel = [r for r in val_rows if r["metric"] == metric]
        for name in dict.fromkeys(r["set"] for r in sel):  # the sets in the config's order
            pts = [(int(r["iteration"]), float(r["value"])) for r in sel if r["set"] == name]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, color=colour[name])
        ax.set_title(titles.get(metric, metric))
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig
