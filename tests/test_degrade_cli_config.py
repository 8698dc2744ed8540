"""`realesr degrade --config`: a preview of exactly the degradation a training config applies."""

import io

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from realesr.cli import main
from realesr.degrade import degraded_lr
from realesr.train.synth import degradation_config

pytestmark = pytest.mark.usefixtures("single_torch_thread")

# identity blurs (no sinc, a Gaussian of sigma 0.05 is a delta to 1e-80), no resize in stage one, no noise
# (sigma 0): what is left is the resize to the LR size (area) and two JPEGs at quality 100
PLAIN = {
    "sinc_prob": 0.0,
    "sinc_prob2": 0.0,
    "final_sinc_prob": 0.0,
    "second_blur_prob": 0.0,
    "kernel_list": ["iso"],
    "kernel_prob": [1.0],
    "blur_sigma": [0.05, 0.05],
    "resize_prob": [0, 0, 1],
    "resize_prob2": [0, 0, 1],
    "resize_modes": ["area"],
    "resize_modes2": ["area"],
    "final_resize_modes": ["area"],
    "gaussian_noise_prob": 1.0,
    "noise_range": [0, 0],
    "gaussian_noise_prob2": 1.0,
    "noise_range2": [0, 0],
    "jpeg_range": [100, 100],
    "jpeg_range2": [100, 100],
}


def _config(tmp_path, scale: int, degradation: dict, gt_size: int = 32):
    path = tmp_path / "train.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "scale": scale,
                "data": {"train": str(tmp_path), "load_size": 64, "gt_size": gt_size, "degradation": degradation},
            }
        )
    )
    return path


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_config_preview_is_the_seeded_lr_of_that_config(shared_data, tmp_path):
    image = shared_data / "test" / "Set5" / "bird.png"
    overrides = {"noise_range": [10, 20], "jpeg_range2": [40, 60], "resize_prob2": [0.1, 0.8, 0.1]}
    config = _config(tmp_path, 2, overrides)
    assert (
        main(
            [
                "degrade",
                str(image),
                "--config",
                str(config),
                "--crop",
                "0",
                "--seed",
                "3",
                "-o",
                str(tmp_path / "whole"),
            ]
        )
        == 0
    )
    lr = _png(tmp_path / "whole" / "bird_0_lr.png")

    gt = torch.from_numpy(_png(image).copy()).permute(2, 0, 1)[None].float() / 255
    gt = gt[..., : gt.shape[-2] // 2 * 2, : gt.shape[-1] // 2 * 2]
    expected = degraded_lr(gt, degradation_config(2, overrides), 2, 3, image.name)
    expected = np.clip(np.round(expected[0].permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
    assert lr.shape == expected.shape == (gt.shape[-2] // 2, gt.shape[-1] // 2, 3)
    assert np.array_equal(lr, expected)

    # the config's degradation section is what made it: the default chain at that scale gives another LR
    assert (
        main(["degrade", str(image), "--scale", "2", "--crop", "0", "--seed", "3", "-o", str(tmp_path / "default")])
        == 0
    )
    assert not np.array_equal(lr, _png(tmp_path / "default" / "bird_0_lr.png"))
    # without --crop: training's crop, data.gt_size (32) and its LR (16), with the contact sheet
    assert main(["degrade", str(image), "--config", str(config), "--sheet", "-o", str(tmp_path / "crop")]) == 0
    assert _png(tmp_path / "crop" / "bird_0_gt.png").shape == (32, 32, 3)
    assert _png(tmp_path / "crop" / "bird_0_lr.png").shape == (16, 16, 3)
    assert (tmp_path / "crop" / "bird_sheet.png").is_file()


def test_config_without_blur_noise_or_resize_gives_the_plain_downscale(shared_data, tmp_path):
    image = shared_data / "test" / "Set5" / "bird.png"
    config = _config(tmp_path, 4, PLAIN)
    assert (
        main(["degrade", str(image), "--config", str(config), "--crop", "0", "--no-usm", "-o", str(tmp_path / "out")])
        == 0
    )
    lr = _png(tmp_path / "out" / "bird_0_lr.png").astype(np.float64)
    src = _png(image).astype(np.float64)
    h, w = src.shape[0] // 4 * 4, src.shape[1] // 4 * 4
    # area resize by 4 is the mean of each 4x4 block (a closed form, independent of the chain's code)
    blocks = src[:h, :w].reshape(h // 4, 4, w // 4, 4, 3).mean(axis=(1, 3))
    # JPEG at quality 100 keeps the luma (all quantisers 1) but halves the chroma (4:2:0, as the official):
    # the luma is the plain downscale to a rounding, the colour error that of libjpeg's 4:2:0 on the same LR
    luma = np.array([0.299, 0.587, 0.114])
    err = np.abs(lr @ luma - blocks @ luma)
    assert err.mean() < 0.75 and np.percentile(err, 99) < 4
    buffer = io.BytesIO()
    Image.fromarray(np.round(blocks).astype(np.uint8)).save(buffer, "JPEG", quality=100, subsampling=2)
    libjpeg_err = np.abs(np.asarray(Image.open(buffer)).astype(np.float64) - blocks).mean()
    assert 0.6 * libjpeg_err < np.abs(lr - blocks).mean() < 1.4 * libjpeg_err
    # while the official chain on the same image is far from it
    assert main(["degrade", str(image), "--scale", "4", "--crop", "0", "--no-usm", "-o", str(tmp_path / "d")]) == 0
    assert np.abs(_png(tmp_path / "d" / "bird_0_lr.png") @ luma - blocks @ luma).mean() > 5 * err.mean()


@pytest.mark.parametrize(
    "degradation,key",
    [
        ({"resize_prob2": [0.5, 0.5]}, "data.degradation.resize_prob2"),
        ({"noise_rang": [1, 5]}, "data.degradation.noise_rang"),
        ({"blur_sigma2": [3, 1]}, "data.degradation.blur_sigma2"),
    ],
)
def test_bad_config_is_one_line_exit_2_naming_the_key(shared_data, tmp_path, capsys, degradation, key):
    image = shared_data / "test" / "Set5" / "bird.png"
    code = main(["degrade", str(image), "--config", str(_config(tmp_path, 4, degradation)), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and f"'{key}'" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    # a --scale that contradicts the config is a usage error too (the preview would not be what training does)
    assert (
        main(
            [
                "degrade",
                str(image),
                "--config",
                str(_config(tmp_path, 4, {})),
                "--scale",
                "2",
                "-o",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
