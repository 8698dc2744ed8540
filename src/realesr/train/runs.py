"""What `realesr runs` shows: one row per run folder, read from its status.json, CSV files and checkpoints; and
the check that a run's files can be read back before a resume touches anything.

Every file is read through :mod:`realesr.statefiles` with the shapes below (what ``loop.write_status``,
``save_config`` and ``MetricsLog`` write), so a damaged one is one line naming it and what to do, never a
traceback: `runs` reports that run and lists the others.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from realesr.schema import Float, Int, Map, Nullable, Record, Str
from realesr.statefiles import StateFileError, read_csv, read_json, read_yaml

__all__ = ["RunRow", "check_run_files", "list_runs", "read_run_config", "read_status", "read_val_log"]

STATES = ("running", "finished", "interrupted", "failed")
# Linux's pid_max is at most 2**22; 0 and negative numbers would name process groups in os.kill.
_PID = Int(1, 2**31 - 1)
_ITERATION = Int(0)
_METRICS = Map(Map(Float(finite=False), max_len=100), max_len=1000)  # set -> metric -> value (inf PSNR, NaN)
STATUS_SHAPE = Record(
    {
        "state": Str(max_len=40),
        "pid": _PID,
        "host": Str(max_len=1000),
        "name": Str(max_len=1000),
        "stage": Str(max_len=40),
        "iteration": _ITERATION,
        "total_iters": Nullable(Int(1)),
        "best": Nullable(
            Record(
                {"metric": Str(max_len=1000, empty=False), "value": Float(), "iteration": _ITERATION},
                required=frozenset({"metric", "value", "iteration"}),
            )
        ),
        "last_validation": Nullable(Record({"iteration": Nullable(_ITERATION), "metrics": Nullable(_METRICS)})),
        "updated": Float(),
    },
    required=frozenset({"state", "iteration"}),
)
# `runs` and a resume read only these keys of a run's config.yaml; the rest is checked when a config is loaded.
RUN_CONFIG_SHAPE = Record({"stage": Str(max_len=40), "total_iters": Nullable(Int(1)), "name": Str(max_len=1000)})
VAL_LOG_COLUMNS = {
    "iteration": Int(0, text=True),
    "set": Str(max_len=1000),
    "metric": Str(max_len=100),
    "value": Float(text=True, finite=False),
}
TRAIN_LOG_COLUMNS = {"iteration": Int(0, text=True)}


def _remedy(run_dir: Path, name: str) -> str:
    if name == "status.json":
        return "delete it (the next `realesr train --resume auto` writes it again) or restore it from a backup"
    if name == "config.yaml":
        return f"restore it from the config this run was started with, or move {run_dir} aside"
    return f"repair or delete it (a resume starts a new one), or move {run_dir} aside"


def read_status(run_dir: Path) -> dict | None:
    """``status.json`` checked, or None when there is none."""
    path = run_dir / "status.json"
    try:
        return read_json(
            path, STATUS_SHAPE, what="the run's status", remedy=_remedy(run_dir, "status.json"), constants=True
        )
    except FileNotFoundError:
        return None


def read_run_config(run_dir: Path) -> dict | None:
    """The run's saved ``config.yaml`` (a mapping whose ``stage``/``total_iters``/``name`` are checked), or None."""
    path = run_dir / "config.yaml"
    try:
        raw = read_yaml(path, RUN_CONFIG_SHAPE, what="the run's config", remedy=_remedy(run_dir, "config.yaml"))
    except FileNotFoundError:
        return None
    return raw


def read_val_log(run_dir: Path) -> list[dict]:
    """The rows of ``val_log.csv`` with a metric (older runs had other columns), iteration and value parsed."""
    try:
        rows = read_csv(
            run_dir / "val_log.csv",
            VAL_LOG_COLUMNS,
            what="the validation log",
            remedy=_remedy(run_dir, "val_log.csv"),
            required=("iteration",),
        )
    except FileNotFoundError:
        return []
    return [r for r in rows if r.get("metric") and r.get("value") is not None and r.get("set") is not None]


def check_run_files(run_dir: Path) -> None:
    """Read every file of ``run_dir`` that a resume reads back or appends to; StateFileError names the first
    damaged one. Called before a resume writes anything."""
    read_status(run_dir)
    read_run_config(run_dir)
    read_val_log(run_dir)
    try:
        read_csv(
            run_dir / "train_log.csv",
            TRAIN_LOG_COLUMNS,
            what="the training log",
            remedy=_remedy(run_dir, "train_log.csv"),
            required=("iteration",),
        )
    except FileNotFoundError:
        pass


@dataclass
class RunRow:
    name: str
    stage: str
    iteration: int
    total_iters: int | None
    best: str  # "23.41 dB (degraded/psnr) @ 3000" or ""
    last_validation: str  # "@ 3000: degraded 23.41 dB / 0.701, bicubic ..." or ""
    state: str  # running | finished | interrupted | failed | unknown | damaged
    problem: str = ""  # a damaged file: the one-line message naming it and what to do


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


_WORDS = {"psnr": "{:.2f} dB", "ssim": "{:.3f}", "niqe": "NIQE {:.3f}"}


def _last_validation(run_dir: Path) -> str:
    rows = read_val_log(run_dir)
    if not rows:
        return ""
    last = rows[-1]["iteration"]
    metrics: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["iteration"] == last:
            metrics.setdefault(r["set"], {})[r["metric"]] = r["value"]
    parts = [
        f"{name} " + " / ".join(_WORDS.get(k, "{:.4g}").format(v) for k, v in m.items()) for name, m in metrics.items()
    ]
    return f"@ {last}: " + ", ".join(parts)


def _best(status: dict) -> str:
    b = status.get("best")
    if not b:
        return ""
    metric = b["metric"].rpartition("/")[2]
    value = {"psnr": "{:.2f} dB", "ssim": "{:.4f}", "niqe": "NIQE {:.3f}"}.get(metric, "{:.4g}").format(b["value"])
    return f"{value} ({b['metric']}) @ {b['iteration']}"


def _row(run_dir: Path) -> RunRow | None:
    status = read_status(run_dir) or {}
    config = read_run_config(run_dir) or {}
    if not status and not config:
        return None
    state = status.get("state", "unknown")
    pid = status.get("pid")
    if state == "running" and status.get("host") == socket.gethostname() and pid is not None and not _alive(pid):
        state = "failed"  # the process is gone without saying so (killed, crashed)
    iteration = status.get("iteration", 0)
    if not status:
        from realesr.train.checkpoint import latest_checkpoint

        latest = latest_checkpoint(run_dir / "checkpoints")
        iteration = int(latest.name.split("_")[1]) if latest is not None else 0
    total = status.get("total_iters", config.get("total_iters"))
    stage = str(status.get("stage", config.get("stage", "?")))
    return RunRow(run_dir.name, stage, iteration, total, _best(status), _last_validation(run_dir), state)


def list_runs(folder: str | os.PathLike) -> list[RunRow]:
    """The runs directly inside ``folder`` (a folder with a status.json or config.yaml), by name. A run whose
    files are damaged is a row with state ``damaged`` and ``problem`` saying which file and what to do."""
    folder = Path(folder)
    rows = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            row = _row(child)
        except StateFileError as err:
            row = RunRow(child.name, "?", 0, None, "", "", "damaged", problem=str(err))
        if row is not None:
            rows.append(row)
    return rows
