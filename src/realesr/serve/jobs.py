"""The job queue behind `realesr serve`: uploads become jobs, one worker thread per device runs them.

Each job's files live in its own folder inside the server's work folder, under names the server makes; the
client's file name is only used to name the result (its base name, cleaned), as `realesr upscale` would. The job
list is kept in ``jobs.json`` in that folder (:mod:`realesr.serve.store`), so a reload, a second tab or a restarted
server shows the same jobs; a job stopped by a restart runs again.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from realesr.errors import RealesrError, UsageError
from realesr.serve.messages import failure_message
from realesr.serve.store import FORMATS, Job, JobOptions, Speeds, State, load_jobs, save_jobs

__all__ = ["FORMATS", "Job", "JobCancelled", "JobOptions", "JobQueue", "QueueFull", "clean_name", "parse_options"]


class JobCancelled(Exception):
    """Raised from a progress callback of a job the user cancelled (or of a server that stops): unwinds the
    upscaling at the next tile, frame or network stage."""


class QueueFull(RealesrError):
    """More jobs waiting than the server's limit."""


def clean_name(client_name: str | None) -> str:
    """A safe base name from whatever the client sent: no folders, no control characters, no leading dots."""
    name = unicodedata.normalize("NFC", client_name or "")
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*')
    name = name.strip().lstrip(".").strip()
    if len(name) > 120:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 120 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 8 else name[:120]
    return name or "image"


UpscalerFactory = Callable[[JobOptions, str, float | None], Any]


