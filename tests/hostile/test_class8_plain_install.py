"""Class 8 of issue 18: a plain install (`pip install realesr`, no extras). What a file is (image, video, neither)
is decided from its content before any extra is needed: a text file is named and called neither an image nor a
video, a video is named with the extra it needs (exit 2), an animation is still upscaled (its first frame, said
so). Every feature that needs an extra names it, exit 2.

CI runs this file in a second virtual environment without extras (.ci/run); here, with every extra installed,
tests/hostile/no_extras/sitecustomize.py makes the extras unimportable in the subprocess, as they are there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .harness import SRC, _env, assert_unchanged, snapshot, tiny_image

PLAIN = {"PYTHONPATH": f"{Path(__file__).parent / 'no_extras'}{os.pathsep}{SRC}"}
# The first bytes of an MP4 (an ISO BMFF "ftyp" box): what the sniffing step reads, without PyAV.
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64


def test_the_extras_really_are_missing():
    """The premise of this file: in its subprocesses no extra can be imported (a plain install)."""
    code = "import importlib.util as u; print([m for m in ('av', 'uvicorn', 'ray', 'onnxruntime') if u.find_spec(m)])"
    out = subprocess.run([sys.executable, "-c", code], env=_env(PLAIN), capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out


def test_content_decides_image_video_or_neither_before_any_extra(realesr, tmp_path, weights):
    folder = tmp_path / "in"
    folder.mkdir()
    tiny_image(folder / "photo.png")
    (folder / "notes.png").write_text("a text file with an image's name\n")
    (folder / "clip.mp4").write_text("not a video either\n")
    (folder / "data.bin.jpg").write_bytes(os.urandom(256))
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).convert("P") for _ in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    before = snapshot(tmp_path)
    r = realesr("upscale", folder, "-m", weights, "-o", tmp_path / "out", env=PLAIN)
    r.check(1, "notes.png", "clip.mp4", "data.bin.jpg", lines=5)  # three failures, two notes on the animation
    assert r.err.count("neither an image nor a video") == 3
    assert sorted(os.listdir(tmp_path / "out")) == ["anim_out.png", "photo_out.png"]
    assert "only the first" in r.err and "realesr[video]" in r.err
    assert_unchanged(tmp_path, before, allow=["out"])


def test_a_video_names_the_extra_it_needs_exit_2(realesr, tmp_path, weights):
    (tmp_path / "clip.mov").write_bytes(MP4_HEAD)
    image = tiny_image(tmp_path / "photo.png")
    before = snapshot(tmp_path)
    r = realesr("upscale", image, tmp_path / "clip.mov", "-m", weights, "-o", tmp_path / "out", env=PLAIN)
    r.check(2, "clip.mov", "pip install 'realesr[video]'")
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["serve", "--port", "0"], "web"),
        (["upscale", "{image}", "-m", "{weights}", "-o", "{tmp}/out", "--ray"], "ray"),
        (["convert", "{weights}", "{tmp}/model.onnx"], "onnx"),
    ],
)
def test_every_feature_that_needs_an_extra_names_it_exit_2(realesr, tmp_path, weights, argv, extra):
    image = tiny_image(tmp_path / "photo.png")
    before = snapshot(tmp_path)
    args = [a.format(image=image, weights=weights, tmp=tmp_path) for a in argv]
    realesr(*args, env=PLAIN, timeout=60).check(2, f"pip install 'realesr[{extra}]'")
    assert_unchanged(tmp_path, before)
