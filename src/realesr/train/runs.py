"""What `realesr runs` shows: one row per run folder, read from its status.json, CSV files and checkpoints."""

from __future__ import annotations

import csv
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["RunRow", "list_runs"]


@dataclass
class RunRow:
    name: str
    stage: str
    iteration: int
    total_iters: int | None
    best: str  # "23.41 dB (degraded/psnr) @ 3000" or ""
    last_validation: str  # "@ 3000: degraded 23.41 dB / 0.701, bicubic ..." or ""
    state: str  # running | finished | interrupted | failed | unknown


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _last_validation(run_dir: Path) -> str:
    path = run_dir / "val_log.csv"
    if not path.is_file():
        return ""
    with path.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("metric") and r.get("value")]  # older runs: other columns
    if not rows:
        return ""
    last = rows[-1]["iteration"]
    metrics: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["iteration"] == last:
            metrics.setdefault(r["set"], {})[r["metric"]] = float(r["value"])
    words = {"psnr": "{:.2f} dB", "ssim": "{:.3f}", "niqe": "NIQE {:.3f}"}
    parts = [
        f"{name} " + " / ".join(words.get(k, "{:.4g}").format(v) for k, v in m.items()) for name, m in metrics.items()
    ]
    return f"@ {last}: " + ", ".join(parts)


def _row(run_dir: Path) -> RunRow | None:
    status: dict = {}
    try:
        status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        status = {}
    config: dict = {}
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    if not status and not config:
        return None
    state = status.get("state", "unknown")
    if state == "running" and status.get("host") == socket.gethostname() and not _alive(int(status.get("pid", 0))):
        state = "failed"  # the process is gone without saying so (killed, crashed)
    iteration = int(status.get("iteration", 0))
    if not status:
        from realesr.train.checkpoint import latest_checkpoint

        latest = latest_checkpoint(run_dir / "checkpoints")
        iteration = int(latest.name.split("_")[1]) if latest is not None else 0
    total = status.get("total_iters", config.get("total_iters"))
    best = ""
    if status.get("best"):
        b = status["best"]
        metric = str(b["metric"]).rpartition("/")[2]
        value = {"psnr": "{:.2f} dB", "ssim": "{:.4f}", "niqe": "NIQE {:.3f}"}.get(metric, "{:.4g}").format(
            float(b["value"])
        )
        best = f"{value} ({b['metric']}) @ {b['iteration']}"
    return RunRow(
        run_dir.name,
        str(status.get("stage", config.get("stage", "?"))),
        iteration,
        total,
        best,
        _last_validation(run_dir),
        state,
    )


def list_runs(folder: str | os.PathLike) -> list[RunRow]:
    """The runs directly inside ``folder`` (a folder with a status.json or config.yaml), by name."""
    folder = Path(folder)
    rows = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        row = _row(child)
        if row is not None:
            rows.append(row)
    return rows
