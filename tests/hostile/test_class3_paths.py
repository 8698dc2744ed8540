"""Class 3 of issue 18: paths as they come. A name holding a newline, an escape sequence, a bidi override or bytes
that are not UTF-8 is shown escaped, in one place (realesr/cli/_text.py): every message stays one line and nothing
reaches the terminal that it would obey; a non-UTF-8 output path works to the end (the summary included); a name
too long for the file system once the suffix is added is refused before any work."""

from __future__ import annotations

import os

from .harness import assert_unchanged, snapshot, tiny_image

HOSTILE_NAMES = ["new\nline", "esc\x1b[31mred", "bidi\u202egnp.exe", "tab\tand\rreturn", "bell\x07"]


def _no_raw_controls(text: str) -> None:
    for ch in text:
        assert ch == "\n" or (ch.isprintable() and ch not in "\x1b\u202e"), f"raw {ch!r} in {text!r}"


def test_hostile_names_are_escaped_and_each_message_stays_one_line(cli, tmp_path, weights):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in HOSTILE_NAMES:
        (folder / f"{name}.png").write_bytes(b"not an image")  # each fails, with its name in the message
    tiny_image(folder / "good.png")
    before = snapshot(tmp_path)
    r = cli("upscale", folder, "-m", weights, "-o", tmp_path / "out")
    names = ["new\\nline.png", "esc\\x1b[31mred.png", "bidi\\u202egnp.exe.png", "tab\\tand\\rreturn.png", "bell\\x07"]
    r.check(1, *names, lines=len(HOSTILE_NAMES))
    _no_raw_controls(r.err)
    _no_raw_controls(r.out)
    assert os.listdir(tmp_path / "out") == ["good_out.png"]
    assert_unchanged(tmp_path, before, allow=["out"])


def test_a_hostile_name_in_a_usage_error_is_escaped_too(cli, tmp_path, weights):
    image = tiny_image(tmp_path / "in.png")
    r = cli("upscale", image, "-m", tmp_path / "no\nsuch\x1b[2J.safetensors", "-o", tmp_path / "out")
    r.check(2, "no\\nsuch\\x1b[2J.safetensors")
    _no_raw_controls(r.err)
    r = cli("upscale", image, "-m", weights, "-o", tmp_path / "out", "--suffix", "a\nb")
    r.check(2, "--suffix", "'a\\nb'")  # a newline in the name of every output: refused
    _no_raw_controls(r.err)


def test_a_non_utf8_output_path_is_written_and_reported(realesr, tmp_path, weights):
    """Through a real process: the encoder of stdout is the one that used to fail, after the file was written."""
    image = tiny_image(tmp_path / "in.png")
    out = os.fsencode(tmp_path) + b"/out\xff\xfe"
    r = realesr("upscale", image, "-m", weights, "-o", out, env={"PYTHONIOENCODING": "utf-8"})
    r.check(0, lines=0)
    assert "out\\xff\\xfe" in r.out
    assert os.listdir(out) == [b"in_out.png"]


def test_non_utf8_input_names_fail_or_work_without_a_traceback(realesr, tmp_path, weights):
    folder = os.fsencode(tmp_path) + b"/in"
    os.mkdir(folder)
    tiny_image(os.fsdecode(folder + b"/caf\xe9.png"))
    (tmp_path / "in" / "x.png").write_bytes(b"junk")
    os.rename(tmp_path / "in" / "x.png", folder + b"/bad\xff.png")
    r = realesr("upscale", folder, "-m", weights, "-o", tmp_path / "out", env={"LC_ALL": "C", "LANG": "C"})
    r.check(1, "bad\\xff.png")
    assert os.listdir(os.fsencode(tmp_path / "out")) == [b"caf\xe9_out.png"]


def test_names_too_long_after_the_suffix_are_refused_before_work(cli, tmp_path, weights):
    name = "a" * 240
    image = tiny_image(tmp_path / f"{name}.png")
    before = snapshot(tmp_path)
    cli("upscale", image, "-m", weights, "-o", tmp_path / "out").check(2, "too long", "-o")
    cli("upscale", tiny_image(tmp_path / "b.png"), "-m", weights, "-o", tmp_path / "o2", "--suffix", "s" * 250).check(
        2, "too long", "--suffix"
    )
    cli("upscale", tmp_path / "b.png", "-m", weights, "-o", tmp_path / f"{'c' * 300}.png").check(2, "too long")
    assert not (tmp_path / "out").exists() and not (tmp_path / "o2").exists()
    assert_unchanged(tmp_path, before, allow=["b.png"])


def test_a_closed_stderr_or_stdout_does_not_stop_the_work(tmp_path, weights):
    """`realesr ... 2>&-`: Python starts with sys.stderr None; the command works, and its exit code says how."""
    import subprocess
    import sys

    from .harness import _env

    image = tiny_image(tmp_path / "in.png")
    argv = [sys.executable, "-m", "realesr", "upscale", str(image), str(tmp_path / "missing.png")]
    argv += ["-m", str(weights), "-o", str(tmp_path / "out")]
    done = subprocess.run(
        argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=lambda: os.close(2), timeout=60
    )
    assert done.returncode == 1 and b"Traceback" not in done.stdout, done
    assert os.listdir(tmp_path / "out") == ["in_out.png"]


def test_an_output_folder_name_too_long_is_refused_before_work(cli, tmp_path, weights):
    image = tiny_image(tmp_path / "in.png", size=16)
    long = "c" * 300
    before = snapshot(tmp_path)
    cli("upscale", image, "-m", weights, "-o", tmp_path / long / "x").check(2, "too long", "-o")
    cli("degrade", image, "-o", tmp_path / long).check(2, "too long")
    cli("prepare", tmp_path, tmp_path / long).check(2, "too long", "OUT_DIR")
    assert_unchanged(tmp_path, before)
