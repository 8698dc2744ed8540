"""One video's run: plan (before any frame is upscaled), resume (the work folder), then decode -> network ->
encode in three threads joined by bounded queues, then the mux.

Stopping: every thread waits with a timeout and looks at one ``stop`` event; the first failure in any thread
sets it and is raised in the caller's thread; Ctrl-C or SIGTERM in the caller's thread sets it too, and the
threads are joined (they end within a frame's work), so a stop ends the run within seconds, every time."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realesr.infer.video.colour import encoder_input_levels, encoder_input_like
from realesr.infer.video.encode import Muxer, SegmentWriter
from realesr.infer.video.options import VideoError, VideoInfo, VideoOptions, VideoResult, load_av
from realesr.infer.video.plan import EncoderPlan, plan_encoder
from realesr.infer.video.resume import WorkFolder, input_identity
from realesr.infer.video.sources import AnimationSource, Frame, StreamFacts, VideoSource

_END = object()
_STOPPED = object()
_WAIT = 0.2  # seconds between looks at the stop event
_JOIN = 15.0  # a thread ends within one frame's decode or encode; longer means it is stuck


@dataclass
class _Item:
    index: int
    pts: int
    duration: int
    rgb: np.ndarray  # the decoded frame (HxWx3 uint16), then the network's result (3xHxW float32 16-bit levels)
    cached: list[np.ndarray] | None  # the encoder's input saved by an interrupted run: no network, no conversion


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=_WAIT)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    while not stop.is_set():
        try:
            return q.get(timeout=_WAIT)
        except queue.Empty:
            continue
    return _STOPPED


def open_source(info: VideoInfo, source: Path, options: VideoOptions) -> VideoSource | AnimationSource:
    return AnimationSource(source, options) if info.kind == "animation" else VideoSource(source, options)


class VideoJob:
    """Upscale ``source`` into ``dest`` (a video container), resumable; ``run()`` -> VideoResult."""

    def __init__(self, upscaler, source: Path, dest: Path, info: VideoInfo, options: VideoOptions, on_progress):
        self.upscaler, self.source, self.dest, self.info, self.options = upscaler, source, dest, info, options
        self.on_progress = on_progress
        self.av = load_av()
        self.notes: list[str] = []

    def _plan(self) -> tuple[StreamFacts, EncoderPlan]:
        src = open_source(self.info, self.source, self.options)
        try:
            facts = src.first_facts()
        finally:
            src.close()
        self.notes += getattr(src, "notes", [])
        plan = plan_encoder(self.av, self.upscaler, self.source, self.dest, self.info, facts, self.options, self.notes)
        return facts, plan

    def _work_key(self) -> dict:
        up = self.upscaler
        return {
            "input": input_identity(self.source),
            "options": self.options.encoding_key(),
            "model": up.model_name,
            "scale": up.scale,
            "outscale": up.outscale,
            "dest": self.dest.name,
        }

    def run(self) -> VideoResult:
        started = time.perf_counter()
        facts, plan = self._plan()
        self.facts, self.plan = facts, plan
        work = WorkFolder(self.dest, self._work_key())
        segments = work.load()
        self.notes += work.notes
        done = sum(seg["frames"] for seg in segments)
        cached = work.cached()
        if done or cached:
            self.notes.append(f"resumed: {done + len(cached)} frames done by an earlier run")
        src = open_source(self.info, self.source, self.options)
        pipeline = Pipeline(self, plan, facts, work, segments, cached)
        try:
            pipeline.run(src, done, self._estimate_total(facts))
        finally:
            if not pipeline.stuck:
                src.close()
        frames = sum(seg["frames"] for seg in segments)
        if frames == 0:
            raise VideoError(f"{self.source}: no frame in the chosen range", params=("start", "end"))
        if src.corrupt:
            self.notes.append(f"{src.corrupt} corrupt packet(s) in the input: decoding went on past them")
        if src.concealed:
            self.notes.append(f"{src.concealed} frame(s) decoded with errors concealed by the decoder")
        muxer = Muxer(self.av, plan, self.options, work, self.upscaler.model_name)
        muxer.write(self.source, self.dest, segments, copy_from_source=self.info.kind == "video")
        self.notes += muxer.notes
        work.remove()
        resumed = done + len(cached & set(range(done, frames)))
        return VideoResult(
            self.source, self.dest, frames, time.perf_counter() - started, plan.out_size, resumed, self.notes
        )

    def _estimate_total(self, facts: StreamFacts) -> int | None:
        frames, duration, opts = self.info.frames, self.info.duration, self.options
        if opts.start is None and opts.end is None and frames:
            return frames
        if duration and facts.rate:
            end = min(duration, opts.end) if opts.end is not None else duration
            return max(0, round((end - (opts.start or 0)) * float(facts.rate)))
        return frames


class Pipeline:
    """The three threads of one run. The caller's thread runs the network (CUDA and signals live there)."""

    def __init__(self, job: VideoJob, plan: EncoderPlan, facts: StreamFacts, work: WorkFolder, segments, cached):
        self.job, self.plan, self.facts, self.work, self.cached = job, plan, facts, work, cached
        self.writer = SegmentWriter(job.av, plan, job.options, work, segments)
        depth = max(2, 2 * job.options.batch)
        self.decoded: queue.Queue = queue.Queue(maxsize=depth)
        self.upscaled: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.stuck = False
        self.cache_like = encoder_input_like(*plan.out_size, plan.pix_fmt, plan.tags)  # a cached frame's shapes

    def _fail(self, err: BaseException) -> None:
        if self.error is None:
            self.error = err
        self.stop.set()

    def run(self, src, skip: int, total: int | None) -> None:
        threads = [
            threading.Thread(target=self._decode, args=(src, skip), daemon=True, name="realesr-decode"),
            threading.Thread(target=self._encode, daemon=True, name="realesr-encode"),
        ]
        for thread in threads:
            thread.start()
        try:
            self._network(skip, total)
        except BaseException as err:
            self._fail(err)
            raise
        finally:
            for thread in threads:
                thread.join(_JOIN)
            self.stuck = any(thread.is_alive() for thread in threads)
        if self.error is not None:
            raise self.error

    def _decode(self, src, skip: int) -> None:
        try:
            for frame in src.frames(self.facts, self.plan.deep):
                if self.stop.is_set():
                    return
                if frame.index >= skip and not _put(self.decoded, self._item(frame), self.stop):
                    return
            _put(self.decoded, _END, self.stop)
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            self._fail(err)

    def _item(self, frame: Frame) -> _Item:
        if frame.index in self.cached:
            payload = self.work.load_frame(frame.index, self.cache_like)
            if payload is not None:
                return _Item(frame.index, frame.pts, frame.duration, payload[0], payload)
        rgb = frame.rgb()
        if rgb.dtype == np.uint8:
            # v * 257 / 65535 == v / 255: the network sees exactly the 8-bit frame a PNG would hold, and its
            # result is rounded to 16 bits, not 8, before the Y'CbCr conversion rounds it once to the output's.
            rgb = rgb.astype(np.uint16) * 257
        if rgb.shape[:2] != (self.facts.height, self.facts.width):
            raise VideoError(
                f"{self.job.source}: the frame size changes mid-stream (frame {frame.index}): not supported"
            )
        return _Item(frame.index, frame.pts, frame.duration, rgb, None)

    def _network(self, done: int, total: int | None) -> None:
        progress: Callable | None = self.job.on_progress
        if progress:
            progress(done, total)
        batch: list[_Item] = []
        while True:
            item = _get(self.decoded, self.stop)
            if item is _STOPPED:
                return
            if item is not _END and item.cached is None:
                batch.append(item)
            if batch and (item is _END or item.cached is not None or len(batch) >= self.job.options.batch):
                results = upscale_batch(self.job.upscaler, [b.rgb for b in batch], self.plan.out_size, levels=True)
                for b, rgb in zip(batch, results):
                    b.rgb = rgb
                    if not _put(self.upscaled, b, self.stop):
                        return
                done, batch = done + len(batch), []
                if progress:
                    progress(done, total)
            if item is _END:
                _put(self.upscaled, _END, self.stop)
                return
            if item.cached is not None:
                if not _put(self.upscaled, item, self.stop):
                    return
                done += 1
                if progress:
                    progress(done, total)

    def _encode(self) -> None:
        try:
            while True:
                item = _get(self.upscaled, self.stop)
                if item is _STOPPED:
                    return
                if item is _END:
                    self.writer.finish()
                    return
                payload = item.cached
                if payload is None:
                    payload = encoder_input_levels(item.rgb, self.plan.pix_fmt, self.plan.tags)
                    self.work.save_frame(item.index, payload)  # kept whatever stops the run after this
                self.writer.add(item.index, item.pts, item.duration, payload)
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            self._fail(err)
        finally:
            self.writer.abort()


def upscale_batch(
    upscaler, arrays: list[np.ndarray], out_size: tuple[int, int] | None = None, levels: bool = False
) -> list[np.ndarray]:
    """HxWx3 uint8/uint16 arrays of one size -> upscaled arrays of the same dtype (batched where the result
    cannot depend on it), cropped to ``out_size`` (width, height: an even size for a subsampled pixel format).
    ``levels`` (uint16 input): 3xHxW float32 16-bit code values instead, for :func:`encoder_input_levels`."""
    results = upscaler.upscale_arrays(arrays, levels=True) if levels else upscaler.upscale_arrays(arrays)
    if out_size is None:
        return results
    width, height = out_size
    if levels:
        return [r if r.shape[1:] == (height, width) else np.ascontiguousarray(r[:, :height, :width]) for r in results]
    return [r if r.shape[:2] == (height, width) else np.ascontiguousarray(r[:height, :width]) for r in results]
