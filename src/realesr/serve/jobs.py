"""The job queue behind `realesr serve`: uploads become jobs, one worker thread per device runs them.

Each job's files live in its own folder inside the server's private work folder, under names the server makes;
the client's file name is only used to name the result (its base name, cleaned), as `realesr upscale` would.
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from realesr.errors import RealesrError, UsageError

State = Literal["queued", "running", "done", "failed", "cancelled"]
FORMATS = ("keep", "png", "jpg", "webp")


class JobCancelled(Exception):
    """Raised from the progress callback of a job the user cancelled: unwinds the upscaling between tiles."""


class QueueFull(RealesrError):
    """More jobs waiting than the server's limit."""


@dataclass(frozen=True)
class JobOptions:
    """What a client may choose. ``model`` is a name the server lists (never a path); ``outscale`` a factor
    (None: the model's scale) or ``width`` a target width in pixels; ``ext`` one of FORMATS."""

    model: str
    outscale: float | None = None
    width: int | None = None
    ext: str = "keep"
    denoise_strength: float | None = None


@dataclass
class Job:
    id: str
    name: str  # the upload's cleaned base name, used to name the result
    options: JobOptions
    folder: Path
    upload: Path
    size: int
    created: float = field(default_factory=time.time)
    state: State = "queued"
    progress: float = 0.0
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    result: Path | None = None
    result_size: tuple[int, int] | None = None  # (width, height)
    notes: list[str] = field(default_factory=list)
    device: str | None = None
    cancel_requested: bool = False
    settled: threading.Event = field(default_factory=threading.Event, repr=False)  # no worker holds it any more

    def eta_seconds(self) -> float | None:
        if self.state != "running" or self.started is None or self.progress <= 0.0:
            return None
        elapsed = time.time() - self.started
        return max(0.0, elapsed * (1.0 - self.progress) / self.progress)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "progress": round(self.progress, 4),
            "eta_seconds": None if (eta := self.eta_seconds()) is None else round(eta, 1),
            "error": self.error,
            "notes": list(self.notes),
            "model": self.options.model,
            "outscale": self.options.outscale,
            "width": self.options.width,
            "ext": self.options.ext,
            "denoise_strength": self.options.denoise_strength,
            "result_name": self.result.name if self.result is not None else None,
            "result_size": list(self.result_size) if self.result_size else None,
            "seconds": None
            if self.started is None or self.finished is None
            else round(self.finished - self.started, 3),
            "device": self.device,
        }


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
    models). Progress comes from the Upscaler's per-tile callback, which is also where a cancelled running
    job stops.
    """

    def __init__(
        self,
        make_upscaler: UpscalerFactory,
        devices: Sequence[str] = ("cpu",),
        max_queued: int = 100,
        work_dir: str | os.PathLike | None = None,
    ) -> None:
        self._make_upscaler = make_upscaler
        self.max_queued = max_queued
        self._owns_work_dir = work_dir is None
        # mkdtemp makes the folder 0700: only this user can read the uploads.
        self.work_dir = Path(tempfile.mkdtemp(prefix="realesr-serve-")) if work_dir is None else Path(work_dir)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._workers = [
            threading.Thread(target=self._work, args=(device,), name=f"realesr-worker-{device}", daemon=True)
            for device in devices
        ]
        self._closed = False
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

    def submit(self, job_id: str, folder: Path, upload: Path, name: str, size: int, options: JobOptions) -> Job:
        with self._lock:
            if self._closed:
                raise QueueFull("the server is shutting down")
            waiting = sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))
            if waiting >= self.max_queued:
                raise QueueFull(
                    f"{waiting} jobs are queued or running, the limit is {self.max_queued} "
                    "(max_jobs): wait for some to finish"
                )
            job = Job(job_id, name, options, folder, upload, size)
            self._jobs[job_id] = job
        self._pending.put(job_id)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created)

    def cancel_or_remove(self, job_id: str) -> Job | None:
        """Cancel a queued or running job (it reads "cancelled" at once; a running one stops at its next tile);
        remove a finished one and its files."""
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
                return job
            del self._jobs[job_id]
        shutil.rmtree(job.folder, ignore_errors=True)
        return job

    def wait(self, job_id: str, timeout: float = 60.0) -> Job | None:
        """Block until the job has ended and no worker holds it (its files are final); None if unknown."""
        job = self.get(job_id)
        if job is not None:
            job.settled.wait(timeout)
        return job

    def close(self) -> None:
        """Stop the workers (running jobs are cancelled) and delete every upload and result. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for job in self._jobs.values():
                if job.state in ("queued", "running"):
                    job.cancel_requested = True
                    if job.state == "queued":
                        job.settled.set()
                    job.state = "cancelled"
        for _ in self._workers:
            self._pending.put(None)
        for worker in self._workers:
            worker.join(timeout=30)
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------ workers

    def _work(self, device: str) -> None:
        while True:
            job_id = self._pending.get()
            if job_id is None:
                return
            with self._lock:
                job = self._jobs.get(job_id)
                if job is None or job.state != "queued":
                    continue
                job.state = "running"
                job.started = time.time()
                job.device = device
            try:
                self._run(job, device)
            finally:
                job.settled.set()

    def _run(self, job: Job, device: str) -> None:
        from realesr.imagefiles import read_header
        from realesr.infer.files import OutputOptions, plan_upscale, run_item

        def on_step(done: int, total: int | None) -> None:
            # Tiles of an image, frames of a video: also where a cancelled job stops.
            if job.cancel_requested:
                raise JobCancelled()
            if total:
                job.progress = min(1.0, done / total) * 0.98  # the rest is encoding and writing

        try:
            video_options = _video_options()
            ext = "auto" if job.options.ext == "keep" else job.options.ext
            # Planned exactly as `realesr upscale UPLOAD -o FOLDER` plans it (video options included), so that the
            # result is the file the CLI writes.
            plan = plan_upscale(
                [job.upload], job.folder / "result", OutputOptions(ext=ext), video_options=video_options
            )
            item = plan.items[0]
            outscale = job.options.outscale
            if job.options.width is not None:
                width = item.video.width if item.video is not None else read_header(job.upload).width
                outscale = job.options.width / width
            upscaler = self._make_upscaler(job.options, device, outscale)
            plan.check_sizes(upscaler)
            if item.error is not None:
                raise RealesrError(item.error, params=item.error_params)
            plan.prepare()
            result = run_item(upscaler, item, plan.options, on_step, video_options)
            output, size, notes = result.output, result.size, result.notes
        except JobCancelled:
            self._finish(job, "cancelled")
            return
        except RealesrError as err:
            self._finish(job, "failed", str(err).replace(str(job.upload), job.name))
            return
        except MemoryError:
            self._finish(job, "failed", "out of memory: choose a smaller output scale or a smaller model")
            return
        except Exception as err:  # noqa: BLE001 -- a bad file must never stop the worker: the job says what happened
            message = f"{type(err).__name__}: {err}"
            if "out of memory" in message.lower():
                message = "out of memory: choose a smaller output scale or a smaller model"
            self._finish(job, "failed", message.replace(str(job.upload), job.name))
            return
        with self._lock:
            if job.cancel_requested:
                pass
            else:
                job.result = output
                job.result_size = size
                job.notes = list(notes)
                job.progress = 1.0
                job.state = "done"
                job.finished = time.time()
                return
        shutil.rmtree(job.folder, ignore_errors=True)

    def _finish(self, job: Job, state: State, error: str | None = None) -> None:
        with self._lock:
            if job.cancel_requested:
                state, error = "cancelled", None
            job.state = state
            job.error = error
            job.finished = time.time()
        if state == "cancelled":
            shutil.rmtree(job.folder, ignore_errors=True)


