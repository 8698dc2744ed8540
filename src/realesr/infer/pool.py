"""Every device of one machine: planned files sharded over one worker process per device.

`realesr upscale --device cuda:0,cuda:1` (or ``all``, or ``cpu,cpu``) plans every output in the parent (the same
:func:`realesr.infer.files.plan_upscale` as one process), then :func:`run_pool` starts one process per device
(spawn: CUDA cannot be forked) and hands out work one task at a time, so a fast device takes more. A worker
reads, upscales and writes each file with the rules of :func:`realesr.infer.files.run_item`, so the files are
the ones a single process writes.

A worker that dies (out of memory, a crash, a kill) takes only itself down: the parent sees its pipe close, and
the files it held are retried, one by one, on the other workers; a file that kills a second worker is reported
as failed, as are files left when no worker remains. Progress is reported through ``on_event``; nothing here
prints.

The building blocks are shared with Ray (:mod:`realesr.infer.ray_data`): :class:`UpscalerSpec` (a picklable
recipe for an Upscaler), :func:`upscale_items` (read, batch, write; never raises for one file) and
:func:`split_complete` (``--resume``).
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from realesr.errors import RealesrError, UsageError
from realesr.infer.files import FileResult, OutputOptions, PlanItem
from realesr.weights.zoo import DEFAULT_MODEL

__all__ = [
    "CRASH_HOOK",
    "CRASH_ONCE",
    "PoolEvent",
    "PoolReport",
    "UpscalerSpec",
    "is_complete",
    "parse_devices",
    "run_pool",
    "split_complete",
    "upscale_items",
]

# Fault injection for tests (a worker that dies mid-file, as an out-of-memory kill would): a worker reaching the
# input named CRASH_HOOK calls os._exit(3); with CRASH_ONCE (a path), only the one that creates that file.
CRASH_HOOK = "REALESR_TEST_WORKER_EXIT_ON"
CRASH_ONCE = "REALESR_TEST_WORKER_EXIT_ONCE"
_RETRIES = 1  # a file that stopped a worker gets one more worker; stopping that one too, it fails
_RESTARTS = 3  # fresh processes per device after deaths


@dataclass(frozen=True)
class UpscalerSpec:
    """How to build an :class:`realesr.infer.upscaler.Upscaler` in another process (a model name or path, not a
    loaded network: each worker loads it once, on its own device)."""

    model: str = DEFAULT_MODEL
    precision: str = "auto"
    tile: int | None = None
    tile_pad: int | None = None
    outscale: float | None = None
    alpha: str = "model"
    denoise_strength: float | None = None
    allow_download: bool = False

    def build(
        self,
        device: str = "auto",
        threads: int | None = None,
        allow_download: bool | None = None,
        progress: bool | Callable[[int, int | None], None] = False,
    ):
        """The Upscaler on ``device``; ``allow_download`` None: the spec's; ``progress``: the download's."""
        import torch

        from realesr.infer.upscaler import Upscaler

        if threads is not None:
            torch.set_num_threads(max(1, threads))
        kwargs = dataclasses.asdict(self)  # the Upscaler's own parameter names
        if allow_download is not None:
            kwargs["allow_download"] = allow_download
        return Upscaler(device=device, progress=progress, **kwargs)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> UpscalerSpec:
        """The spec of the Upscaler options found in ``options`` (e.g. a command line's, by parameter name)."""
        return cls(**{f.name: options[f.name] for f in dataclasses.fields(cls) if f.name in options})


def parse_devices(text: str) -> list[str] | None:
    """``--device`` -> one device per worker process, or None for the ordinary single process.

    ``all`` is every CUDA GPU; with none (a CPU-only or Apple machine) it is None: one process, all cores (the
    CPU's threads already share one image; ``cpu,cpu,...`` splits the cores into processes explicitly)."""
    name = str(text).strip().lower()
    if name == "all":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(count)] if count > 1 else None
    if "," not in name:
        return None
    devices = [part.strip() for part in name.split(",")]
    if any(not part for part in devices):
        raise UsageError(f"empty entry in the device list {text!r}", params=("device",))
    from realesr.devices import pick_device

    for device in devices:
        if device == "auto":
            raise UsageError("a device list names each device (cpu, cuda:N, mps), not auto", params=("device",))
        pick_device(device)  # a device that does not exist here fails now, before any process starts
    return devices


