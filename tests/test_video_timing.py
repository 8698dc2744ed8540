"""Video timing details checked against PyAV's and Pillow's own readers: copied audio keeps its offset to the
video after --start, animated WebP keeps per-frame durations, GIF transparency survives a network whose alpha
is not exactly 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from PIL import Image  # noqa: E402
from test_video import make_clip, packets, tiny_upscaler, video_frames  # noqa: E402

from realesr.infer.video import VideoOptions, probe_video, upscale_video  # noqa: E402


def test_start_between_frames_keeps_audio_video_offset(tmp_path):
    clip = make_clip(tmp_path / "c.mp4")  # 24 fps: 0.3 s falls between frames 7 (0.2917) and 8 (0.3333)
    out = tmp_path / "o.mp4"
    upscale_video(tiny_upscaler(), clip, out, VideoOptions(start=0.3, end=1.0))
    src_v = [f[1] for f in video_frames(clip) if 0.3 <= f[1] < 1.0]
    src_a = [t for _, t in packets(clip, "audio") if 0.3 <= t < 1.0]
    res_v = [f[1] for f in video_frames(out)]
    res_a = [t for _, t in packets(out, "audio")]
    assert len(res_v) == len(src_v)
    # what the viewer hears against what they see: the same in the cut as in the source (within 1 ms rounding)
    assert res_a[0] - res_v[0] == pytest.approx(src_a[0] - src_v[0], abs=1e-3)


def _durations(path: Path) -> list[int]:
    with Image.open(path) as im:
        found = []
        for k in range(im.n_frames):
            im.seek(k)
            im.load()  # Pillow's WebP reader knows a frame's duration once it is loaded
            found.append(int(im.info["duration"]))
        return found


def _animation(path: Path, fmt: str, **save) -> Path:
    frames = []
    for i in range(3):
        a = np.zeros((16, 24, 4), np.uint8)
        a[..., 0], a[..., 1], a[..., 3] = i * 80, 100, 255
        a[:, :12, 3] = 0  # left half transparent
        frames.append(Image.fromarray(a, "RGBA"))
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=[100, 200, 300], loop=0, **save)
    return path


def test_animated_webp_keeps_each_frame_duration(tmp_path):
    src = _animation(tmp_path / "a.webp", "WEBP", lossless=True)
    assert _durations(src) == [100, 200, 300]
    info = probe_video(src)
    assert info is not None and info.duration == pytest.approx(0.6)
    upscale_video(tiny_upscaler(), src, tmp_path / "o.webp", VideoOptions())
    assert _durations(tmp_path / "o.webp") == [100, 200, 300]


def test_gif_transparency_kept_with_a_network_whose_alpha_is_not_zero(tmp_path):
    src = _animation(tmp_path / "a.gif", "GIF", disposal=2)
    up = tiny_upscaler()
    # the random tiny network maps alpha 0 to a small non-zero value: a real model's output is never exactly 0
    alpha = up.upscale_array(np.zeros((16, 24, 4), np.uint8))[..., 3]
    assert 0 < int(alpha.max()) < 128
    upscale_video(up, src, tmp_path / "o.gif", VideoOptions())
    with Image.open(tmp_path / "o.gif") as im:
        for k in range(im.n_frames):
            im.seek(k)
            a = np.asarray(im.convert("RGBA"))[..., 3]
            assert a[:, :20].max() == 0 and a[:, 28:].min() == 255
