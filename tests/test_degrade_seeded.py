"""One seeded degraded LR for every command (issue 9 §4): validation during training, `realesr eval --degrade`
and `realesr degrade --crop 0` make the same LR image of one picture with one seed."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from realesr.cli import main
from realesr.degrade import DegradationConfig, degraded_lr
from realesr.evaluate.protocol import degraded_lr_image
from realesr.imagefiles import to_uint8
from realesr.train.validate import build_validation_set

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_validation_eval_and_degrade_make_the_same_lr(shared_data, tmp_path):
    folder = tmp_path / "val"
    folder.mkdir()
    shutil.copy(shared_data / "test" / "Set5" / "butterfly.png", folder / "butterfly.png")  # 256 px: a multiple of 4
    seed = 7
    # 1. validation during training
    val = build_validation_set(
        str(folder), 4, 1, 0, 0, seed, degraded=True, bicubic=False, degradation_cfg=DegradationConfig.for_scale(4)
    )
    from_val = to_uint8(val[0].lr["degraded"][0].permute(1, 2, 0).numpy())
    # 2. what `realesr eval --degrade --seed 7` feeds the models
    from_eval = degraded_lr_image(val[0].hr, 4, seed, "butterfly.png")
    # 3. `realesr degrade --crop 0 --seed 7` (the first LR version)
    out = tmp_path / "out"
    assert main(["degrade", str(folder / "butterfly.png"), "--crop", "0", "--seed", str(seed), "-o", str(out)]) == 0
    from_cli = np.asarray(Image.open(out / "butterfly_0_lr.png").convert("RGB"))
    assert from_val.shape == from_eval.shape == from_cli.shape == (64, 64, 3)
    assert np.array_equal(from_val, from_eval)  # exactly
    assert np.array_equal(from_eval, from_cli)  # exactly
    # the seed matters, and so does the name: another seed or another file gives another LR
    other_seed = degraded_lr_image(val[0].hr, 4, seed + 1, "butterfly.png")
    other_name = degraded_lr_image(val[0].hr, 4, seed, "butterfly2.png")
    assert not np.array_equal(other_seed, from_eval) and not np.array_equal(other_name, from_eval)


def test_degraded_lr_does_not_depend_on_the_device_generator_state(shared_data):
    gt = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cfg = DegradationConfig.for_scale(4)
    a = degraded_lr(gt, cfg, 4, 3, "x.png")
    torch.rand(100)  # the global stream moves on: the LR must not
    b = degraded_lr(gt, cfg, 4, 3, "x.png")
    assert a.shape == (1, 3, 16, 16) and torch.equal(a, b)