class JobQueue:
    """Jobs in order of arrival; ``devices`` worker threads each take the next one.

    ``make_upscaler(options, device, outscale)`` returns an Upscaler for a job (the server caches loaded
    models). ``work_dir`` None: a private temporary folder, deleted by :meth:`close`; a folder: the jobs in it are
    read back and kept after close. ``keep_seconds``: finished jobs older than this are deleted (0: never).
    """

    def __init__(
        self,
        make_upscaler: UpscalerFactory,
        devices: Sequence[str] = ("cpu",),
        max_queued: int = 100,
        work_dir: str | os.PathLike | None = None,
        keep_seconds: float = 0.0,
    ) -> None:
        self._make_upscaler = make_upscaler
        self.max_queued = max_queued
        self.keep_seconds = keep_seconds
        self._owns_work_dir = work_dir is None
        # mkdtemp makes the folder 0700: only this user can read the uploads.
        self.work_dir = Path(tempfile.mkdtemp(prefix="realesr-serve-")) if work_dir is None else Path(work_dir)
        self.work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = load_jobs(self.work_dir)
        self.speeds = Speeds(self.work_dir)
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._closed = False
        self._expired_at = 0.0
        self._expire()
        for job in self.jobs():
            if job.state == "queued":
                self._pending.put(job.id)
        self._workers = [
            threading.Thread(target=self._work, args=(device,), name=f"realesr-worker-{device}", daemon=True)
            for device in devices
        ]
        for worker in self._workers:
            worker.start()

    # ------------------------------------------------------------------------------------------ jobs

    def new_upload(self) -> tuple[str, Path]:
        """A fresh job id and the folder its upload goes to (created, private)."""
        job_id = secrets.token_hex(8)
        folder = self.work_dir / job_id
        folder.mkdir(mode=0o700)
        return job_id, folder

    def discard_upload(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def submit(self, job: Job) -> Job:
        with self._lock:
            if self._closed:
                raise QueueFull("the server is shutting down")
            waiting = sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))
            if waiting >= self.max_queued:
                raise QueueFull(
                    f"{waiting} jobs are queued or running, the limit is {self.max_queued} "
                    "(max_jobs): wait for some to finish"
                )
            job.estimate_seconds = self.speeds.estimate(job.options.model, job.input_pixels, job.frames)
            self._jobs[job.id] = job
            self._save()
        self._pending.put(job.id)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        if time.monotonic() - self._expired_at > 60:  # an idle server still lets old jobs go
            self._expire()
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created)

    def cancel_or_remove(self, job_id: str) -> Job | None:
        """Cancel a queued or running job (it reads "cancelled" at once, its files go; a running one stops at
        its next tile, frame or network stage); remove a finished one and its files."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.state in ("queued", "running"):
                job.cancel_requested = True
                was_queued = job.state == "queued"
                job.state = "cancelled"
                job.finished = time.time()
                if was_queued:
                    shutil.rmtree(job.folder, ignore_errors=True)
                    job.settled.set()
                self._save()
                return job
            del self._jobs[job_id]
            self._save()
        shutil.rmtree(job.folder, ignore_errors=True)
        return job

    def wait(self, job_id: str, timeout: float = 60.0) -> Job | None:
        """Block until the job has ended and no worker holds it (its files are final); None if unknown."""
        job = self.get(job_id)
        if job is not None:
            job.settled.wait(timeout)
        return job

    def close(self) -> None:
        """Stop the workers. A temporary work folder is deleted with every upload and result; a kept one keeps
        them, and a job that was running is queued again for the next start. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for job in self._jobs.values():
                if job.state == "running":
                    job.interrupted = True
        for _ in self._workers:
            self._pending.put(None)
        for worker in self._workers:
            worker.join(timeout=30)
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        else:
            with self._lock:
                self._save()

    def _save(self) -> None:
        if not self._owns_work_dir:  # a temporary folder is deleted at close: nothing to read back
            save_jobs(self.work_dir, self._jobs.values())

    def _expire(self) -> None:
        self._expired_at = time.monotonic()
        if self.keep_seconds <= 0:
            return
        limit = time.time() - self.keep_seconds
        with self._lock:
            old = [j for j in self._jobs.values() if j.state not in ("queued", "running") and j.created < limit]
            for job in old:
                del self._jobs[job.id]
            if old:
                self._save()
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)

    # ------------------------------------------------------------------------------------------ workers

    def _work(self, device: str) -> None:
        while True:
            job_id = self._pending.get()
            if job_id is None:
                return
            with self._lock:
                job = self._jobs.get(job_id)
                if job is None or job.state != "queued" or self._closed:
                    continue
                job.state = "running"
                job.started = time.time()
                job.device = device
                self._save()
            try:
                self._run(job, device)
            finally:
                job.settled.set()
            self._expire()

    def _run(self, job: Job, device: str) -> None:
        tracker = _Progress(job)
        try:
            output, size, notes = _upscale(job, device, self._make_upscaler, tracker)
        except JobCancelled:
            self._finish(job, "cancelled")
            return
        except MemoryError:
            self._finish(job, "failed", failure_message(job.name, job.options.model, "out of memory"))
            return
        except RealesrError as err:
            self._finish(job, "failed", failure_message(job.name, job.options.model, err, job.upload))
            return
        except Exception as err:  # noqa: BLE001 -- a bad file must never stop the worker: the job says what happened
            traceback.print_exc(file=sys.stderr)
            self._finish(job, "failed", failure_message(job.name, job.options.model, err, job.upload))
            return
        with self._lock:
            if not job.cancel_requested:
                job.result, job.result_size, job.notes = output, size, list(notes)
                job.progress, job.state, job.finished = 1.0, "done", time.time()
                self.speeds.record(job)
                self._save()
                return
        shutil.rmtree(job.folder, ignore_errors=True)

    def _finish(self, job: Job, state: State, error: str | None = None) -> None:
        with self._lock:
            if job.interrupted and not job.cancel_requested:
                # The server stopped, not the user: the job runs again at the next start, from its upload.
                shutil.rmtree(job.folder / "result", ignore_errors=True)
                job.state, job.progress, job.started, job.device = "queued", 0.0, None, None
                self._save()
                return
            if job.cancel_requested:
                state, error = "cancelled", None
            job.state = state
            job.error = error
            job.finished = time.time()
            self._save()
        if state == "cancelled":
            shutil.rmtree(job.folder, ignore_errors=True)


