"""Encoding: frames into segments of whole GOPs (each a fresh encoder, so each starts on a key frame), then the
segments and the input's other streams muxed, interleaved by time, into the output written atomically."""

from __future__ import annotations

import heapq
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from realesr.atomic import atomic_path
from realesr.imagefiles import SOFTWARE
from realesr.infer.video.colour import frame_from
from realesr.infer.video.options import VideoError, VideoOptions, one_line
from realesr.infer.video.plan import EncoderPlan, open_video_stream
from realesr.infer.video.resume import WorkFolder

SEGMENT_FORMAT = "matroska"
_TAGS = ("language", "title", "handler_name")


class SegmentWriter:
    """Encodes frames in order into the work folder's segments; ``segments`` (the manifest's list) grows as
    each one closes, and the manifest is rewritten then."""

    def __init__(self, av, plan: EncoderPlan, options: VideoOptions, work: WorkFolder, segments: list[dict]):
        self.av, self.plan, self.options, self.work, self.segments = av, plan, options, work, segments
        self.open: dict | None = None

    def add(self, index: int, pts: int, duration: int, payload: list[np.ndarray]) -> None:
        """Encode one frame given as :func:`encoder_input` made it."""
        if self.open is None:
            self.open = self._start(index)
        seg = self.open
        frame = frame_from(self.av, payload, self.plan.pix_fmt, self.plan.tags)
        frame.pts, frame.time_base = pts, self.plan.time_base
        seg["pts"].append(pts)
        seg["durations"].append(duration)
        for packet in seg["stream"].encode(frame):
            seg["container"].mux(packet)
        if len(seg["pts"]) >= self.options.segment_frames:
            self.finish()

    def _start(self, first: int) -> dict:
        name = f"seg_{len(self.segments):05d}.mkv"
        part = self.work.path / f"{name}.part"
        container = self.av.open(str(part), "w", format=SEGMENT_FORMAT)
        stream = open_video_stream(container, self.plan, self.options)
        return {
            "container": container,
            "stream": stream,
            "part": part,
            "file": name,
            "first": first,
            "pts": [],
            "durations": [],
        }

    def finish(self) -> None:
        """Close the open segment (flush its encoder), name it in the manifest, drop its cached frames."""
        seg, self.open = self.open, None
        if seg is None:
            return
        for packet in seg["stream"].encode():
            seg["container"].mux(packet)
        seg["container"].close()
        self.segments.append(
            self.work.close_segment(seg["part"], seg["file"], seg["first"], seg["pts"], seg["durations"])
        )
        self.work.write(self.segments)
        self.work.drop_frames(seg["first"], len(seg["pts"]))

    def abort(self) -> None:
        """An unfinished segment is not kept (its frames are, in the cache: the resume re-encodes them)."""
        seg, self.open = self.open, None
        if seg is None:
            return
        try:
            seg["container"].close()
        except (self.av.FFmpegError, OSError, ValueError):
            pass
        seg["part"].unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------- mux


