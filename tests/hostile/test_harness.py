"""The harness itself: a clean failure passes its checks, and a hang is killed and reported, not waited for."""

from __future__ import annotations

import pytest

from .harness import assert_unchanged, snapshot, tiny_image


def test_a_missing_input_is_one_line_naming_it_exit_1(realesr, tmp_path, weights):
    tiny_image(tmp_path / "a.png")
    tree = snapshot(tmp_path)
    r = realesr("upscale", tmp_path / "nope.png", "-m", weights, "-o", tmp_path / "out")
    r.check(1, "nope.png")
    assert_unchanged(tmp_path, tree)


def test_a_hang_is_killed_and_fails_the_test(realesr, tmp_path):
    image = tiny_image(tmp_path / "a.png")
    realesr("--version", timeout=30).check(0)
    proc = realesr.start("upscale", image, "-o", tmp_path / "out")
    with pytest.raises(pytest.fail.Exception, match="hang"):
        proc.finish(0.01)  # whatever the command does, it cannot be done within 10 ms
    assert proc.proc.poll() is not None  # killed, not left behind
