"""One route for `realesr upscale`: a plan, one runner chosen once, and that runner doing the work.

::

    plan = plan_upscale(inputs, output, options, video_options=video_options)      # names, collisions
    runner = choose_runner(device, batch=1, ray=None, has_videos=plan.has_videos)  # UsageError if impossible
    report = run_plan(plan, UpscalerSpec(model, ...), runner, video_options=video_options, on_event=print_it)

The runners: ``"process"`` (this process, one device: images and videos), ``"pool"`` (one worker process per
device, :mod:`realesr.infer.pool`), ``"ray"`` (actors on a Ray cluster, :mod:`realesr.infer.ray_data`). Each
goes down to :func:`realesr.infer.files.run_item` for every file, so every runner writes the same bytes; none
calls back into its caller except through ``on_event``. The front end (the CLI) only turns events into bars and
lines, and the report into its summary. Nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realesr.errors import RealesrError, UsageError
from realesr.infer.files import FileResult, PlanItem, UpscalePlan, run_item

if TYPE_CHECKING:
    from realesr.infer.pool import PoolEvent, UpscalerSpec
    from realesr.infer.video import VideoResult

__all__ = ["RunEvent", "RunReport", "Runner", "choose_runner", "run_plan"]


@dataclass(frozen=True)
class Runner:
    """Where the work of a plan runs. ``kind``: "process" on ``device``, "pool" on ``devices`` (one worker
    process each), "ray" (``ray``: "local" or a cluster address; ``ray_workers`` actors with ``ray_gpus`` each);
    ``batch``: images of one size per forward pass (frames of a video, in this process)."""

    kind: str = "process"
    device: str = "auto"
    devices: tuple[str, ...] = ()
    batch: int = 1
    ray: str | None = None
    ray_workers: int | None = None
    ray_gpus: float | None = None

    @property
    def where(self) -> str:
        """How the summary names a runner outside this process."""
        if self.kind == "ray":
            return f"Ray ({'local' if self.ray == 'local' else self.ray})"
        return f"{len(self.devices)} worker process(es): {', '.join(self.devices)}"


def choose_runner(
    device: str = "auto",
    batch: int = 1,
    ray: str | None = None,
    ray_workers: int | None = None,
    ray_gpus: float | None = None,
    has_videos: bool = False,
) -> Runner:
    """The runner, chosen once from the options: several devices (a list, or ``all`` with two GPUs or more), a
    batch above 1, or Ray leave this process; videos stay in it (on one device, where ``batch`` is frames per
    pass). ``all`` with fewer than two GPUs is ``auto``. Raises UsageError for a combination that cannot run."""
    from realesr.infer.pool import parse_devices

    devices = parse_devices(device)
    if devices is None and str(device).strip().lower() == "all":
        device = "auto"
    if ray is None and batch <= 1 and devices is None:
        return Runner("process", device=device, batch=batch)
    if has_videos:
        if ray is not None or devices is not None:
            raise UsageError(
                "videos are upscaled in this process on one device: give one --device and no --ray "
                "(upscale the images separately to spread them)",
                params=("device",),
            )
        return Runner("process", device=device, batch=batch)
    if ray is not None:
        if devices is not None:
            raise UsageError(
                "--ray places the work itself: give no device list with it (--ray-gpus sets GPUs per actor)",
                params=("ray", "device"),
            )
        from realesr.infer.ray_data import require_ray

        require_ray()  # without the extra: said now, before the model is loaded or the output folder made
        return Runner("ray", batch=batch, ray=ray, ray_workers=ray_workers, ray_gpus=ray_gpus)
    return Runner("pool", devices=tuple(devices or [device]), batch=batch)  # --batch on one device: one worker


@dataclass
class RunEvent:
    """What :func:`run_plan` reports as it goes. ``kind``:

    - "resumed": ``done`` inputs already have complete outputs and are skipped (``resume``);
    - "start": ``total`` items are about to be worked on (planning errors included);
    - "progress": ``item`` is at ``done`` of ``total`` (tiles of an image, frames of a video; this process only);
    - "done": ``item`` is written, ``result`` says how (a FileResult, a VideoResult, or None from Ray);
    - "failed": ``item`` failed: ``error`` (a RealesrError, whose ``params`` name the options, or another
      exception of this one file) or ``message`` (from a worker process or Ray);
    - "lost": a worker process stopped (``message``); its files go to others or fail.
    """

    kind: str
    item: PlanItem | None = None
    result: FileResult | VideoResult | None = None
    error: BaseException | None = None
    message: str = ""
    done: int = 0
    total: int | None = None


@dataclass
class RunReport:
    """What a run did, for the summary. ``total``: items worked on (planning errors included, complete outputs
    skipped by ``resume`` not); ``fell_back``: devices whose half precision overflowed (fp32 used)."""

    model_name: str = ""
    total: int = 0
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    fell_back: list[str] = field(default_factory=list)
    videos: int = 0  # videos and animations among the items worked on
    video_frames: int = 0  # frames upscaled in this run (a resumed video's earlier frames not counted)
    seconds: float = 0.0
    precision: str = ""  # the precision that ran (in this process: the one "auto" chose)
    licence: str = ""  # the model's licence, when beyond the permissive default


def run_plan(
    plan: UpscalePlan,
    spec: UpscalerSpec,
    runner: Runner,
    on_event: Callable[[RunEvent], None] | None = None,
    video_options=None,
    resume: bool = False,
    progress: bool | Callable[[int, int | None], None] = False,
) -> RunReport:
    """Check, prepare and do every item of ``plan`` with ``runner``; one failed file never stops the others.

    ``spec``: the model and its settings; ``progress``: the model download's callback; ``resume``: skip items
    whose outputs are complete (:func:`realesr.infer.pool.split_complete`). Raises RealesrError for what stops
    the whole run (a model that cannot be loaded, a disk too small for the outputs, no worker able to start)."""
    emit = on_event or (lambda _event: None)
    if runner.kind == "process":
        return _run_here(plan, spec, runner, emit, video_options, resume, progress)
    return _run_elsewhere(plan, spec, runner, emit, resume, progress)


def _todo(plan: UpscalePlan, resume: bool, emit: Callable[[RunEvent], None]) -> list[PlanItem]:
    if not resume:
        return list(plan.items)
    from realesr.infer.pool import split_complete

    todo, done = split_complete(plan.items)
    if done:
        emit(RunEvent("resumed", done=len(done)))
    return todo


def _failed(report: RunReport, emit, item: PlanItem, message: str, error: BaseException | None = None) -> None:
    report.failures.append((item.source, message))
    emit(RunEvent("failed", item=item, error=error, message=message))


def _planning_error(item: PlanItem) -> RealesrError:
    return RealesrError(item.error or f"{item.source}: nothing planned", params=item.error_params)


def _run_here(plan, spec, runner: Runner, emit, video_options, resume: bool, progress) -> RunReport:
    """Every item in this process, on one device, one after the other."""
    upscaler = spec.build(runner.device, allow_download=True, progress=progress)
    plan.check_sizes(upscaler)
    if any(item.error is None for item in plan.items):
        plan.prepare()
    report = RunReport(
        model_name=upscaler.model_name, precision=upscaler.precision, licence=upscaler.traits.licence or ""
    )
    items = _todo(plan, resume, emit)
    report.total = len(items)
    report.videos = sum(1 for item in items if item.video is not None)
    emit(RunEvent("start", total=len(items)))
    started = time.perf_counter()
    for item in items:
        if item.error:
            _failed(report, emit, item, item.error, _planning_error(item))
            continue

        def on_progress(done: int, total: int | None, item: PlanItem = item) -> None:
            emit(RunEvent("progress", item=item, done=done, total=total))

        try:
            result = run_item(upscaler, item, plan.options, on_progress, video_options)
        except RealesrError as err:
            _failed(report, emit, item, str(err), err)
            continue
        except (OSError, ValueError, MemoryError) as err:  # anything else about this one file
            _failed(report, emit, item, f"{item.source}: {type(err).__name__}: {err}", err)
            continue
        report.written.append(result.output)
        report.notes.extend(f"{item.source}: {note}" for note in result.notes)
        if not isinstance(result, FileResult):  # a video or an animation
            report.video_frames += result.frames - result.resumed_frames
        emit(RunEvent("done", item=item, result=result))
    report.seconds = time.perf_counter() - started
    if upscaler.fell_back_to_fp32:
        report.fell_back.append(str(upscaler.device))
    report.precision = upscaler.precision  # auto's bf16 may have been checked and turned down on the first image
    check = upscaler.precision_check
    if check is not None and not check.passed:
        report.notes.append(f"{check.describe()}; fp32 was used")
    return report


def _run_elsewhere(plan, spec, runner: Runner, emit, resume: bool, progress) -> RunReport:
    """Items on worker processes or Ray actors; the model is loaded once here first, on the CPU: it fails
    early with the usual message (and downloads, with its progress, once) and sizes the outputs."""
    sizing = replace(spec, precision="fp32", tile=None, tile_pad=None, alpha="model")
    sizer = sizing.build("cpu", allow_download=True, progress=progress)
    plan.check_sizes(sizer)
    report = RunReport(model_name=sizer.model_name, precision=spec.precision, licence=sizer.traits.licence or "")
    del sizer
    todo = _todo(plan, resume, emit)
    report.total = len(todo)
    items = []
    for item in todo:
        if item.error:
            _failed(report, emit, item, item.error, _planning_error(item))
        else:
            items.append(item)
    if items:
        plan.prepare()
    emit(RunEvent("start", total=len(items)))
    started = time.perf_counter()
    if runner.kind == "ray":
        _on_ray(items, spec, plan, runner, report, emit)
    else:
        _on_pool(items, spec, plan, runner, report, emit)
    report.seconds = time.perf_counter() - started
    return report


def _on_ray(items, spec, plan, runner: Runner, report: RunReport, emit) -> None:
    from realesr.infer.ray_data import run_ray

    by_source = {str(item.source): item for item in items}

    def on_row(row: dict[str, Any]) -> None:
        item = by_source[row["source"]]
        if row["status"] == "done":
            report.written.append(Path(row["output"]))
            emit(RunEvent("done", item=item))
        else:
            _failed(report, emit, item, row["error"])

    run_ray(
        items,
        spec,
        plan.options,
        address=None if runner.ray == "local" else runner.ray,
        concurrency=runner.ray_workers,
        num_gpus=runner.ray_gpus,
        batch=runner.batch,
        on_row=on_row,
    )
    written = set(report.written)
    report.notes.extend(f"{item.source}: {note}" for item in items for note in item.notes if item.output in written)


def _on_pool(items, spec, plan, runner: Runner, report: RunReport, emit) -> None:
    from realesr.infer.pool import run_pool

    def on_event(event: PoolEvent) -> None:
        if event.kind == "done" and event.result is not None:
            report.written.append(event.result.output)
            report.notes.extend(f"{event.result.source}: {note}" for note in event.result.notes)
            emit(RunEvent("done", item=event.item, result=event.result))
        elif event.kind == "failed" and event.item is not None:
            _failed(report, emit, event.item, event.message)
        elif event.kind == "lost":
            report.lost.append(event.message)
            emit(RunEvent("lost", message=event.message))

    pool = run_pool(items, spec, plan.options, list(runner.devices), batch=runner.batch, on_event=on_event)
    report.fell_back.extend(pool.fell_back)
