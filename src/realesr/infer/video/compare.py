"""``--compare`` for videos and animations: a split-screen clip of the same length as the result, bicubic on the
left half and the network's result on the right, with a thin line between, so that what the model did is seen
in motion without an editor. Written after the result, from the input and the result (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realesr.atomic import atomic_path
from realesr.infer.video.options import VideoError, VideoOptions
from realesr.infer.video.plan import EncoderPlan, open_video_stream
from realesr.infer.video.sources import AnimationSource, StreamFacts, VideoSource


def split_screen(low: np.ndarray, result: np.ndarray) -> np.ndarray:
    """Bicubic upscale of ``low`` (HxWxC) to ``result``'s size on the left half, ``result`` on the right, a
    2-pixel line of full white between them."""
    import torch
    import torch.nn.functional as F

    top = 65535.0 if result.dtype == np.uint16 else 255.0
    height, width = result.shape[:2]
    x = torch.from_numpy(low.astype(np.float32)).permute(2, 0, 1)[None] / top
    y = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
    big = (y.clamp(0, 1) * top).round()[0].permute(1, 2, 0).numpy().astype(result.dtype)
    channels = min(big.shape[2], result.shape[2])
    out = np.array(result[..., :channels])
    half = width // 2
    out[:, :half] = big[:, :half, :channels]
    out[:, max(0, half - 1) : half + 1] = int(top)
    return out


def write_compare_video(
    av, plan: EncoderPlan, options: VideoOptions, source, result: Path, compare: Path, facts: StreamFacts
) -> None:
    """Decode the input (same range) and the result together and encode their split screen into ``compare``."""
    low_frames = source.frames(facts, plan.deep)
    out_src = VideoSource(result, VideoOptions())
    try:
        out_facts = out_src.first_facts()
    finally:
        out_src.close()
    out_src = VideoSource(result, VideoOptions())
    one_pass = VideoOptions(crf=options.crf, preset=options.preset, threads=options.threads)
    try:
        with atomic_path(compare) as tmp, av.open(str(tmp), "w", format=plan.container) as out:
            stream = open_video_stream(out, plan, one_pass)
            stream.time_base = out_src.stream.time_base
            stream.codec_context.time_base = out_src.stream.time_base
            for low, high in zip(low_frames, out_src.frames(out_facts, plan.deep)):
                picture = split_screen(low.rgb(), high.rgb())
                frame = _frame(av, picture, plan)
                frame.pts, frame.time_base = high.pts, out_src.stream.time_base
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    except av.FFmpegError as err:
        raise VideoError(f"{compare}: cannot write the comparison clip ({err})") from None
    finally:
        out_src.close()


def _frame(av, picture: np.ndarray, plan: EncoderPlan):
    from realesr.infer.video.colour import rgb_to_frame

    return rgb_to_frame(av, picture, plan.pix_fmt, plan.tags)


def compare_source(info_kind: str, path: Path, options: VideoOptions):
    return AnimationSource(path, options) if info_kind == "animation" else VideoSource(path, options)
