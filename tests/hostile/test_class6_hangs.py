"""Class 6 of issue 18, outside video: inputs that never end. A `**` glob through symlink loops, a FIFO or a link to
/dev/zero given as a .txt list or as an image or weights, a list too large to be one: each is refused or walked
once, one line naming it, and the command ends. Run in a process group with a deadline (a hang fails the test)."""

from __future__ import annotations

import os

import pytest

from .harness import assert_unchanged, snapshot, tiny_image


def test_a_recursive_glob_through_symlink_loops_ends_and_lists_each_file_once(realesr, tmp_path, weights):
    tree = tmp_path / "in"
    (tree / "a" / "b").mkdir(parents=True)
    tiny_image(tree / "top.png")
    tiny_image(tree / "a" / "b" / "deep.png", seed=1)
    os.symlink("..", tree / "a" / "b" / "up")  # a loop: a/b/up/b/up/...
    os.symlink("../..", tree / "a" / "b" / "up2")  # another way back to the top
    os.symlink(".", tree / "a" / "self")
    before = snapshot(tmp_path)
    r = realesr("upscale", f"{tree}/**/*.png", "-m", weights, "-o", tmp_path / "out", timeout=60)
    r.check(0, lines=0)
    assert sorted(os.listdir(tmp_path / "out")) == ["deep_out.png", "top_out.png"]
    assert "2 of 2 image(s)" in r.out
    assert_unchanged(tmp_path, before, allow=["out"])


@pytest.mark.slow
def test_never_ending_lists_and_inputs_are_refused_without_reading_them(realesr, tmp_path, weights):
    os.mkfifo(tmp_path / "fifo.txt")
    os.mkfifo(tmp_path / "fifo.png")
    os.symlink("/dev/zero", tmp_path / "zero.txt")
    os.symlink("/dev/zero", tmp_path / "zero.png")
    os.symlink("/dev/urandom", tmp_path / "random.jpg")
    with open(tmp_path / "huge.txt", "wb") as f:  # sparse: a list of 65 MiB costs no disk
        f.truncate(65 * 2**20)
    good = tiny_image(tmp_path / "good.png")
    before = snapshot(tmp_path)
    names = ["fifo.txt", "fifo.png", "zero.txt", "zero.png", "random.jpg", "huge.txt"]
    r = realesr("upscale", *(tmp_path / n for n in names), good, "-m", weights, "-o", tmp_path / "out", timeout=60)
    r.check(1, *names, lines=len(names))
    assert "not a regular file" in r.err and "larger than 64 MiB" in r.err
    assert os.listdir(tmp_path / "out") == ["good_out.png"]  # the rest is done
    assert_unchanged(tmp_path, before, allow=["out"])


@pytest.mark.slow
def test_a_fifo_or_a_device_as_weights_or_config_is_refused(realesr, tmp_path):
    os.mkfifo(tmp_path / "model.safetensors")
    os.mkfifo(tmp_path / "config.yml")
    image = tiny_image(tmp_path / "in.png")
    before = snapshot(tmp_path)
    realesr("upscale", image, "-m", tmp_path / "model.safetensors", "-o", tmp_path / "out", timeout=30).check(
        2, "model.safetensors", "not a regular file"
    )
    realesr("train", tmp_path / "config.yml", timeout=30).check(2, "config.yml")
    assert_unchanged(tmp_path, before)


def test_a_list_holding_a_nul_byte_is_refused_by_every_reader(cli, tmp_path, weights):
    tiny_image(tmp_path / "a.png")
    (tmp_path / "nul.txt").write_bytes(b"a.png\x00b.png\n")
    before = snapshot(tmp_path)
    cli("upscale", tmp_path / "nul.txt", "-m", weights, "-o", tmp_path / "out").check(1, "nul.txt", "NUL")
    cli("eval", "-m", "bicubic", "--data", tmp_path / "nul.txt").check(2, "nul.txt", "NUL")
    cli("degrade", tmp_path / "nul.txt", "-o", tmp_path / "deg").check(1, "nul.txt", "NUL", lines=None)
    assert_unchanged(tmp_path, before, allow=["out", "deg"])