def _video_options():
    """The CLI's default video options, or None where PyAV (the video extra) is not installed."""
    try:
        import av  # noqa: F401

        from realesr.infer.video import VideoOptions
    except ImportError:
        return None
    return VideoOptions()


def parse_options(form: Mapping[str, Any], models: Mapping[str, Any], default_model: str) -> JobOptions:
    """The job options from a form, checked; UsageError names the field."""

    def text(key: str) -> str | None:
        value = form.get(key)
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    model = text("model") or default_model
    if model not in models:
        raise UsageError(f"model: unknown model {model!r}; GET /api/models lists them", params=("model",))
    outscale = width = None
    if (raw := text("outscale")) is not None:
        try:
            outscale = float(raw)
        except ValueError:
            raise UsageError(f"outscale: not a number: {raw!r}", params=("outscale",)) from None
        if not (0 < outscale <= 16):
            raise UsageError(f"outscale: must be a number in (0, 16], not {raw}", params=("outscale",))
    if (raw := text("width")) is not None:
        try:
            width = int(raw)
        except ValueError:
            raise UsageError(f"width: not an integer: {raw!r}", params=("width",)) from None
        if not 1 <= width <= 65500:
            raise UsageError(f"width: must be in 1..65500, not {raw}", params=("width",))
        if outscale is not None:
            raise UsageError("give either outscale or width, not both", params=("outscale", "width"))
    ext = (text("ext") or "keep").lower().lstrip(".")
    ext = {"jpeg": "jpg", "auto": "keep"}.get(ext, ext)
    if ext not in FORMATS:
        raise UsageError(f"ext: must be one of {', '.join(FORMATS)}, not {ext!r}", params=("ext",))
    denoise = None
    if (raw := text("denoise_strength")) is not None:
        try:
            denoise = float(raw)
        except ValueError:
            raise UsageError(f"denoise_strength: not a number: {raw!r}", params=("denoise_strength",)) from None
        if not 0.0 <= denoise <= 1.0:
            raise UsageError(f"denoise_strength: must be in [0, 1], not {raw}", params=("denoise_strength",))
        if not getattr(models[model], "denoise", False):
            raise UsageError(
                f"denoise_strength: model {model} has no denoise strength (realesr-general-x4v3 has)",
                params=("denoise_strength",),
            )
    return JobOptions(model, outscale, width, ext, denoise)
