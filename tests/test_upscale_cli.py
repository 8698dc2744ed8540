"""`realesr upscale`: batches with bad files, output naming, exit codes, atomicity, EXIF/ICC carried."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from realesr.archs import SRVGGNetCompact
from realesr.cli import main
from realesr.imagefiles import read_image
from realesr.weights import save_model

INPUTS = "real_lr/RealESRGAN_inputs"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny_x4.safetensors"
    save_model(SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4), path)
    return path


def small_copy(source, target, size=48):
    """A crop of a real file, same format and mode (keeps the CLI tests fast)."""
    with Image.open(source) as im:
        crop = im.crop((0, 0, min(size, im.width), min(size, im.height)))
        crop.save(target, **({"icc_profile": im.info["icc_profile"]} if "icc_profile" in im.info else {}))


def test_batch_with_bad_files_reports_each_and_writes_the_good(tmp_path, shared_data, tiny_model, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("0014.jpg", "00017_gray.png", "children-alpha.png"):
        small_copy(shared_data / INPUTS / name, folder / name)
    shutil.copy(shared_data / INPUTS / "tree_alpha_16bit.png", folder / "tree_alpha_16bit.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a picture\n")
    (folder / "trunc.png").write_bytes((shared_data / INPUTS / "00003.png").read_bytes()[:4000])
    out = tmp_path / "out"
    code = main(["upscale", str(folder), str(tmp_path / "missing.png"), "-m", str(tiny_model), "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("failed:")]
    assert len(errors) == 4, captured.err
    for fragment in (
        "empty.png: empty file",
        "notes.jpg: neither an image nor a video",
        "trunc.png: broken or truncated",
        "missing.png: no such file",
    ):
        assert sum(fragment in line for line in errors) == 1, fragment
    assert "Traceback" not in captured.err
    assert "4 of 8 image(s) upscaled" in captured.out and "4 failed" in captured.out
    expected = {
        "0014_out.jpg": ("RGB", 8),
        "00017_gray_out.png": ("L", 8),
        "children-alpha_out.png": ("RGBA", 8),
        "tree_alpha_16bit_out.png": ("RGBA", 16),
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for name, (mode, depth) in expected.items():
        image = read_image(out / name)
        source = read_image(folder / name.replace("_out", ""))
        assert (image.mode, image.bit_depth) == (mode, depth)
        assert (image.height, image.width) == (source.height * 4, source.width * 4)


def test_single_output_file_outscale_ext_and_compare(tmp_path, shared_data, tiny_model, capsys):
    source = tmp_path / "photo.jpg"
    small_copy(shared_data / INPUTS / "0030.jpg", source, size=40)
    target = tmp_path / "big.png"
    assert main(["upscale", str(source), "-m", str(tiny_model), "-o", str(target), "-s", "2.5"]) == 0
    assert read_image(target).array.shape == (100, 100, 3)
    out = tmp_path / "res"
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "*.jpg"),
                "-m",
                str(tiny_model),
                "-o",
                str(out),
                "--ext",
                "webp",
                "--suffix",
                "x",
                "--compare",
            ]
        )
        == 0
    )
    assert (out / "photo_x.webp").exists()
    with Image.open(out / "photo_compare.png") as compare:
        assert compare.width == 2 * 160 and compare.height > 160
    capsys.readouterr()


def test_usage_errors_exit_2_without_traceback(tmp_path, shared_data, tiny_model, capsys):
    source = tmp_path / "a.png"
    small_copy(shared_data / INPUTS / "00003.png", source, size=16)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        ["-o", str(blocker / "sub")],  # output folder that cannot be created
        [str(source), "-o", str(tmp_path / "x.png")],  # a file name for two inputs
        ["--tile", "-3"],
        ["--tile", "8"],
        ["-s", "0"],
        ["--precision", "fp8"],
        ["--device", "tpu"],
        ["--denoise-strength", "2"],
        ["-m", str(tmp_path / "no_such_model.pth")],
    ]
    for extra in cases:
        assert run_cli(["upscale", str(source), "-m", str(tiny_model), *extra]) == 2, extra
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err and "error" in captured.err, extra


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse's own usage errors
        return int(stop.code)


def test_input_is_never_overwritten(tmp_path, shared_data, tiny_model, capsys):
    source = tmp_path / "a.png"
    small_copy(shared_data / INPUTS / "00003.png", source, size=16)
    before = source.read_bytes()
    code = main(["upscale", str(source), "-m", str(tiny_model), "-o", str(tmp_path), "--suffix", ""])
    assert code == 2  # a collision found by the plan, before any work
    err = capsys.readouterr().err
    assert "would overwrite the input" in err and "--suffix" in err and "Traceback" not in err
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # and no temporary file left behind


def test_exif_orientation_and_icc_carried(tmp_path, tiny_model, capsys):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = tmp_path / "cam.jpg"
    image.save(source, exif=exif.tobytes(), icc_profile=icc, quality=95)
    assert main(["upscale", str(source), "-m", str(tiny_model), "-o", str(tmp_path / "o")]) == 0
    with Image.open(tmp_path / "o" / "cam_out.jpg") as out:
        assert out.size == (12 * 4, 20 * 4)  # upright: width and height swapped
        assert out.info["icc_profile"] == icc
        assert out.getexif().get(0x0112) == 1
    capsys.readouterr()
