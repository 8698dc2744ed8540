"""`realesr degrade` on real files: outputs, reproducibility, bad inputs."""

import numpy as np
import pytest
from PIL import Image

from realesr.cli import main

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_degrade_command_writes_pairs_and_sheet_reproducibly(shared_data, tmp_path, capsys):
    photo = shared_data / "train" / "photos" / "011.png"
    gray = shared_data / "real_lr" / "RealESRGAN_inputs" / "wolf_gray.jpg"  # 236 px: padded to the 400 window
    out1, out2 = tmp_path / "a", tmp_path / "b"
    args = ["degrade", str(photo), str(gray), "--per-image", "2", "--crop", "64", "--seed", "5", "--sheet"]
    assert main(args + ["-o", str(out1)]) == 0
    assert main(args + ["-o", str(out2)]) == 0
    for name in ("011", "wolf_gray"):
        for k in range(2):
            lr = np.asarray(Image.open(out1 / f"{name}_{k}_lr.png"))
            gt = np.asarray(Image.open(out1 / f"{name}_{k}_gt.png"))
            assert lr.shape == (16, 16, 3) and gt.shape == (64, 64, 3)
            assert np.array_equal(lr, np.asarray(Image.open(out2 / f"{name}_{k}_lr.png")))
        sheet = Image.open(out1 / f"{name}_sheet.png")
        assert sheet.width >= 3 * 64 and sheet.height > 64
    # the GT crop is a piece of the photo, unsharpened
    src = np.asarray(Image.open(photo).convert("RGB"))
    gt = np.asarray(Image.open(out1 / "011_0_gt.png"))
    hits = np.argwhere((src[:-63, :-63] == gt[0, 0]).all(axis=2))
    assert any(np.array_equal(src[y : y + 64, x : x + 64], gt) for y, x in hits)
    # the two versions differ (independent draws)
    first, second = (np.asarray(Image.open(out1 / f"011_{k}_lr.png")) for k in (0, 1))
    assert not np.array_equal(first, second)


@pytest.mark.slow
def test_degrade_command_bad_inputs_are_one_line_errors_and_others_go_on(shared_data, tmp_path, capsys):
    photo = shared_data / "train" / "photos" / "020.png"
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    rc = main(
        [
            "degrade",
            str(tmp_path / "missing.png"),
            str(not_image),
            str(photo),
            "--crop",
            "32",
            "--scale",
            "2",
            "-o",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("realesr degrade: error:") for line in err)
    assert "missing.png" in err[0] and "notes.png" in err[1]
    assert Image.open(tmp_path / "out" / "020_0_lr.png").size == (16, 16)
    # 16-bit greyscale input
    grey16 = tmp_path / "grey16.png"
    a = np.asarray(Image.open(photo).convert("L")).astype(np.uint16) * 257
    Image.fromarray(a).save(grey16)
    assert Image.open(grey16).mode.startswith("I")
    assert main(["degrade", str(grey16), "--crop", "32", "--scale", "2", "-o", str(tmp_path / "out")]) == 0
    lr16 = np.asarray(Image.open(tmp_path / "out" / "grey16_0_gt.png"))
    assert lr16.shape == (32, 32, 3) and np.array_equal(lr16[..., 0], lr16[..., 2]) and lr16.max() > 0
    assert main(["degrade", str(photo), "--crop", "30", "-o", str(tmp_path / "x")]) == 2
    assert main(["degrade", str(photo), "--per-image", "0", "-o", str(tmp_path / "x")]) == 2
