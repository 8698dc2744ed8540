"""Validation that means something (issue 13 §2-3): a baseline at iteration 0, `val.best` picks the best
checkpoint by the metric it names, LR | SR | GT sample strips, plots redrawn at every validation."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_train_resume import SMOKE

from realesr.errors import ConfigError
from realesr.train import load_config, train

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def cfg_for(tmp_path, shared_data, *extra):
    return load_config(SMOKE, [f"output_dir={tmp_path}", f"data.train={shared_data / 'train' / 'photos'}",
                               f"val.folder={shared_data / 'test' / 'Set5'}", "val.max_images=2", "val.max_size=64",
                               "stage=esrnet", "optim.lr_g=2e-3", "save_every=100", *extra])


def val_rows(run):
    with open(run / "val_log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_baseline_at_iteration_0_and_best_by_the_named_metric(tmp_path, shared_data):
    cfg = cfg_for(tmp_path, shared_data, "total_iters=4", "val_every=1", "val.best=bicubic/ssim", "val.num_samples=1",
                  "optim.ema_decay=0")
    train(cfg, show_progress=False)
    run = tmp_path / "smoke"
    rows = val_rows(run)
    assert sorted({int(r["iteration"]) for r in rows}) == [0, 1, 2, 3, 4]
    ssim = {int(r["iteration"]): float(r["ssim"]) for r in rows if r["kind"] == "bicubic"}
    best_it = max(ssim, key=lambda i: (ssim[i], -i))  # the first of the highest
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["best"]["metric"] == "bicubic/ssim"
    assert status["best"]["iteration"] == best_it and status["best"]["value"] == pytest.approx(ssim[best_it], abs=1e-6)
    # checkpoints/best was saved at that iteration
    state = torch.load(run / "checkpoints" / "best" / "state.pt", weights_only=True)
    assert state["iteration"] == best_it and state["best_value"] == pytest.approx(ssim[best_it], abs=1e-6)
    assert "checkpoints/best: the highest bicubic/ssim" in (run / "train.log").read_text()
    assert {int(r["iteration"]) for r in rows if r["kind"] == "degraded"} == {0, 1, 2, 3, 4}


def test_val_best_must_name_an_enabled_kind_and_metric(tmp_path, shared_data):
    with pytest.raises(ConfigError, match="val.best") as info:
        cfg_for(tmp_path, shared_data, "val.best=real/niqe")
    assert info.value.key == "val.best"
    with pytest.raises(ConfigError, match="degraded/psnr, degraded/ssim"):
        cfg_for(tmp_path, shared_data, "val.best=bicubic/psnr", "val.bicubic=false")


def test_sample_strips_are_lr_sr_gt(tmp_path, shared_data):
    cfg = cfg_for(tmp_path, shared_data, "total_iters=1", "val_every=1", "val.num_samples=1", "val.bicubic=false")
    train(cfg, show_progress=False)
    strips = sorted((tmp_path / "smoke" / "samples" / "iter_00000001").glob("*.png"))
    assert [p.name for p in strips] == ["baby_degraded.png"]  # the first image, at every validation
    assert sorted(p.name for p in (tmp_path / "smoke" / "samples" / "iter_00000000").glob("*.png")) == \
        ["baby_degraded.png"]
    strip = np.asarray(Image.open(strips[0]).convert("RGB"))
    assert strip.shape == (64, 3 * 64 + 2 * 4, 3)
    # the GT panel is the centre 64 px of baby.png, exactly
    hr = np.asarray(Image.open(shared_data / "test" / "Set5" / "baby.png").convert("RGB"))
    top = (hr.shape[0] - 64) // 2
    assert np.array_equal(strip[:, 2 * 68 :], hr[top : top + 64, top : top + 64])
    # the LR panel is nearest-neighbour enlarged: 4x4 blocks of one colour
    lr_panel = strip[:, :64].astype(int)
    assert np.array_equal(lr_panel, np.repeat(np.repeat(lr_panel[::4, ::4], 4, axis=0), 4, axis=1))
    assert (strip[:, 64:68] == 255).all()  # white gaps between the panels
