"""Animations as inputs (issue 19 item 4), read back with Pillow itself: GIF, APNG and WebP come out as the same
format frame by frame with their durations, loop count and transparency; with a codec or a video output name
they become a video whose frames carry the animation's own times. Plus the summary's words and the ETA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from PIL import Image  # noqa: E402
from test_video import Nearest, video_frames  # noqa: E402

from realesr.cli import main  # noqa: E402
from realesr.cli._video import FrameRate, VideoCounts  # noqa: E402
from realesr.infer.upscaler import Upscaler  # noqa: E402
from realesr.infer.video import VideoOptions, probe_video, upscale_video  # noqa: E402

DURATIONS = [80, 120, 200]


def animation(path: Path, fmt: str, **save) -> Path:
    frames = []
    for i in range(3):
        a = np.zeros((12, 16, 4), np.uint8)
        a[..., 0], a[..., 1], a[..., 2], a[..., 3] = 60 + i * 60, 200 - i * 50, 90, 255
        a[:, :6, 3] = 0  # a transparent band on the left
        frames.append(Image.fromarray(a, "RGBA"))
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=3, **save)
    return path


def read_back(path: Path) -> tuple[str, list[int], int, list[np.ndarray]]:
    with Image.open(path) as im:
        fmt, loop, durations, pictures = im.format, int(im.info.get("loop", 0)), [], []
        for k in range(im.n_frames):
            im.seek(k)
            im.load()
            durations.append(int(im.info["duration"]))
            pictures.append(np.asarray(im.convert("RGBA")))
    return fmt, durations, loop, pictures


@pytest.mark.parametrize(("ext", "fmt", "save"), [(".png", "PNG", {}), (".webp", "WEBP", {"lossless": True})])
def test_apng_and_webp_stay_animations_with_times_loop_and_alpha(tmp_path, ext, fmt, save):
    src = animation(tmp_path / f"a{ext}", fmt, **save)
    info = probe_video(src)
    assert info is not None and info.kind == "animation" and info.frames == 3
    up = Upscaler(Nearest(), device="cpu", tile=0)
    upscale_video(up, src, tmp_path / f"o{ext}", VideoOptions())
    got_fmt, durations, loop, pictures = read_back(tmp_path / f"o{ext}")
    _fmt, _d, _l, originals = read_back(src)
    assert (got_fmt, durations, loop) == (fmt, DURATIONS, 3)
    for pic, orig in zip(pictures, originals):
        assert pic.shape == (24, 32, 4)
        assert pic[:, :10, 3].max() == 0 and pic[:, 14:, 3].min() == 255  # transparency kept
        want = orig[:, 8:].repeat(2, 0).repeat(2, 1)[..., :3]
        assert np.abs(pic[:, 16:, :3].astype(int) - want.astype(int)).max() <= 3  # WebP at quality 95


def test_gif_becomes_a_video_when_a_codec_is_chosen(tmp_path, capsys):
    src = animation(tmp_path / "a.gif", "GIF", disposal=2)
    model = tmp_path / "tiny.safetensors"
    import torch

    from realesr.archs import SRVGGNetCompact
    from realesr.weights import save_model

    torch.manual_seed(0)
    save_model(SRVGGNetCompact(3, 3, num_feat=4, num_conv=2, upscale=2), model)
    assert main(["upscale", str(src), "-o", str(tmp_path / "out"), "-m", str(model), "--codec", "h264"]) == 0
    out = tmp_path / "out" / "a_out.mp4"
    frames = video_frames(out)
    assert [round(f[1], 3) for f in frames] == [0.0, 0.08, 0.2]  # each frame at its own time
    assert (frames[0][3], frames[0][4]) == (32, 24)
    assert "1 video, 3 frames upscaled" in capsys.readouterr().out


def test_summary_words_and_a_moving_average_eta():
    counts = VideoCounts()
    assert counts.phrase(0, 0, 1) == "0 of 1 videos, 0 frames"

    class R:
        frames = 240

    counts.add(R())
    assert counts.phrase(0, 0, 1) == "1 video, 240 frames"
    assert counts.phrase(2, 3, 1) == "2 of 3 image(s) and 1 video, 240 frames"
    meter = FrameRate(window=10)
    meter.mark(0, now=0.0)
    meter.mark(1, now=60.0)  # one slow first frame (warm-up) ...
    for k in range(2, 40):
        meter.mark(k, now=60.0 + (k - 1) * 0.5)  # ... then 2 frames/s
    assert meter.rate() == pytest.approx(2.0)  # the window forgot the slow start
    assert meter.eta(39, 99) == "0:00:30"
