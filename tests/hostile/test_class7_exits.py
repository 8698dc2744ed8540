"""Class 7 of issue 18: a wrong exit code or a silent skip. `prepare` goes past a truncated image (reported, skipped,
the meta_info list written for the rest, exit 1); an empty folder or an output folder that is the input one is an
error that writes nothing; `upscale d -o d` never skips an input silently because a link made it look like an
earlier result."""

from __future__ import annotations

import os

from .harness import assert_unchanged, snapshot, tiny_image


def _hr(folder, n=3, size=40):
    folder.mkdir()
    return [tiny_image(folder / f"{i}.png", size=size, seed=i) for i in range(n)]


def test_prepare_skips_a_truncated_image_and_still_writes_meta_info(cli, tmp_path):
    images = _hr(tmp_path / "hr")
    data = images[1].read_bytes()
    images[1].write_bytes(data[: len(data) // 2])  # its header reads, its pixels do not
    (tmp_path / "hr" / "junk.png").write_bytes(b"not a png")
    before = snapshot(tmp_path / "hr")
    r = cli("prepare", tmp_path / "hr", tmp_path / "out", "--crop", "20", "--step", "20")
    r.check(1, "1.png", "junk.png", lines=2)
    meta = (tmp_path / "out" / "meta_info.txt").read_text().splitlines()
    # 40x40 in 20-px windows: 4 sub-images from each of the two good images, none from the broken ones.
    assert len(meta) == 8 and {line.split("_s")[0] for line in meta} == {"0", "2"}
    assert "of 2 images" in r.out
    assert_unchanged(tmp_path / "hr", before)


def test_prepare_of_nothing_or_into_its_input_is_an_error_that_writes_nothing(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    _hr(tmp_path / "hr", n=1)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    before = snapshot(tmp_path)
    cli("prepare", tmp_path / "empty", tmp_path / "out").check(2, "empty")
    cli("prepare", tmp_path / "hr", tmp_path / "hr").check(2, "hr", "HR folder")
    cli("prepare", tmp_path / "hr", f"{tmp_path}/hr/../hr/").check(2, "HR folder")
    cli("prepare", tmp_path / "hr" / "0.png", tmp_path / "out").check(2, "0.png", "not a folder")
    cli("prepare", tmp_path / "missing", tmp_path / "out").check(2, "missing")
    # Every image unreadable: an empty result is an error, and no empty meta_info.txt is written.
    cli("prepare", tmp_path / "broken", tmp_path / "out").check(1, "a.png", lines=2)
    assert_unchanged(tmp_path, before)


def test_an_input_linked_from_a_planned_output_is_not_skipped_silently(cli, tmp_path, weights):
    folder = tmp_path / "d"
    folder.mkdir()
    tiny_image(folder / "x.png")
    cli("upscale", tiny_image(tmp_path / "y.png", seed=3), "-m", weights, "-o", folder / "y.png").check(0)
    os.symlink("y.png", folder / "x_out.png")  # x's output place holds a link to a realesr result, y.png
    before = snapshot(tmp_path)
    # Replacing x_out.png would leave y.png alone, but y.png must be upscaled too: refused, not skipped.
    cli("upscale", folder, "-m", weights, "-o", folder).check(2, "y.png", "x_out.png")
    os.unlink(folder / "x_out.png")
    os.link(folder / "y.png", folder / "x_out.png")  # the same through a hard link
    before = snapshot(tmp_path)
    cli("upscale", folder, "-m", weights, "-o", folder).check(2, "x_out.png")
    assert_unchanged(tmp_path, before)


def test_an_earlier_result_is_still_skipped_and_said_so(cli, tmp_path, weights):
    folder = tmp_path / "d"
    folder.mkdir()
    tiny_image(folder / "x.png")
    cli("upscale", folder, "-m", weights, "-o", folder).check(0, lines=0)
    r = cli("upscale", folder, "-m", weights, "-o", folder).check(0, lines=0)
    assert "1 earlier result(s)" in r.out and sorted(os.listdir(folder)) == ["x.png", "x_out.png"]


def test_empty_names_are_refused_not_taken_for_the_current_folder(cli, tmp_path, weights, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_image(tmp_path / "here.png")
    before = snapshot(tmp_path)
    cli("upscale", "", "-m", weights, "-o", tmp_path / "out").check(1, "an empty name")
    cli("upscale", "here.png", "-m", weights, "-o", "").check(2, "-o")
    cli("degrade", "", "-o", tmp_path / "deg").check(1, "an empty name", lines=None)
    assert_unchanged(tmp_path, before, allow=["out", "deg"])
    assert not any((tmp_path / "out").glob("*.png")) and not any((tmp_path / "deg").rglob("*.png"))


def test_prepare_into_a_file_is_a_usage_error_naming_out_dir(cli, tmp_path):
    _hr(tmp_path / "hr", n=1)
    (tmp_path / "taken").write_text("a file")
    before = snapshot(tmp_path)
    cli("prepare", tmp_path / "hr", tmp_path / "taken").check(2, "taken", "OUT_DIR")
    assert_unchanged(tmp_path, before)


def test_an_output_that_is_a_folder_is_refused_before_the_work(cli, tmp_path, weights):
    """Found only when writing, after the whole evaluation or batch, before: now refused at the plan, exit 2."""
    data = tmp_path / "data"
    data.mkdir()
    tiny_image(data / "a.png", size=16)
    (tmp_path / "out" / "a_out.png").mkdir(parents=True)
    before = snapshot(tmp_path)
    cli("eval", "-m", "bicubic", "--data", data, "-o", data).check(2, "-o", "which is a folder")
    cli("upscale", data / "a.png", "-m", weights, "-o", tmp_path / "out").check(2, "a_out.png", "which is a folder")
    assert_unchanged(tmp_path, before)


def test_an_output_scale_that_shrinks_an_image_to_nothing_fails_that_file(cli, tmp_path, weights):
    small = tiny_image(tmp_path / "small.png", size=12)
    big = tiny_image(tmp_path / "big.png", size=40, seed=2)
    before = snapshot(tmp_path)
    # 12 px * 0.05 = 0.6 rounds to 1 px, 40 px * 0.05 = 2 px; 1e-9 leaves nothing of either
    cli("upscale", small, big, "-m", weights, "-s", "1e-9", "-o", tmp_path / "out").check(1, "small.png", lines=3)
    assert_unchanged(tmp_path, before)
    r = cli("upscale", small, big, "-m", weights, "-s", "0.02", "-o", tmp_path / "out")
    r.check(1, "small.png", lines=2)  # 12 * 0.02 = 0.24 px: refused; 40 * 0.02 = 0.8 px rounds to 1: written
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["big_out.png"]


def test_an_output_that_is_a_named_pipe_is_refused_before_work(cli, tmp_path, weights):
    os.mkfifo(tmp_path / "table.md")
    data = tmp_path / "data"
    data.mkdir()
    tiny_image(data / "a.png", size=16)
    before = snapshot(data)
    cli("eval", "-m", "bicubic", "--data", data, "-o", tmp_path / "table.md").check(2, "table.md", "named pipe")
    os.mkfifo(tmp_path / "a_out.png")
    cli("upscale", data / "a.png", "-m", weights, "-o", tmp_path / "a_out.png").check(2, "a_out.png", "named pipe")
    assert (tmp_path / "table.md").is_fifo() and (tmp_path / "a_out.png").is_fifo()
    assert_unchanged(data, before)


def test_an_empty_data_argument_is_not_the_current_folder(cli, tmp_path, monkeypatch):
    tiny_image(tmp_path / "here.png", size=16)  # what "" would have evaluated
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    cli("eval", "-m", "bicubic", "--data", "").check(
        2, "--data", "must not be empty", lines=None
    )  # argparse: usage too
    assert_unchanged(tmp_path, before)


def test_a_missing_file_of_a_list_is_named_with_its_list(cli, tmp_path, weights):
    tiny_image(tmp_path / "real.png")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'real.png'}\n{tmp_path / 'gone.png'}\n")
    r = cli("upscale", tmp_path / "list.txt", "-m", weights, "-o", tmp_path / "out")
    r.check(1, "gone.png", "list.txt", lines=2)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["real_out.png"]
