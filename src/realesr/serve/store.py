"""What `realesr serve` keeps on disk beside the results: the job list (``jobs.json``) and the speed of each
model on this machine (``speeds.json``), both read back through one validating reader.

Both go through :mod:`realesr.statefiles` (size-limited, regular files only, checked against a schema). A file that
fails is set aside (renamed ``*.corrupt-TIME``) with one line on stderr naming it, and the server starts without
it; a damaged entry of the list is skipped; a record that names a path outside its job's folder is dropped, so a
tampered list cannot make the server read or delete anything else.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from realesr.atomic import atomic_write_text
from realesr.schema import Choice, Float, Int, Map, Name, Nullable, Record, Seq, Str
from realesr.statefiles import StateFileError, check_state, read_json

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


_WHEN = Nullable(Float(low=0))
_SIZE = Seq(Int(0, 1 << 20), 2, 2)
_RELATIVE = Str(max_len=1024, empty=False)
JOB_RECORD = Record(
    {
        "id": Str(max_len=16),
        "name": Name(),
        "state": Choice(STATES),
        "model": Str(max_len=1024, empty=False),
        "outscale": Nullable(Float(above=0, high=16)),
        "width": Nullable(Int(1, 65500)),
        "ext": Choice(FORMATS),
        "denoise_strength": Nullable(Float(low=0, high=1)),
        "input_bytes": Int(0),
        "input_size": _SIZE,
        "frames": Nullable(Int(1)),
        "created": Float(low=0),
        "started": _WHEN,
        "finished": _WHEN,
        "error": Nullable(Str()),
        "notes": Seq(Str(), max_len=100),
        "device": Nullable(Str(max_len=100)),
        "estimate_seconds": _WHEN,
        "upload": _RELATIVE,
        "result": Nullable(_RELATIVE),
        "result_size": Nullable(_SIZE),
    },
    required=frozenset({"id", "name", "state", "model", "ext", "input_bytes", "input_size", "created", "upload"}),
)
JOB_LIST = Record({"jobs": Seq(Record({}), max_len=1_000_000)}, required=frozenset({"jobs"}), closed=True)
SPEED_TABLE = Map(Float(above=0))
REMEDY = "the server set it aside and goes on without it"


class BadRecord(ValueError):
    pass


def _inside(folder: Path, relative: str | None) -> Path | None:
    if relative is None:
        return None
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()) or path == folder.resolve():
        raise BadRecord(f"path outside its job's folder: {relative!r}")
    return folder / relative


def job_from_record(work_dir: Path, record: dict[str, Any]) -> Job:
    """A Job from one entry of jobs.json, already checked against JOB_RECORD; BadRecord for what the shape cannot
    say (an id the server would not make, a path leading out of the job's folder)."""
    job_id = record["id"]
    if not _ID.fullmatch(job_id):
        raise BadRecord(f"id {job_id!r} is not one the server makes")
    folder = work_dir / job_id
    options = JobOptions(
        record["model"], record.get("outscale"), record.get("width"), record["ext"], record.get("denoise_strength")
    )
    job = Job(
        job_id,
        record["name"],
        options,
        folder,
        _inside(folder, record["upload"]) or folder,
        record["input_bytes"],
        input_size=(record["input_size"][0], record["input_size"][1]),
        frames=record.get("frames"),
        created=record["created"],
        state=record["state"],
        started=record.get("started"),
        finished=record.get("finished"),
        error=record.get("error"),
        result=_inside(folder, record.get("result")),
        result_size=None if record.get("result_size") is None else tuple(record["result_size"]),
        notes=list(record.get("notes") or []),
        device=record.get("device"),
        estimate_seconds=record.get("estimate_seconds"),
    )
    return _settle(job)


def _settle(job: Job) -> Job:
    if job.state == "running":  # the server stopped while it ran: it runs again
        job.state, job.started, job.device = "queued", None, None
    if job.state in ("done", "failed", "cancelled"):
        job.progress = 1.0 if job.state == "done" else 0.0
        job.settled.set()
    if job.state == "done" and (job.result is None or not job.result.is_file()):
        job.state, job.error, job.result = "failed", f"the result of {job.name} is no longer on the server", None
    return job


def _read(path: Path, shape: Any, what: str) -> Any:
    """The checked content of a kept file, None when it is absent, or None after setting a damaged one aside."""
    try:
        return read_json(path, shape, what=what, remedy=REMEDY)
    except FileNotFoundError:
        return None
    except StateFileError as err:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        with contextlib.suppress(OSError):
            path.rename(aside)
        print(f"realesr serve: {err} (kept as {aside.name})", file=sys.stderr)
        return None


def load_jobs(work_dir: Path) -> dict[str, Job]:
    """The jobs kept in ``work_dir/jobs.json`` (none when it is absent). A damaged entry is skipped with one
    line on stderr, the others load. Folders no entry names (an upload cut off by a stop) are deleted when the
    list was read whole."""
    path = work_dir / JOBS_FILE
    data = _read(path, JOB_LIST, "the page's job list")
    if data is None:
        return {}
    jobs: dict[str, Job] = {}
    for index, entry in enumerate(data["jobs"]):
        try:
            record = check_state(entry, JOB_RECORD, path, what=f"job {index} of the page's job list", remedy=REMEDY)
            job = job_from_record(work_dir, record)
        except (StateFileError, BadRecord) as err:
            print(f"realesr serve: {path}: job {index} is skipped ({err})", file=sys.stderr)
            continue
        jobs[job.id] = job
    for folder in work_dir.iterdir():
        if folder.is_dir() and _ID.fullmatch(folder.name) and folder.name not in jobs:
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
        data = _read(self.path, SPEED_TABLE, "the page's table of model speeds") if self.path else None
        self._rates = dict(data or {})

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
