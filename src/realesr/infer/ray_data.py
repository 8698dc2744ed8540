"""A cluster: the upscaler over a Ray Dataset (extra ``[ray]``).

:class:`UpscaleActor` is a callable class for ``Dataset.map_batches``: each actor loads the model once, then
reads, upscales and writes the files of its batches itself, with the naming, metadata and atomic writes of
`realesr upscale` (:func:`realesr.infer.pool.upscale_items`), and returns one row per input: ``status`` "done"
or "failed" with ``error``, never an exception for one file. The outputs go wherever the rows say, so on a
cluster they must be paths every worker can write (a shared filesystem).

Plan on the driver, run on the cluster::

    plan = plan_upscale(["/shared/archive/"], "/shared/out")      # names, collisions: before any work
    plan.check_sizes(Upscaler(model, device="cpu"))
    plan.prepare()
    rows = plan_rows(plan.items)                                  # source, output, compare
    ds = ray.data.from_items(rows)
    results = upscale_dataset(ds, UpscalerSpec(model), plan.options, concurrency=8, num_gpus=1)
    for row in results.iter_rows(): ...

:func:`run_ray` does all of it for the CLI (`realesr upscale ... --ray [ADDRESS]`).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from realesr import signals
from realesr.errors import MissingExtraError, RealesrError, UsageError
from realesr.infer.files import OutputOptions, PlanItem
from realesr.infer.pool import UpscalerSpec, is_complete, upscale_items

__all__ = ["UpscaleActor", "plan_rows", "run_ray", "upscale_dataset"]

TASK_RETRIES = 1
COLUMNS = ("source", "output", "compare", "status", "error", "width", "height", "seconds", "host")


def plan_rows(items: Sequence[PlanItem]) -> list[dict[str, str]]:
    """The dataset rows of planned items (strings only: Arrow-friendly and the same on every node)."""
    return [
        {
            "source": str(item.source),
            "output": str(item.output),
            "compare": str(item.compare or ""),
            "notes": "\n".join(item.notes),
        }
        for item in items
        if item.error is None and item.output is not None
    ]


class UpscaleActor:
    """``Dataset.map_batches(UpscaleActor, fn_constructor_kwargs={"spec": ..., "options": ...}, concurrency=N)``.

    ``device``: "auto" takes the GPU Ray gave the actor (``num_gpus=1``), else the CPU; ``threads``: torch
    threads on the CPU (Ray's ``num_cpus`` per actor is the natural value); ``batch`` > 1 runs images of one size
    through the network together (a GPU gains from it; see docs/scaleout.md for how exact that is).
    """

    def __init__(
        self,
        spec: UpscalerSpec,
        options: OutputOptions,
        device: str = "auto",
        threads: int | None = None,
        batch: int = 1,
    ) -> None:
        self.upscaler = spec.build(device, threads=threads)
        self.options = options
        self.batch = max(1, int(batch))
        self.host = socket.gethostname()

    def __call__(self, rows: dict[str, Any]) -> dict[str, list]:
        items = []
        for source, output, compare, notes in zip(rows["source"], rows["output"], rows["compare"], rows["notes"]):
            items.append(
                PlanItem(
                    Path(str(source)),
                    output=Path(str(output)),
                    compare=Path(str(compare)) if str(compare) else None,
                    notes=[n for n in str(notes).split("\n") if n],
                )
            )
        out: dict[str, list] = {name: [] for name in COLUMNS}
        for item, result, error in upscale_items(self.upscaler, items, self.options, batch=self.batch):
            out["source"].append(str(item.source))
            out["output"].append(str(item.output))
            out["compare"].append(str(item.compare or ""))
            out["status"].append("done" if error is None else "failed")
            out["error"].append(error or "")
            out["width"].append(result.size[0] if result else 0)
            out["height"].append(result.size[1] if result else 0)
            out["seconds"].append(round(result.seconds, 4) if result else 0.0)
            out["host"].append(self.host)
        return out


def upscale_dataset(
    ds,
    spec: UpscalerSpec,
    options: OutputOptions,
    concurrency: int | tuple[int, int] = 1,
    num_gpus: float = 0,
    num_cpus: float = 1,
    batch_size: int = 1,
    batch: int = 1,
):
    """``ds`` (rows of :func:`plan_rows`) -> the lazy Dataset of result rows (columns ``COLUMNS``).

    ``concurrency``: actors (an int), or (min, max) for an autoscaling pool."""
    from ray.data import ActorPoolStrategy

    threads = None if num_gpus else max(1, int(num_cpus))
    if isinstance(concurrency, tuple):
        compute = ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    else:
        compute = ActorPoolStrategy(size=int(concurrency))
    with warnings.catch_warnings():
        # Ray 2.5x deprecates passing max_restarts/max_task_retries this way, but names no replacement yet.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        return _map(ds, compute, spec, options, num_gpus, num_cpus, threads, batch_size, batch)


def _map(ds, compute, spec, options, num_gpus, num_cpus, threads, batch_size, batch):
    return ds.map_batches(
        UpscaleActor,
        fn_constructor_kwargs={
            "spec": spec,
            "options": options,
            "device": "auto" if num_gpus else "cpu",
            "threads": threads,
            "batch": batch,
        },
        batch_size=max(1, int(batch_size)),
        compute=compute,
        num_gpus=num_gpus or None,
        num_cpus=num_cpus,
        batch_format="numpy",
        # An actor that dies (out of memory, a crash in a library) is restarted and its task tried again, but
        # not forever: a file that kills every actor would otherwise keep the job running for ever.
        max_restarts=-1,
        max_task_retries=TASK_RETRIES,
    )


def require_ray():
    """The ``ray`` module with Ray Data, or MissingExtraError naming the extra (before anything is written)."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is a separate part of the ray package
    except ImportError:
        raise MissingExtraError("--ray (Ray Data)", "ray", "ray", params=("ray",)) from None
    return ray


def run_ray(
    items: Sequence[PlanItem],
    spec: UpscalerSpec,
    options: OutputOptions,
    address: str | None = None,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    num_cpus: float = 1,
    batch: int = 1,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    init_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run planned ``items`` on Ray and return one result row per item (in completion order).

    ``address``: None starts a local Ray (unless this process already joined one), "auto" joins the running
    cluster, anything else is a cluster address (``ray://HOST:10001``, ``HOST:6379``). ``num_gpus`` per actor:
    None = 1 when the cluster has GPUs, else 0; ``concurrency``: actors, None = as many as the cluster's GPUs
    (or CPUs / ``num_cpus``) allow.
    """
    ray = require_ray()
    rows = plan_rows(items)
    if not rows:
        return []
    started_here = _connect(ray, address, init_kwargs)
    try:
        _quiet(ray)
        num_gpus, concurrency = _actors(ray.cluster_resources(), num_gpus, concurrency, num_cpus, len(rows))
        job = _Job(spec, options, concurrency, num_gpus, num_cpus, batch, on_row)
        job.execute(rows, min(len(rows), max(concurrency * 4, math.ceil(len(rows) / 64)), 4096))
        job.finish_lost([item for item in items if item.error is None and str(item.source) in job.wanted])
        return job.collected
    finally:
        if started_here:
            ray.shutdown()
        signals.reassert()


def _connect(ray, address: str | None, init_kwargs: dict[str, Any] | None) -> bool:
    """Start or join Ray unless this process already did; whether it was started here (to shut it down)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(init_kwargs or {})
    kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("log_to_driver", False)
    kwargs.setdefault("configure_logging", False)
    try:
        ray.init(address=address or "local", **kwargs)
        # ray.init installs its own SIGTERM handler (and shutdown leaves it): take the signal rule back.
        signals.reassert()
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = address or "a local Ray"
        raise UsageError(f"cannot start or join {where}: {str(err).strip().splitlines()[0]}", params=("ray",)) from None
    return True


def _quiet(ray) -> None:
    # Ray Data's own progress lines and statistics: the caller reports progress from the rows.
    # (and its traceback of a task lost with its actor, which is reported here as that file's failure).
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    # A task whose actor died twice loses its rows, not the job: they are accounted for (_Job.finish_lost).
    context.max_errored_blocks = -1


def _actors(
    resources: dict[str, float], num_gpus: float | None, concurrency: int | None, num_cpus: float, rows: int
) -> tuple[float, int]:
    """(GPUs per actor, actors) from the cluster's resources where not given."""
    if num_gpus is None:
        num_gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    if concurrency is None:
        if num_gpus:
            concurrency = max(1, int(resources.get("GPU", 1) // num_gpus))
        else:
            concurrency = max(1, int(resources.get("CPU", 1) // max(num_cpus, 1e-9)))
    return num_gpus, max(1, min(int(concurrency), rows))


class _Job:
    """The rows of one run: executed on the actors, collected, and those lost with dead actors settled."""

    def __init__(self, spec, options, concurrency: int, num_gpus: float, num_cpus: float, batch: int, on_row):
        self.spec, self.options, self.concurrency = spec, options, concurrency
        self.num_gpus, self.num_cpus, self.batch, self.on_row = num_gpus, num_cpus, batch, on_row
        self.collected: list[dict[str, Any]] = []
        self.wanted: set[str] = set()

    def execute(self, rows: list[dict[str, str]], blocks: int) -> None:
        import ray
        import ray.data

        self.wanted |= {row["source"] for row in rows}
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        results = upscale_dataset(
            ds,
            self.spec,
            self.options,
            concurrency=min(self.concurrency, len(rows)),
            num_gpus=self.num_gpus,
            num_cpus=self.num_cpus,
            batch_size=max(1, self.batch),
            batch=self.batch,
        )
        try:
            for row in results.iter_rows():
                row = {key: (value.item() if hasattr(value, "item") else value) for key, value in row.items()}
                self.collected.append(row)
                if self.on_row is not None:
                    self.on_row(row)
        except ray.exceptions.RayError as err:
            # A failure of the job itself (an actor that cannot load the model, a lost node twice): one line.
            lines = [line for line in str(err).splitlines() if line.strip()]
            cause = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
            raise RealesrError(f"the Ray job failed: {cause.strip()}") from None

    def unreported(self, items: Sequence[PlanItem]) -> list[PlanItem]:
        reported = {row["source"] for row in self.collected}
        return [item for item in items if str(item.source) not in reported]

    def finish_lost(self, items: Sequence[PlanItem]) -> None:
        """Rows of a task whose actor died twice: those written before are done; the others go once more, one
        row per task, so that a file that kills its actor takes no other file with it; then they fail."""
        again = []
        for item in self.unreported(items):
            if is_complete(item):
                _report(self.collected, self.on_row, item, "done", "")
            else:
                again.append(item)
        if again:
            self.execute(plan_rows(again), len(again))
        for item in self.unreported(items):
            complete = is_complete(item)
            error = (
                ""
                if complete
                else (
                    f"{item.source}: the Ray worker upscaling it stopped (out of memory or a crash), "
                    f"{2 * (TASK_RETRIES + 1)} times"
                )
            )
            _report(self.collected, self.on_row, item, "done" if complete else "failed", error)


def _report(collected: list[dict[str, Any]], on_row, item: PlanItem, status: str, error: str) -> None:
    done = status == "done" and item.out_size is not None
    row = {
        "source": str(item.source),
        "output": str(item.output),
        "compare": str(item.compare or ""),
        "status": status,
        "error": error,
        "width": item.out_size[0] if done and item.out_size else 0,
        "height": item.out_size[1] if done and item.out_size else 0,
        "seconds": 0.0,
        "host": "",
    }
    collected.append(row)
    if on_row is not None:
        on_row(row)