class _Progress:
    """A job's progress from the library's callbacks: tiles (images) or frames (videos) done, and inside a tile
    the network stages done (:func:`realesr.infer.upscaler.layer_progress`). Also where a cancelled job stops."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.done, self.total = 0, 0
        self.layers_at_step = 0

    def check(self) -> None:
        if self.job.cancel_requested or self.job.interrupted:
            raise JobCancelled()

    def on_step(self, done: int, total: int | None) -> None:
        self.check()
        if total:
            self.done, self.total = done, total
            self.layers_at_step = -1  # the next stage report starts the next tile
            self._set(done / total)

    def on_layer(self, finished: int, per_pass: int) -> None:
        self.check()
        if self.layers_at_step < 0:
            self.layers_at_step = finished - 1
        within = min((finished - self.layers_at_step) / per_pass, 0.99)
        # Before the first tile reports, the number of tiles is unknown: count this one as the whole pass.
        total = self.total or 1
        self._set((self.done + within) / max(total, self.done + 1))

    def _set(self, fraction: float) -> None:
        # 2 % is left for encoding and writing; never backwards (a second pass for alpha restarts the count).
        value = min(fraction, 1.0) * 0.98
        if value > self.job.progress:
            self.job.progress = value
            self.job.mark_progress()


def _upscale(job: Job, device: str, make_upscaler: UpscalerFactory, tracker: _Progress) -> tuple[Path, Any, Any]:
    from realesr.imagefiles import read_header
    from realesr.infer.files import OutputOptions, plan_upscale, run_item
    from realesr.infer.upscaler import layer_progress

    video_options = _video_options()
    ext = "auto" if job.options.ext == "keep" else job.options.ext
    # Planned exactly as `realesr upscale UPLOAD -o FOLDER` plans it (video options included), so that the result
    # is the file the CLI writes.
    plan = plan_upscale([job.upload], job.folder / "result", OutputOptions(ext=ext), video_options=video_options)
    item = plan.items[0]
    outscale = job.options.outscale
    if job.options.width is not None:
        width = item.video.width if item.video is not None else read_header(job.upload).width
        outscale = job.options.width / width
    upscaler = make_upscaler(job.options, device, outscale)
    plan.check_sizes(upscaler)
    if item.error is not None:
        raise RealesrError(item.error, params=item.error_params)
    tracker.check()
    plan.prepare()
    with layer_progress(upscaler, tracker.on_layer) if item.video is None else contextlib.nullcontext():
        result = run_item(upscaler, item, plan.options, tracker.on_step, video_options)
        return result.output, result.size, result.notes


def _video_options():
    """The CLI's default video options, or None where PyAV (the video extra) is not installed."""
    try:
        import av  # noqa: F401

        from realesr.infer.video import VideoOptions
    except ImportError:
        return None
    return VideoOptions()


def _number(form: Mapping[str, Any], key: str, kind: type, low: float, high: float, low_open: bool = False):
    value = form.get(key)
    raw = None if value is None else (str(value).strip() or None)
    if raw is None:
        return None
    try:
        number = kind(raw)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise UsageError(f"{key}: not {noun}: {raw!r}", params=(key,)) from None
    inside = (low < number if low_open else low <= number) and number <= high
    if not inside:  # also NaN, which compares false
        bracket = "(" if low_open else "["
        raise UsageError(f"{key}: must be a number in {bracket}{low:g}, {high:g}], not {raw}", params=(key,))
    return number


def parse_options(form: Mapping[str, Any], models: Mapping[str, Any], default_model: str) -> JobOptions:
    """The job options from a form, checked; UsageError names the field."""
    model = str(form.get("model") or "").strip() or default_model
    if model not in models:
        raise UsageError(f"model: unknown model {model!r}; GET /api/models lists them", params=("model",))
    outscale = _number(form, "outscale", float, 0, 16, low_open=True)
    width = _number(form, "width", int, 1, 65500)
    if outscale is not None and width is not None:
        raise UsageError("give either outscale or width, not both", params=("outscale", "width"))
    ext = (str(form.get("ext") or "").strip() or "keep").lower().lstrip(".")
    ext = {"jpeg": "jpg", "auto": "keep"}.get(ext, ext)
    if ext not in FORMATS:
        raise UsageError(f"ext: must be one of {', '.join(FORMATS)}, not {ext!r}", params=("ext",))
    denoise = _number(form, "denoise_strength", float, 0.0, 1.0)
    if denoise is not None and not getattr(models[model], "denoise", False):
        from realesr.weights.zoo import denoise_models

        raise UsageError(
            f"denoise_strength: model {model} has no denoise strength ({', '.join(denoise_models())} has)",
            params=("denoise_strength",),
        )
    return JobOptions(model, outscale, width, ext, denoise)