class Muxer:
    """The closed segments (video) and, for a video input, its audio/subtitle/data streams copied packet for
    packet, into ``dest`` atomically, with the input's rotation, tags, chapters and average frame rate."""

    def __init__(self, av, plan: EncoderPlan, options: VideoOptions, work: WorkFolder, model_name: str):
        self.av, self.plan, self.options, self.work, self.model_name = av, plan, options, work, model_name
        self.notes: list[str] = []

    def write(self, source: Path, dest: Path, segments: list[dict], copy_from_source: bool) -> None:
        av = self.av
        with atomic_path(dest, suffix=".tmp") as tmp:
            first = av.open(str(self.work.path / segments[0]["file"]))
            input_ = av.open(str(source), metadata_errors="ignore") if copy_from_source else None
            # bitexact: no random segment UID or library version in the file, so a resumed run's output is
            # byte-identical to an uninterrupted one's.
            with first, av.open(str(tmp), "w", format=self.plan.container, options={"fflags": "+bitexact"}) as out:
                video = self._video_stream(out, first.streams.video[0])
                others: Iterator = iter(())
                if input_ is not None:
                    with input_:
                        others = self._from_source(input_, out, video)
                        for packet in merge_by_time(self._video_packets(segments, video), others):
                            out.mux(packet)
                    return
                for packet in self._video_packets(segments, video):
                    out.mux(packet)

    def _video_stream(self, out, template):
        video = out.add_stream_from_template(template, opaque=True)  # not a fresh codec: AV1's has no encoder
        video.time_base = self.plan.time_base
        video.codec_context.framerate = self.plan.rate  # the input's average rate (a VFR input's too)
        if self.plan.rotation:
            video.set_display_rotation(self.plan.rotation)
        out.metadata["comment"] = f"{SOFTWARE} {self.model_name}"  # marks our own results
        return video

    def _from_source(self, source, out, video) -> Iterator:
        in_video = source.streams.video[0]
        for tag in _TAGS:
            if tag in in_video.metadata:
                video.metadata[tag] = in_video.metadata[tag]
        copies = self._copy_streams(source, out)
        for key, value in source.metadata.items():
            if key != "comment":
                out.metadata[key] = value
        self._copy_chapters(source, out)
        streams = [source.streams[i] for i in copies]
        return self._other_packets(source, streams, copies) if streams else iter(())

    def _copy_streams(self, container, out) -> dict[int, object]:
        """Output streams for the input's audio/subtitle/data streams that the output container takes; the
        others are left out with a note naming them."""
        av = self.av
        mapping: dict[int, object] = {}
        if not self.options.audio:
            return mapping
        for stream in container.streams:
            if stream.type in ("video", "attachment"):
                continue
            label = f"{stream.type} stream {stream.index} ({stream.codec_context.name}"
            label += f", {stream.language})" if stream.language else ")"
            try:  # can this container hold it? Try a header with that stream alone.
                with av.open(io.BytesIO(), "w", format=self.plan.container) as probe:
                    probe.add_stream_from_template(stream)
                    probe.start_encoding()
            except (av.FFmpegError, ValueError) as err:
                self.notes.append(f"{label} left out: the output container cannot hold it ({one_line(err)})")
                continue
            new = out.add_stream_from_template(stream)
            for tag in _TAGS:
                if tag in stream.metadata:
                    new.metadata[tag] = stream.metadata[tag]
            new.disposition = stream.disposition
            mapping[stream.index] = new
        return mapping

    def _copy_chapters(self, source, out) -> None:
        try:
            chapters = source.chapters()
        except (AttributeError, self.av.FFmpegError):
            return
        if chapters:
            try:
                out.set_chapters(chapters)
            except Exception:  # noqa: BLE001 - a container without chapters
                self.notes.append("chapters left out: the output container cannot hold them")

    def _video_packets(self, segments: list[dict], stream) -> Iterator:
        """Every segment's packets with their frames' own timestamps, shifted by the start time (the same shift
        as the copied streams', so audio and video keep their offset)."""
        av, tb = self.av, self.plan.time_base
        shift = round(self.options.start / tb) if self.options.start else 0
        last_end = None
        for seg in segments:
            pts_list, durations = self.work.segment_times(seg)
            with av.open(str(self.work.path / seg["file"])) as segment:
                packets = [p for p in segment.demux(segment.streams.video[0]) if p.size]
            if len(packets) != len(pts_list):
                raise VideoError(f"{seg['file']}: {len(packets)} packets for {len(pts_list)} frames")
            for i, packet in enumerate(packets):
                pts = pts_list[i]
                nxt = pts_list[i + 1] if i + 1 < len(pts_list) else None
                duration = (nxt - pts) if nxt is not None else (durations[i] or (pts - last_end if last_end else 0))
                last_end = pts
                packet.stream, packet.time_base = stream, tb
                packet.pts = packet.dts = pts - shift
                packet.duration = max(0, duration)
                yield packet

    def _other_packets(self, source, streams, copies) -> Iterator:
        start, end = self.options.start, self.options.end
        for packet in source.demux(streams):
            if packet.dts is None and packet.pts is None:
                continue
            t = float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)
            if (start is not None and t < start) or (end is not None and t >= end):
                continue
            if start:
                shift = round(start / packet.time_base)
                if packet.pts is not None:
                    packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
            packet.stream = copies[packet.stream.index]
            yield packet


def merge_by_time(*iterators: Iterator) -> Iterator:
    """Packets of several streams in order of their decode time (each iterator is in order already)."""

    def keyed(it, n):
        for seq, packet in enumerate(it):
            ts = packet.dts if packet.dts is not None else packet.pts
            yield (float(ts * packet.time_base) if ts is not None else 0.0, n, seq, packet)

    for _t, _n, _s, packet in heapq.merge(*(keyed(it, n) for n, it in enumerate(iterators))):
        yield packet
