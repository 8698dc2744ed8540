"""Class 2 of issue 18: multi-frame and odd images in a batch. Whatever Pillow raises on a broken file (IndexError
from a truncated GIF, TypeError from a cut TIFF, an APNG or WebP whose later frames are gone) fails that file with
one line naming it; the batch goes on and exits 1. The same for every command that reads images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from .harness import assert_unchanged, snapshot, tiny_image


def _frames(n=4, size=16):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def _animations(folder):
    """Good animations, and the same cut short at several points: name -> whether it is broken."""
    frames = _frames()
    frames[0].convert("P").save(
        folder / "anim.gif", save_all=True, append_images=[f.convert("P") for f in frames[1:]], duration=100
    )
    frames[0].save(folder / "anim.png", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    frames[0].save(folder / "pages.tif", save_all=True, append_images=frames[1:])
    broken = []
    for ext in ("gif", "png", "webp", "tif"):
        source = folder / ("pages.tif" if ext == "tif" else f"anim.{ext}")
        data = source.read_bytes()
        for percent in (50, 80, 95) if ext != "tif" else (66,):
            target = folder / f"cut{percent}_{ext}.{ext}"
            target.write_bytes(data[: len(data) * percent // 100])
            broken.append(target.name)
    return broken


@pytest.mark.slow
def test_broken_animations_fail_one_by_one_and_the_batch_goes_on(cli, tmp_path, weights):
    pytest.importorskip("av")  # animations are upscaled frame by frame with the video extra
    folder = tmp_path / "in"
    folder.mkdir()
    broken = _animations(folder)
    tiny_image(folder / "still.png")
    before = snapshot(folder)
    r = cli("upscale", folder, "-m", weights, "-o", tmp_path / "out")
    r.check(1, *broken, lines=None)  # (the animations' result lines are on stderr too)
    assert len([line for line in r.err.splitlines() if line.startswith("failed:")]) == len(broken)
    assert f"{len(broken)} failed" in r.out
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["anim_out.gif", "anim_out.png", "anim_out.webp", "pages_out.tif", "still_out.png"]
    assert_unchanged(folder, before)


def test_a_truncated_gif_fails_alone_in_degrade_and_prepare(cli, tmp_path):
    """(They read the first frame only: a GIF cut inside it.)"""
    folder = tmp_path / "in"
    folder.mkdir()
    frames = _frames(3, size=40)
    frames[0].convert("P").save(
        folder / "t.gif", save_all=True, append_images=[f.convert("P") for f in frames[1:]], duration=100
    )
    data = (folder / "t.gif").read_bytes()
    (folder / "t.gif").write_bytes(data[: len(data) * 20 // 100])
    tiny_image(folder / "ok.png", size=40)
    before = snapshot(folder)
    cli("degrade", folder, "-o", tmp_path / "deg", "--crop", "0").check(1, "t.gif", lines=None)
    assert any(p.name.startswith("ok") for p in (tmp_path / "deg").rglob("*.png"))
    cli("prepare", folder, tmp_path / "sub", "--crop", "20", "--step", "20").check(1, "t.gif", lines=1)
    assert (tmp_path / "sub" / "meta_info.txt").read_text().count("\n") == 4
    assert_unchanged(folder, before)
