"""The output plan of `realesr upscale` (realesr.infer.files): every output named and checked against every input
and against itself before any work; earlier results recognised; pre-work refusals; the per-file API."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realesr.archs import SRVGGNetCompact
from realesr.cli import main
from realesr.errors import RealesrError
from realesr.imagefiles import OutputCollision, made_by_realesr, read_header, read_image
from realesr.infer import Upscaler
from realesr.infer.files import OutputOptions, plan_upscale, upscale_file
from realesr.weights import save_model

pytestmark = pytest.mark.usefixtures("single_torch_thread")
PHOTO = "real_lr/RealESRGAN_inputs/0014.jpg"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny_x4.safetensors"
    save_model(SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4), path)
    return path


@pytest.fixture
def photo(shared_data):
    """A 24x24 crop of a real photo (RGB)."""
    with Image.open(shared_data / PHOTO) as im:
        return np.asarray(im.convert("RGB").crop((40, 40, 64, 64))).copy()


def upscale(*args: str) -> int:
    return main(["upscale", *args, "--no-progress"])


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_unrelated_planned_output_in_the_input_folder_is_neither_overwritten_nor_upscaled(
    tmp_path, photo, tiny_model, capsys
):
    folder = tmp_path / "d"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    Image.fromarray(photo[::-1]).save(folder / "a_out.png")  # the user's own file, not a realesr result
    before = (folder / "a_out.png").read_bytes()
    code = upscale(str(folder), "-o", str(folder), "-m", str(tiny_model))
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "a.png" in lines[0] and "a_out.png" in lines[0] and "--suffix" in lines[0]
    assert (folder / "a_out.png").read_bytes() == before
    assert listing(folder) == ["a.png", "a_out.png"]


def test_rerun_into_the_input_folder_replaces_its_earlier_results_and_skips_them(tmp_path, photo, tiny_model, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    assert upscale(str(folder), "-o", str(folder), "-m", str(tiny_model), "--compare") == 0
    assert listing(folder) == ["a.png", "a_compare.png", "a_out.png"]
    assert made_by_realesr(folder / "a_out.png") and made_by_realesr(folder / "a_compare.png")
    assert not made_by_realesr(folder / "a.png")
    capsys.readouterr()
    assert upscale(str(folder), "-o", str(folder), "-m", str(tiny_model), "--compare") == 0
    out = capsys.readouterr().out
    assert "1 of 1 image(s) upscaled" in out and "2 earlier result(s)" in out
    assert listing(folder) == ["a.png", "a_compare.png", "a_out.png"]  # no a_out_out.png, no a_compare_out.png


@pytest.mark.parametrize(
    ("names", "extra", "option"),
    [
        (("a.png", "a.jpg"), ["--ext", "png"], "--ext"),  # two inputs, one output name
        (("a.png",), ["--suffix", "compare", "--compare"], "--suffix"),  # result and sheet at one path
    ],
)
def test_two_outputs_at_one_path_are_refused_before_any_work(tmp_path, photo, tiny_model, capsys, names, extra, option):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in names:
        Image.fromarray(photo).save(folder / name)
    out = tmp_path / "out"
    code = upscale(*(str(folder / n) for n in names), "-o", str(out), "-m", str(tiny_model), *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "would both be written to" in err[0] and option in err[0]
    assert not out.exists()  # nothing written, not even the folder


def test_an_input_named_like_the_comparison_sheet_is_protected(tmp_path, photo, tiny_model, capsys):
    Image.fromarray(photo).save(tmp_path / "a.png")
    Image.fromarray(photo).save(tmp_path / "a_compare.png")
    before = (tmp_path / "a_compare.png").read_bytes()
    assert (
        upscale(
            str(tmp_path / "a.png"),
            str(tmp_path / "a_compare.png"),
            "-o",
            str(tmp_path),
            "-m",
            str(tiny_model),
            "--compare",
        )
        == 2
    )
    assert "a_compare.png" in capsys.readouterr().err
    assert (tmp_path / "a_compare.png").read_bytes() == before
    assert listing(tmp_path) == ["a.png", "a_compare.png"]


def test_hard_links_symlinks_and_case_only_clashes_are_collisions(tmp_path, photo):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo).save(src / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    os.link(src / "a.png", out / "a_out.png")  # the planned output is the input under another name
    with pytest.raises(OutputCollision, match="same file"):
        plan_upscale([src / "a.png"], out)
    (tmp_path / "link").symlink_to(src, target_is_directory=True)  # the output folder is the input folder
    with pytest.raises(OutputCollision, match="would overwrite the input"):
        plan_upscale([src / "a.png"], tmp_path / "link", OutputOptions(suffix=""))
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(photo).save(other / "A.png")
    with pytest.raises(OutputCollision, match="would both be written") as caught:
        plan_upscale([src / "a.png", other / "A.png"], tmp_path / "fresh")
    assert "output" in caught.value.params and "suffix" in caught.value.params
    assert not (tmp_path / "fresh").exists()


def _png_header_only(path, width, height):
    """A PNG whose header says width x height (its pixels are never read by the plan)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_huge_outputs_are_refused_from_the_header_and_the_batch_goes_on(tmp_path, photo, tiny_model, capsys):
    _png_header_only(tmp_path / "huge.png", 20000, 20000)
    Image.fromarray(photo).save(tmp_path / "small.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail here
        assert (read_header(tmp_path / "huge.png").width, read_header(tmp_path / "huge.png").height) == (20000, 20000)
    out = tmp_path / "out"
    code = upscale(str(tmp_path / "huge.png"), str(tmp_path / "small.png"), "-o", str(out), "-m", str(tiny_model))
    captured = capsys.readouterr()
    assert code == 1
    failed = [line for line in captured.err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "huge.png" in failed[0] and "80000 x 80000 px" in failed[0]
    assert "-s/--outscale" in failed[0] and "Traceback" not in captured.err and "Warning" not in captured.err
    assert listing(out) == ["small_out.png"]


@pytest.mark.parametrize("outscale", ["1e6", "1e12", "1e15"])  # 1e300: a usage error (over 2**53, tests/hostile)
def test_absurd_outscale_fails_each_file_with_the_size_it_would_need(tmp_path, photo, tiny_model, capsys, outscale):
    Image.fromarray(photo).save(tmp_path / "a.png")
    Image.fromarray(photo).save(tmp_path / "b.png")
    code = upscale(
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
        "-o",
        str(tmp_path / "out"),
        "-m",
        str(tiny_model),
        "-s",
        outscale,
    )
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    failed = [line for line in captured.err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 2 and all("the output would be" in line for line in failed), captured.err
    assert "0 of 2 image(s) upscaled" in captured.out


def test_webp_side_limit_is_checked_before_work(tmp_path, tiny_model, capsys):
    _png_header_only(tmp_path / "wide.png", 5000, 10)  # x4: 20000 px wide, more than WebP holds
    code = upscale(str(tmp_path / "wide.png"), "-o", str(tmp_path / "out"), "-m", str(tiny_model), "--ext", "webp")
    err = capsys.readouterr().err
    assert code == 1 and "WEBP can hold" in err and "--ext" in err


def test_nan_weights_fail_the_file_instead_of_writing_black(tmp_path, photo, capsys):
    net = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)
    with torch.no_grad():
        net.body[0].weight[0, 0, 0, 0] = float("nan")
    model = tmp_path / "nan.safetensors"
    save_model(net, model)
    Image.fromarray(photo).save(tmp_path / "a.png")
    code = upscale(str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "-m", str(model))
    err = capsys.readouterr().err
    # (Issue 18: refused when the weights are read, before any work: a damaged file, exit 2.)
    assert code == 2 and "nan.safetensors" in err and "NaN" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or listing(tmp_path / "out") == []


def test_multi_frame_input_is_upscaled_frame_by_frame(tmp_path, photo, tiny_model, capsys):
    """(Issue 10: an animation is no longer cut to its first frame; it comes out animated, every frame upscaled.)"""
    pytest.importorskip("av")
    frames = [Image.fromarray(photo), Image.fromarray(photo[::-1])]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    assert upscale(str(tmp_path / "anim.gif"), "-o", str(tmp_path / "out"), "-m", str(tiny_model)) == 0
    with Image.open(tmp_path / "out" / "anim_out.gif") as out:
        assert out.n_frames == 2


def test_upscale_file_writes_the_same_bytes_as_the_cli(tmp_path, photo, tiny_model, capsys):
    Image.fromarray(photo).save(tmp_path / "a.png")
    assert upscale(str(tmp_path / "a.png"), "-o", str(tmp_path / "cli"), "-m", str(tiny_model), "--compare") == 0
    upscaler = Upscaler(str(tiny_model), device="cpu")
    progress = []
    result = upscale_file(
        upscaler,
        tmp_path / "a.png",
        tmp_path / "api",
        OutputOptions(compare=True),
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert result.output == tmp_path / "api" / "a_out.png" and result.size == (96, 96)
    assert (tmp_path / "api" / "a_out.png").read_bytes() == (tmp_path / "cli" / "a_out.png").read_bytes()
    assert (tmp_path / "api" / "a_compare.png").read_bytes() == (tmp_path / "cli" / "a_compare.png").read_bytes()
    assert progress and progress[-1][0] == progress[-1][1]
    # The pixels are the Upscaler's, and the input is protected from the API as from the CLI.
    assert np.array_equal(read_image(result.output).array, upscaler(photo))
    with pytest.raises(OutputCollision):
        upscale_file(upscaler, tmp_path / "a.png", tmp_path, OutputOptions(suffix=""))
    with pytest.raises(RealesrError, match="no such file"):
        upscale_file(upscaler, tmp_path / "missing.png", tmp_path / "api")


def test_unwritable_output_folder_is_refused_before_work(tmp_path, photo, tiny_model, capsys):
    """A folder the user may not write into is refused before any work, naming it. Root may write anywhere (its
    CAP_DAC_OVERRIDE), so as root (CI) the command runs in a child process without that capability, where the
    folder's permission bits hold for root too."""
    Image.fromarray(photo).save(tmp_path / "a.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    argv = ["upscale", str(tmp_path / "a.png"), "-o", str(locked / "sub"), "-m", str(tiny_model), "--no-progress"]
    try:
        if os.geteuid() != 0:
            assert main(argv) == 2
            err = capsys.readouterr().err
        else:
            done = subprocess.run(
                [sys.executable, "-m", "realesr", *argv],
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
                preexec_fn=_without_dac_override,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 2, done.stderr
            err = done.stderr
        assert "not writable" in err and str(locked) in err and "Traceback" not in err
        assert not (locked / "sub").exists()
    finally:
        locked.chmod(0o700)


def _without_dac_override() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2) from the bounding set, so
    that root's programs after exec lack them (their permitted set is the bounding set; the inheritable one is
    cleared too)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for cap in (1, 2):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    if libc.capget(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[2] = data[5] = 0  # inheritable (both 32-bit halves)
    data[0] &= ~0b110  # effective: neither capability from here on either
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def test_txt_lists_globs_and_symlink_loops_as_inputs(tmp_path, photo, tiny_model, capsys):
    folder = tmp_path / "pics"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    Image.fromarray(photo).save(folder / ".hidden.png")  # hidden files (our temporaries among them) are skipped
    (folder / "loop").symlink_to(folder / "loop")  # a symlink loop is not an image and does not hang the listing
    (tmp_path / "list.txt").write_text("# comment\npics/a.png\n\npics/missing.png\n")
    code = upscale(str(tmp_path / "list.txt"), str(folder), "-o", str(tmp_path / "out"), "-m", str(tiny_model))
    captured = capsys.readouterr()
    assert code == 1 and "missing.png: no such file" in captured.err
    assert "1 of 2 image(s) upscaled" in captured.out  # a.png named twice (list and folder) is upscaled once
    assert listing(tmp_path / "out") == ["a_out.png"]


def test_cache_dir_of_an_unknown_user_is_one_line(monkeypatch, capsys, tmp_path, photo):
    monkeypatch.setenv("REALESR_CACHE_DIR", "~no-such-user-here/cache")
    Image.fromarray(photo).save(tmp_path / "a.png")
    assert upscale(str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "-m", "RealESRGAN_x4plus") == 2
    err = capsys.readouterr().err
    assert "REALESR_CACHE_DIR" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["-o", "{tmp}/out.gif"], 2, "cannot write GIF"),  # not silently a folder named out.gif
        (["-o", "{tmp}/out", "--suffix", "x" * 300], 2, "too long"),  # refused before the work, not after
        (["-o", "{tmp}/a.png/sub"], 2, "is a file"),
    ],
)
def test_careless_outputs_are_refused_before_work(tmp_path, photo, tiny_model, capsys, args, code, fragment):
    Image.fromarray(photo).save(tmp_path / "a.png")
    before = listing(tmp_path)
    assert upscale(str(tmp_path / "a.png"), "-m", str(tiny_model), *(a.format(tmp=tmp_path) for a in args)) == code
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert listing(tmp_path) == before


def test_a_named_pipe_input_fails_at_once(tmp_path, tiny_model, capsys):
    os.mkfifo(tmp_path / "pipe.png")
    assert upscale(str(tmp_path / "pipe.png"), "-o", str(tmp_path / "out"), "-m", str(tiny_model)) == 1
    assert "not a regular file" in capsys.readouterr().err


def test_degrade_into_its_input_folder_skips_its_earlier_outputs_and_protects_the_users(tmp_path, photo, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    args = ["degrade", str(folder), "-o", str(folder), "--crop", "0", "--scale", "2"]
    assert main(args) == 0
    first = {n: (folder / n).read_bytes() for n in listing(folder)}
    assert sorted(first) == ["a.png", "a_0_gt.png", "a_0_lr.png"]
    capsys.readouterr()
    assert main(args) == 0  # the same folder again: a_0_lr.png is not degraded into a_0_lr_0_lr.png
    assert "2 earlier output(s)" in capsys.readouterr().out
    assert {n: (folder / n).read_bytes() for n in listing(folder)} == first  # same seed, same bytes
    Image.fromarray(photo[::-1]).save(folder / "a_0_lr.png")  # now a user's file at a planned output
    user = (folder / "a_0_lr.png").read_bytes()
    assert main(args) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert (folder / "a_0_lr.png").read_bytes() == user


def test_too_little_free_disk_is_refused_before_work(tmp_path, photo, tiny_model, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    Image.fromarray(photo).save(tmp_path / "a.png")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 100, 100))
    assert upscale(str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "-m", str(tiny_model)) == 2
    err = capsys.readouterr().err
    assert "free" in err and "-o" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_pillow_warnings_do_not_leak(tmp_path, photo, monkeypatch):
    Image.fromarray(photo[:10, :15]).save(tmp_path / "a.png")  # 150 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 100 < 150 < 200: Pillow warns of a decompression bomb
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(Image.DecompressionBombWarning):  # (the warning is real: Pillow alone raises it here)
            Image.open(tmp_path / "a.png").load()
        assert read_image(tmp_path / "a.png").array.shape == (10, 15, 3)
        assert read_header(tmp_path / "a.png").width == 15


def test_tilde_of_an_unknown_user_is_a_message_not_a_traceback(tmp_path, photo, tiny_model, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(photo).save(tmp_path / "a.png")
    assert upscale("~no-such-user-x/a.png", "-o", "out", "-m", str(tiny_model)) == 1
    assert "no such file" in capsys.readouterr().err
    assert upscale("a.png", "-o", "~no-such-user-x/out", "-m", str(tiny_model)) == 2
    assert "no user 'no-such-user-x'" in capsys.readouterr().err
    assert main(["eval", "-m", "bicubic", "--data", "~no-such-user-x/set"]) == 2
    assert main(["degrade", "~no-such-user-x/a.png", "-o", "out"]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert listing(tmp_path) == ["a.png"]  # no folder literally named "~no-such-user-x", no empty out/


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".tif"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_the_mark_of_realesr_survives_every_format_and_keeps_the_source_exif(tmp_path, photo, ext, dtype):
    from realesr.imagefiles import write_image

    if dtype == np.uint16 and ext in (".jpg", ".webp"):
        pytest.skip("8-bit formats")
    array = photo.astype(dtype) * (257 if dtype == np.uint16 else 1)
    exif = Image.Exif()
    exif[0x010F] = "realesr-test-camera"  # Make
    plain, marked = tmp_path / f"plain{ext}", tmp_path / f"marked{ext}"
    write_image(plain, array, exif=exif.tobytes())
    write_image(marked, array, exif=exif.tobytes(), mark=True)
    assert not made_by_realesr(plain) and made_by_realesr(marked)
    np.testing.assert_array_equal(read_image(marked).array, read_image(plain).array)  # the mark is metadata only
    if ext != ".tif":  # (TIFF carries no EXIF block, see write_image)
        with Image.open(marked) as im:
            assert im.getexif().get(0x010F) == "realesr-test-camera"


@pytest.mark.parametrize("option", ["-o", "--per-image", "--figure"])
def test_eval_never_writes_over_a_data_image(tmp_path, photo, capsys, option):
    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(photo).save(data / "a.png")
    before = (data / "a.png").read_bytes()
    assert main(["eval", "-m", "bicubic", "--data", str(data), option, str(data / "A.PNG"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "would overwrite the input" in err and option in err
    assert (data / "a.png").read_bytes() == before and listing(data) == ["a.png"]


def test_eval_outputs_clashing_with_each_other_are_refused_before_any_model_runs(tmp_path, photo, capsys):
    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(photo).save(data / "a.png")
    Image.fromarray(photo).save(data / "a.jpg")  # both would be saved as set/bicubic/a.png
    assert main(["eval", "-m", "bicubic", "--data", str(data), "--save-images", str(tmp_path / "sv"), "-q"]) == 2
    assert "--save-images" in capsys.readouterr().err and not (tmp_path / "sv").exists()
    out = str(tmp_path / "t.png")
    assert main(["eval", "-m", "bicubic", "--data", str(data), "-o", out, "--figure", out, "-q"]) == 2
    assert "would both be written" in capsys.readouterr().err