def cpu_threads(devices: Sequence[str]) -> int:
    """Torch threads of each CPU worker: the cores split evenly (``cpu,cpu`` on 2 cores: one thread each)."""
    cpu_workers = sum(1 for d in devices if d == "cpu") or 1
    return max(1, (os.cpu_count() or 1) // cpu_workers)


# ------------------------------------------------------------------------------------------ the work itself


def is_complete(item: PlanItem) -> bool:
    """Whether ``item``'s outputs are already there and complete (``--resume``).

    Complete means: the output (and comparison sheet, if planned) exists, carries realesr's mark, and its header
    has the planned size. Outputs are written atomically (a temporary file renamed when fully written), so a file
    at the planned name was written to the end; the mark and the size tell an earlier result of the same
    options from a user's file or a result of other options, which are redone.
    """
    from realesr.imagefiles import made_by_realesr, read_header

    for path in (item.output, item.compare):
        if path is None:
            continue
        if not path.is_file() or not made_by_realesr(path):
            return False
    if item.output is None:
        return False
    if item.out_size is not None:
        try:
            header = read_header(item.output)
        except RealesrError:
            return False
        if (header.width, header.height) != tuple(item.out_size):
            return False
    return True


def split_complete(items: Iterable[PlanItem]) -> tuple[list[PlanItem], list[PlanItem]]:
    """(items still to do, items whose outputs are complete); items with a planning error stay to do (they
    are reported again)."""
    todo: list[PlanItem] = []
    done: list[PlanItem] = []
    for item in items:
        (done if item.error is None and is_complete(item) else todo).append(item)
    return todo, done


def _crash_hook() -> str | None:
    return os.environ.get(CRASH_HOOK) or None


def _crash(name: str) -> None:
    once = os.environ.get(CRASH_ONCE)
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os._exit(3)


def upscale_items(
    upscaler,
    items: Sequence[PlanItem],
    options: OutputOptions,
    batch: int = 1,
) -> Iterator[tuple[PlanItem, FileResult | None, str | None]]:
    """Read, upscale and write ``items`` (planned by :func:`realesr.infer.files.plan_upscale`), yielding
    ``(item, result, None)`` or ``(item, None, one-line error)`` per item, in order. Never raises for one file.

    With ``batch`` > 1, images of one shape go through the network together (:meth:`Upscaler.upscale_arrays`);
    the files are written exactly as :func:`realesr.infer.files.run_item` writes them.
    """
    crash_on = _crash_hook()
    for start in range(0, len(items), max(1, batch)):
        chunk = items[start : start + max(1, batch)]
        if crash_on is not None:
            for item in chunk:
                if item.source.name == crash_on:
                    _crash(crash_on)
        if batch <= 1:
            yield from _one_by_one(upscaler, chunk, options)
        else:
            yield from _batched(upscaler, chunk, options)


def _one_by_one(upscaler, items: Sequence[PlanItem], options: OutputOptions):
    from realesr.infer.files import FileResult, run_item

    for item in items:
        try:
            result = run_item(upscaler, item, options)
            assert isinstance(result, FileResult)  # videos never reach the pool or Ray (docs/scaleout.md)
            yield item, result, None
        except Exception as err:  # noqa: BLE001 - one file's trouble (a decoder bug, a full disk) must not end the run
            yield item, None, _one_line(err, item)


def _one_line(err: Exception, item: PlanItem) -> str:
    from realesr.infer.files import with_source

    if isinstance(err, RealesrError):
        return with_source(str(err), item.source)
    return f"{item.source}: {type(err).__name__}: {err}"


def _batched(upscaler, chunk: Sequence[PlanItem], options: OutputOptions):
    """One batch: read every file, run each group of one shape through the network at once, write each."""
    from realesr.imagefiles import LoadedImage, read_image
    from realesr.infer.files import write_result

    loaded: list[tuple[PlanItem, LoadedImage, float]] = []
    for item in chunk:
        began = time.perf_counter()
        try:
            if item.error is not None or item.output is None:
                raise RealesrError(item.error or f"{item.source}: nothing planned")
            loaded.append((item, read_image(item.source), began))
        except Exception as err:  # noqa: BLE001 - one file's trouble must not end the run
            yield item, None, _one_line(err, item)
    groups: dict[tuple, list[int]] = collections.defaultdict(list)
    for index, (_item, image, _t) in enumerate(loaded):
        groups[(image.array.shape, image.array.dtype.str)].append(index)
    arrays: dict[int, np.ndarray | Exception] = {}
    for members in groups.values():
        try:
            outputs = upscaler.upscale_arrays([loaded[i][1].array for i in members])
            arrays.update(zip(members, outputs))
        except Exception as err:  # noqa: BLE001 - reported per file below
            for i in members:
                arrays[i] = err
    for index, (item, image, began) in enumerate(loaded):
        out = arrays[index]
        try:
            if isinstance(out, Exception):
                raise out
            yield item, write_result(upscaler, item, image, image.with_array(out), options, began), None
        except Exception as err:  # noqa: BLE001 - one file's trouble must not end the run
            yield item, None, _one_line(err, item)


# ------------------------------------------------------------------------------------------ the pool


@dataclass
class PoolEvent:
    """What the pool reports to ``on_event``. ``kind``: "ready" (a worker loaded the model), "done", "failed"
    (a file; ``message`` says why), "retry" (a file given to another worker after its worker died), "lost" (a
    worker died or could not start; ``message`` says why)."""

    kind: str
    device: str
    worker: int
    item: PlanItem | None = None
    result: FileResult | None = None
    message: str = ""


@dataclass
class PoolReport:
    results: list[FileResult] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # one line per worker that died or did not start
    fell_back: list[str] = field(default_factory=list)  # devices whose half precision overflowed (fp32 used)
    model_name: str = ""
    seconds: float = 0.0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(143)  # unwinds through atomic_path, which removes its temporary file


def _worker_main(
    conn: Connection,
    worker: int,
    device: str,
    spec: UpscalerSpec,
    options: OutputOptions,
    threads: int | None,
    batch: int,
) -> None:
    # Ctrl-C reaches the whole process group: the parent decides, workers just stop (atomic writes clean up).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        try:
            upscaler = spec.build(device, threads=threads if device == "cpu" else None)
        except RealesrError as err:
            conn.send(("fatal", str(err)))
            return
        except Exception as err:  # noqa: BLE001 - any failure to start is reported to the parent as one line
            conn.send(("fatal", f"{type(err).__name__}: {err}"))
            return
        conn.send(("ready", upscaler.model_name))
        _serve(conn, upscaler, options, batch)
    except SystemExit as stop:
        # Stopped by the parent, after the temporary file of the write in progress was removed on the way out:
        # leave now (tearing torch down at interpreter exit takes seconds on a busy machine).
        os._exit(stop.code if isinstance(stop.code, int) else 1)


def _serve(conn: Connection, upscaler, options: OutputOptions, batch: int) -> None:
    """A worker's tasks, one after the other, until the parent sends None or goes away."""
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        for item, result, error in upscale_items(upscaler, task, options, batch=batch):
            conn.send(("done", str(item.source), result) if error is None else ("failed", str(item.source), error))
        conn.send(("idle", upscaler.fell_back_to_fp32))


@dataclass
class _Worker:
    number: int
    device: str
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    alive: bool = True
    held: list[PlanItem] = field(default_factory=list)  # sent and not yet reported
    busy: bool = False  # a task is out; until its "idle", no other is sent


@dataclass
class _Task:
    items: list[PlanItem]
    avoid: int | None = None  # the worker slot this file stopped, for a retry


def _tasks(items: Sequence[PlanItem], batch: int) -> collections.deque[_Task]:
    """Work units: single files, or with ``batch`` > 1 runs of up to ``batch`` files of one size and mode (from
    the planned headers), in input order."""
    if batch <= 1:
        return collections.deque(_Task([item]) for item in items)
    groups: dict[tuple, list[PlanItem]] = {}
    tasks: collections.deque[_Task] = collections.deque()
    for item in items:
        header = item.header
        key = (header.width, header.height, header.mode, header.has_alpha) if header else ("?", id(item))
        group = groups.setdefault(key, [])
        group.append(item)
        if len(group) == batch:
            tasks.append(_Task(groups.pop(key)))
    tasks.extend(_Task(group) for group in groups.values())
    return tasks


def run_pool(
    items: Sequence[PlanItem],
    spec: UpscalerSpec,
    options: OutputOptions,
    devices: Sequence[str],
    batch: int = 1,
    on_event: Callable[[PoolEvent], None] | None = None,
) -> PoolReport:
    """Upscale planned ``items`` on one worker process per entry of ``devices``; returns what happened.

    Items with a planning error are reported as failed without being sent anywhere. Raises RealesrError when no
    worker could load the model (the reason of the first); on KeyboardInterrupt (SIGINT, or SIGTERM turned into
    it by the CLI) the workers are stopped and the exception goes on.
    """
    started = time.perf_counter()
    pool = _Pool(spec, options, devices, batch, on_event or (lambda _event: None))
    todo = pool.plan(items)
    if todo:
        finished = False
        try:
            pool.start_all()
            pool.run()
            pool.finish()
            finished = True
        finally:
            pool.stop(finished)
    pool.report.seconds = time.perf_counter() - started
    return pool.report


class _Pool:
    """The parent's side: planning (tasks), dispatch (a task to each idle worker), collecting (the workers'
    messages, a lost worker's files handed on), and stopping."""

    def __init__(self, spec, options, devices, batch, emit: Callable[[PoolEvent], None]) -> None:
        self.spec, self.options, self.devices, self.batch, self.emit = spec, options, list(devices), batch, emit
        self.report = PoolReport()
        self.pending: collections.deque[_Task] = collections.deque()
        self.attempts: collections.Counter[int] = collections.Counter()
        self.restarts: collections.Counter[int] = collections.Counter()
        self.workers: list[_Worker] = []
        self.context = multiprocessing.get_context("spawn")
        self.threads = cpu_threads(devices)

    # -------------------------------------------------------------------------------------- planning
    def plan(self, items: Sequence[PlanItem]) -> list[PlanItem]:
        """Items with a planning error fail now; the others become the pending tasks."""
        todo = []
        for item in items:
            if item.error is not None:
                self._fail(item, item.error)
            else:
                todo.append(item)
        self.pending = _tasks(todo, self.batch)
        return todo

    def _fail(self, item: PlanItem, message: str, worker: _Worker | None = None) -> None:
        self.report.failures.append((item.source, message))
        device, number = (worker.device, worker.number) if worker else ("", -1)
        self.emit(PoolEvent("failed", device, number, item=item, message=message))

    # -------------------------------------------------------------------------------------- dispatch
    def start_all(self) -> None:
        for slot in range(len(self.devices)):
            self.start(slot)

    def start(self, slot: int) -> None:
        parent_end, child_end = self.context.Pipe()
        device = self.devices[slot]
        process = self.context.Process(
            target=_worker_main,
            name=f"realesr-upscale-{device}",
            args=(child_end, slot, device, self.spec, self.options, self.threads, self.batch),
            daemon=True,
        )
        process.start()
        child_end.close()
        self.workers.append(_Worker(slot, device, process, parent_end))

    def run(self) -> None:
        """Hand out tasks and collect results until nothing is pending and nobody is busy (or nobody is left)."""
        while True:
            live = [w for w in self.workers if w.alive]
            if not live:
                return
            for worker in live:
                if worker.ready and not worker.busy and self.pending:
                    task = self._next_task(worker, live)
                    if task is not None:
                        worker.held = list(task.items)
                        worker.busy = True
                        worker.conn.send(worker.held)
            if not self.pending and not any(w.busy for w in live):
                return
            waitables = {w.conn: w for w in live}
            for ready in wait(list(waitables)):
                self.collect(waitables[ready])  # type: ignore[index]

    def _next_task(self, worker: _Worker, live: list[_Worker]) -> _Task | None:
        """The first task for ``worker``; a retried file goes elsewhere than where it died while elsewhere
        exists."""
        for index, task in enumerate(self.pending):
            if task.avoid != worker.number or not any(w.number != task.avoid for w in live):
                del self.pending[index]
                return task
        return None

    # -------------------------------------------------------------------------------------- collecting
    def collect(self, worker: _Worker) -> None:
        """One message of ``worker`` (or its end)."""
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            self.lose(worker, "")
            return
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            self.report.model_name = self.report.model_name or message[1]
            self.emit(PoolEvent("ready", worker.device, worker.number, message=message[1]))
        elif kind == "fatal":
            self.lose(worker, message[1])
        elif kind in ("done", "failed"):
            item = next(i for i in worker.held if str(i.source) == message[1])  # inputs are unique
            worker.held.remove(item)
            if kind == "done":
                self.report.results.append(message[2])
                self.emit(PoolEvent("done", worker.device, worker.number, item=item, result=message[2]))
            else:
                self._fail(item, message[2], worker)
        elif kind == "idle":
            worker.busy = False
            if message[1] and worker.device not in self.report.fell_back:
                self.report.fell_back.append(worker.device)

    def lose(self, worker: _Worker, why: str) -> None:
        """A worker died or could not start: restart its device (a few times) and hand its files on."""
        worker.alive = False
        worker.conn.close()
        worker.process.join(timeout=5)
        reason = why or _exit_reason(worker.process.exitcode)
        line = f"worker {worker.number} on {worker.device} stopped ({reason})"
        self.report.lost.append(line)
        self.emit(PoolEvent("lost", worker.device, worker.number, message=line))
        # A worker that had loaded the model died of a file (out of memory, a crash): its device gets a fresh
        # process, a few times; one that could not start is not restarted.
        if worker.ready and self.restarts[worker.number] < _RESTARTS and (self.pending or worker.held):
            self.restarts[worker.number] += 1
            self.start(worker.number)
        others = any(w.alive for w in self.workers)
        for item in reversed(worker.held):  # back to the front of the queue, one file per task
            key = id(item)
            self.attempts[key] += 1
            if self.attempts[key] <= _RETRIES and others:
                self.pending.appendleft(_Task([item], avoid=worker.number))
                self.emit(PoolEvent("retry", worker.device, worker.number, item=item, message=line))
            else:
                message = f"{item.source}: the worker process upscaling it stopped ({reason})"
                if self.attempts[key] > 1:
                    message += f", {self.attempts[key]} times"
                self._fail(item, message, worker)
        worker.held = []

    # -------------------------------------------------------------------------------------- the end
    def finish(self) -> None:
        """After the work: files nobody could take fail; the workers still there are told to leave."""
        if not any(w.ready for w in self.workers):
            raise RealesrError("no worker process could start: " + "; ".join(self.report.lost))
        for task in self.pending:
            for item in task.items:
                self._fail(item, f"{item.source}: not upscaled: no worker process left ({'; '.join(self.report.lost)})")
        for worker in self.workers:
            if worker.alive:
                worker.conn.send(None)

    def stop(self, finished: bool) -> None:
        """Interrupted: stop the workers now (SIGTERM: each removes its temporary file); else let them exit."""
        if finished:
            for worker in self.workers:
                worker.process.join(timeout=30)
        for worker in self.workers:  # all at once: each takes a moment to unwind
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in self.workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "no exit code"
    return f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
