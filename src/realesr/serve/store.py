"""What `realesr serve` keeps on disk beside the results: the job list (``jobs.json``) and the speed of each
model on this machine (``speeds.json``), both read back through one validating reader.

A file that does not have the expected shape is set aside (renamed ``*.corrupt``) with one line on stderr naming
it, and the server starts without it; a record that names a path outside its job's folder is dropped, so a
tampered list cannot make the server read or delete anything else.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from realesr.atomic import atomic_write_text

State = Literal["queued", "running", "done", "failed", "cancelled"]
STATES = ("queued", "running", "done", "failed", "cancelled")
FORMATS = ("keep", "png", "jpg", "webp")
JOBS_FILE = "jobs.json"
SPEEDS_FILE = "speeds.json"
_ID = re.compile(r"[0-9a-f]{16}")


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
    size: int  # bytes of the upload
    input_size: tuple[int, int] = (0, 0)  # (width, height) as seen (EXIF orientation applied)
    frames: int | None = None  # a video's frame count (None: a still image)
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
    estimate_seconds: float | None = None  # before the start, from this machine's speed for the model
    cancel_requested: bool = False
    interrupted: bool = False  # the server is stopping: the job goes back to the queue, not to "cancelled"
    settled: threading.Event = field(default_factory=threading.Event, repr=False)  # no worker holds it any more
    _first_progress: tuple[float, float] | None = field(default=None, repr=False)

    @property
    def input_pixels(self) -> int:
        return self.input_size[0] * self.input_size[1]

    def mark_progress(self) -> None:
        if self._first_progress is None:
            self._first_progress = (time.time(), self.progress)

    def eta_seconds(self) -> float | None:
        """The time left at the job's mean speed since its first progress report (loading the model and the
        first tile's warm-up left out): steadier than the last step's speed, which jitters frame to frame."""
        if self.state != "running" or self.started is None:
            return None
        now = time.time()
        first = self._first_progress
        if first is not None and self.progress > first[1] and now > first[0]:
            rate = (self.progress - first[1]) / (now - first[0])
            return max(0.0, (1.0 - self.progress) / rate)
        if self.estimate_seconds is not None:
            return max(0.0, self.estimate_seconds - (now - self.started))
        return None

    def to_json(self) -> dict[str, Any]:
        eta = self.eta_seconds()
        return {
            **self.to_record(),
            "progress": round(self.progress, 4),
            "eta_seconds": None if eta is None else round(eta, 1),
            "result_name": self.result.name if self.result is not None else None,
            "seconds": None
            if self.started is None or self.finished is None
            else round(self.finished - self.started, 3),
        }

    def to_record(self) -> dict[str, Any]:
        """What is kept in jobs.json: paths relative to the job's folder."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "model": self.options.model,
            "outscale": self.options.outscale,
            "width": self.options.width,
            "ext": self.options.ext,
            "denoise_strength": self.options.denoise_strength,
            "input_bytes": self.size,
            "input_size": list(self.input_size),
            "frames": self.frames,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
            "notes": list(self.notes),
            "device": self.device,
            "estimate_seconds": None if self.estimate_seconds is None else round(self.estimate_seconds, 1),
            "upload": self.upload.relative_to(self.folder).as_posix(),
            "result": None if self.result is None else self.result.relative_to(self.folder).as_posix(),
            "result_size": list(self.result_size) if self.result_size else None,
        }


class BadRecord(ValueError):
    pass


def _get(record: dict, key: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
    value = record.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise BadRecord(f"{key}: expected {kind}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRecord(f"{key}: not finite")
    return value


def _inside(folder: Path, relative: str | None) -> Path | None:
    if relative is None:
        return None
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()) or path == folder.resolve():
        raise BadRecord(f"path outside its job's folder: {relative!r}")
    return folder / relative


def _size(value: Any) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v >= 0 for v in value)):
        raise BadRecord(f"a size must be [width, height], not {value!r}")
    return value[0], value[1]


