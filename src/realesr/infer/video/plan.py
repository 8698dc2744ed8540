"""The encoder plan, made once from the stream's facts before any frame is upscaled: codec, pixel format, output
size, colour, timing. Everything an encoder could refuse (a codec this build lacks, a pixel format, a size, a
preset, a container) is tried now on one blank frame, so a bad option fails the file before the work, not in
the encoder thread half-way through."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from realesr.infer.video.colour import ColourTags, rgb_to_frame
from realesr.infer.video.options import (
    DEFAULT_CRF,
    ENCODERS,
    WRITE_CONTAINERS,
    VideoError,
    VideoInfo,
    VideoOptions,
    available_codecs,
    codec_family,
    one_line,
)
from realesr.infer.video.sources import StreamFacts, is_high_depth


@dataclass(frozen=True)
class EncoderPlan:
    family: str
    encoder: str
    pix_fmt: str
    deep: bool  # the RGB between the conversions is 16-bit
    tags: ColourTags
    out_size: tuple[int, int]  # width, height
    time_base: Fraction
    rate: Fraction
    sar: Fraction | None
    rotation: int
    container: str  # FFmpeg muxer of the output


def _pixel_format(av, source: Path, encoder: str, facts: StreamFacts, wanted: str | None) -> str:
    supported = [f.name for f in av.Codec(encoder, "w").video_formats or []]
    if wanted is not None:
        if supported and wanted not in supported:
            raise VideoError(
                f"{source}: {encoder} cannot encode {wanted} (it takes {', '.join(supported)})", params=("pix_fmt",)
            )
        return wanted
    candidate = facts.pix_fmt.replace("yuvj", "yuv")
    if candidate in supported and candidate.startswith("yuv"):
        return candidate
    return "yuv420p10le" if facts.deep and "yuv420p10le" in supported else "yuv420p"


def _even_size(source: Path, size: tuple[int, int], pix_fmt: str, notes: list[str]) -> tuple[int, int]:
    """Subsampled chroma needs sides that are multiples of 2 (4:2:0 both, 4:2:2 the width)."""
    width, height = size
    new_w = width - (width % 2 if any(s in pix_fmt for s in ("420", "422", "411")) else 0)
    new_h = height - (height % 2 if "420" in pix_fmt else 0)
    if new_w < 2 or new_h < 2:
        raise VideoError(f"{source}: the output would be {width} x {height}, too small to encode", params=("outscale",))
    if (new_w, new_h) != (width, height):
        notes.append(f"{width} x {height} is odd for {pix_fmt}: cropped to {new_w} x {new_h}")
    return new_w, new_h


_X26X_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
_NUMBER_PRESETS = {"vp8": (-16, 16), "vp9": (-8, 8), "av1": (-2, 13)}


def check_preset(source: Path, family: str, preset: str | None) -> None:
    """A preset the encoder knows (x264 and x265 print an unknown one on the terminal themselves)."""
    if preset is None:
        return
    if family in ("h264", "hevc"):
        if preset not in _X26X_PRESETS:
            raise VideoError(
                f"{source}: {family} has no preset {preset!r}: use one of {', '.join(_X26X_PRESETS)}",
                params=("preset",),
            )
        return
    low, high = _NUMBER_PRESETS[family]
    try:
        ok = low <= int(preset) <= high
    except ValueError:
        ok = False
    if not ok:
        raise VideoError(
            f"{source}: the {family} preset is a number in {low}..{high}, not {preset!r}", params=("preset",)
        )


def plan_encoder(
    av, upscaler, source: Path, dest: Path, info: VideoInfo, facts: StreamFacts, options: VideoOptions, notes: list
) -> EncoderPlan:
    """The plan for ``dest``; raises VideoError (naming the option) for what this build or encoder cannot do."""
    family = codec_family(info, options)
    if family not in available_codecs():
        raise VideoError(
            f"{source}: this PyAV build has no {ENCODERS[family]} encoder for {family}: "
            f"use one of {', '.join(available_codecs())}",
            params=("codec",),
        )
    encoder = ENCODERS[family]
    check_preset(source, family, options.preset)
    pix_fmt = _pixel_format(av, source, encoder, facts, options.pix_fmt)
    if facts.tags.guessed:
        notes.append(f"no colour matrix declared: assumed {facts.tags.describe()}")
    height, width = upscaler.output_size(facts.height, facts.width)
    plan = EncoderPlan(
        family,
        encoder,
        pix_fmt,
        facts.deep or is_high_depth(pix_fmt),
        facts.tags,
        _even_size(source, (width, height), pix_fmt, notes),
        facts.time_base,
        facts.rate,
        facts.sar,
        facts.rotation,
        WRITE_CONTAINERS.get(dest.suffix.lower(), "matroska"),
    )
    try_encoder(av, plan, options, source, dest)
    return plan


def encoder_options(plan: EncoderPlan, options: VideoOptions) -> dict[str, str]:
    """Encoder settings: the CRF and preset asked for, B-frames off (decode order = presentation order, so
    segments join with exact timestamps), a fixed thread count (a resumed run encodes bit for bit the same)."""
    crf = str(options.crf if options.crf is not None else DEFAULT_CRF[plan.family])
    threads = str(options.threads)
    if plan.family == "h264":
        return {"crf": crf, "preset": options.preset or "medium", "bf": "0", "threads": threads}
    if plan.family == "hevc":
        x265 = f"bframes=0:log-level=none:pools={threads}:frame-threads={threads}"
        return {"crf": crf, "preset": options.preset or "medium", "x265-params": x265}
    if plan.family in ("vp9", "vp8"):
        return {
            "crf": crf,
            "b": "0",
            "cpu-used": options.preset or "4",
            "threads": threads,
            "deadline": "good",
            "auto-alt-ref": "0",
            "lag-in-frames": "0",
        }
    return {"crf": crf, "preset": options.preset or "8", "svtav1-params": f"lp={threads}:pred-struct=1"}


def open_video_stream(container, plan: EncoderPlan, options: VideoOptions):
    """An encoding stream for ``plan`` in ``container`` (a segment, or the trial)."""
    stream = container.add_stream(plan.encoder, rate=plan.rate, options=encoder_options(plan, options))
    stream.width, stream.height = plan.out_size
    stream.pix_fmt = plan.pix_fmt
    stream.time_base = plan.time_base
    ctx = stream.codec_context
    ctx.time_base = plan.time_base
    ctx.colorspace, ctx.color_range = plan.tags.colorspace, plan.tags.color_range
    ctx.color_primaries, ctx.color_trc = plan.tags.primaries, plan.tags.trc
    if plan.sar and plan.sar.numerator:
        ctx.sample_aspect_ratio = plan.sar
    return stream


def try_encoder(av, plan: EncoderPlan, options: VideoOptions, source: Path, dest: Path) -> None:
    """Encode one blank frame with the plan into the output's container, in memory: what the encoder or the
    container refuses (size, pixel format, preset, codec in .webm) is said now."""
    with av.open(io.BytesIO(), "w", format=plan.container) as probe:
        holds = plan.family in probe.supported_codecs
    if not holds:
        raise VideoError(
            f"{source}: {dest.suffix or plan.container} cannot hold {plan.family}: "
            "choose another codec or a .mkv output",
            params=("codec", "output"),
        )
    blank = np.zeros((plan.out_size[1], plan.out_size[0], 3), np.uint16 if plan.deep else np.uint8)
    try:
        with av.open(io.BytesIO(), "w", format=plan.container) as trial:
            stream = open_video_stream(trial, plan, options)
            frame = rgb_to_frame(av, blank, plan.pix_fmt, plan.tags)
            frame.pts, frame.time_base = 0, plan.time_base
            for packet in stream.encode(frame):
                trial.mux(packet)
            for packet in stream.encode():
                trial.mux(packet)
    except (av.FFmpegError, ValueError) as err:
        raise VideoError(
            f"{source}: {plan.encoder} refuses these settings ({plan.out_size[0]} x {plan.out_size[1]} "
            f"{plan.pix_fmt}: {getattr(err, 'strerror', None) or one_line(err)}): "
            "choose another size, preset, crf or pixel format",
            params=("outscale", "preset", "crf", "pix_fmt"),
        ) from None