def job_from_record(work_dir: Path, record: Any) -> Job:
    """A Job from one entry of jobs.json; BadRecord names what is wrong."""
    if not isinstance(record, dict):
        raise BadRecord("an entry is not an object")
    job_id = _get(record, "id", str)
    if not _ID.fullmatch(job_id):
        raise BadRecord(f"id {job_id!r} is not one the server makes")
    state = _get(record, "state", str)
    if state not in STATES:
        raise BadRecord(f"state {state!r}")
    number = (int, float)
    folder = work_dir / job_id
    options = JobOptions(
        _get(record, "model", str),
        _get(record, "outscale", number, True),
        _get(record, "width", int, True),
        _get(record, "ext", str),
        _get(record, "denoise_strength", number, True),
    )
    job = Job(
        job_id,
        _get(record, "name", str),
        options,
        folder,
        _inside(folder, _get(record, "upload", str)) or folder,
        _get(record, "input_bytes", int),
        input_size=_size(record.get("input_size")),
        frames=_get(record, "frames", int, True),
        created=_get(record, "created", number),
        state=state,
        started=_get(record, "started", number, True),
        finished=_get(record, "finished", number, True),
        error=_get(record, "error", str, True),
        result=_inside(folder, _get(record, "result", str, True)),
        result_size=None if record.get("result_size") is None else _size(record["result_size"]),
        notes=[n for n in _get(record, "notes", list) if isinstance(n, str)],
        device=_get(record, "device", str, True),
        estimate_seconds=_get(record, "estimate_seconds", number, True),
    )
    if job.state == "running":  # the server stopped while it ran: it runs again
        job.state, job.started, job.device = "queued", None, None
    if job.state in ("done", "failed", "cancelled"):
        job.progress = 1.0 if job.state == "done" else 0.0
        job.settled.set()
    if job.state == "done" and (job.result is None or not job.result.is_file()):
        job.state, job.error, job.result = "failed", f"the result of {job.name} is no longer on the server", None
    return job


def _read_json(path: Path) -> Any:
    """The parsed file, None when absent, or the file set aside (one line on stderr) when it is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        _set_aside(path, f"not readable JSON ({err})")
        return None


def _set_aside(path: Path, why: str) -> None:
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    try:
        path.rename(aside)
    except OSError:
        aside = path
    print(f"realesr serve: {path} is {why}: kept as {aside.name}, starting without it", file=sys.stderr)


def load_jobs(work_dir: Path) -> dict[str, Job]:
    """The jobs kept in ``work_dir/jobs.json`` (none when it is absent). Folders no entry names (an upload cut
    off by a stop) are deleted when the list was read whole."""
    path = work_dir / JOBS_FILE
    data = _read_json(path)
    if data is None:
        return {}
    if not (isinstance(data, dict) and isinstance(data.get("jobs"), list)):
        _set_aside(path, 'not a job list ({"jobs": [...]})')
        return {}
    jobs: dict[str, Job] = {}
    for index, record in enumerate(data["jobs"]):
        try:
            job = job_from_record(work_dir, record)
        except BadRecord as err:
            print(f"realesr serve: {path}: entry {index} is skipped ({err})", file=sys.stderr)
            continue
        jobs[job.id] = job
    for folder in work_dir.iterdir():
        if folder.is_dir() and _ID.fullmatch(folder.name) and folder.name not in jobs:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    return jobs


def save_jobs(work_dir: Path, jobs: Iterable[Job]) -> None:
    kept = [j.to_record() for j in sorted(jobs, key=lambda j: j.created)]
    atomic_write_text(work_dir / JOBS_FILE, json.dumps({"jobs": kept}, indent=1))


class Speeds:
    """Seconds per input megapixel of each model on each device, from the last jobs (a running mean weighted to
    the latest) or a quick measurement; kept in ``speeds.json``."""

    def __init__(self, work_dir: Path | None) -> None:
        self.path = None if work_dir is None else work_dir / SPEEDS_FILE
        self._lock = threading.Lock()
        self._rates: dict[str, float] = {}
        data = _read_json(self.path) if self.path is not None else None
        if isinstance(data, dict):
            self._rates = {
                k: float(v)
                for k, v in data.items()
                if isinstance(k, str) and isinstance(v, (int, float)) and math.isfinite(v) and v > 0
            }

    def rate(self, model: str, device: str | None = None) -> float | None:
        with self._lock:
            if device is not None:
                return self._rates.get(f"{model}@{device}")
            found = [v for k, v in self._rates.items() if k.rpartition("@")[0] == model]
            return min(found) if found else None

    def estimate(self, model: str, pixels: int, frames: int | None = None) -> float | None:
        rate = self.rate(model)
        return None if rate is None or pixels <= 0 else rate * pixels * (frames or 1) / 1e6

    def set(self, model: str, device: str, seconds_per_mp: float, weight: float = 1.0) -> None:
        key = f"{model}@{device}"
        with self._lock:
            old = self._rates.get(key)
            self._rates[key] = seconds_per_mp if old is None else old + weight * (seconds_per_mp - old)
            if self.path is not None:
                try:
                    atomic_write_text(self.path, json.dumps(self._rates, indent=1))
                except OSError:
                    pass  # a speed not kept only costs a measurement at the next start

    def record(self, job: Job) -> None:
        """The job's speed, timed from its first progress report (so that loading the model, paid once per
        server, is not counted as if every job paid it)."""
        first = job._first_progress
        if first is None or job.finished is None or job.input_pixels <= 0 or job.device is None or first[1] >= 1:
            return
        megapixels = job.input_pixels * (job.frames or 1) / 1e6
        seconds = (job.finished - first[0]) / (1.0 - first[1])
        self.set(job.options.model, job.device, seconds / megapixels, weight=0.5)
