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
from realesr.metrics import imresize, niqe, psnr, ssim
from realesr.train import load_config, train

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def cfg_for(tmp_path, shared_data, *extra):
    return load_config(
        SMOKE,
        [
            f"output_dir={tmp_path}",
            f"data.train={shared_data / 'train' / 'photos'}",
            f"val.folder={shared_data / 'test' / 'Set5'}",
            "val.max_images=2",
            "val.max_size=64",
            "stage=esrnet",
            "optim.lr_g=2e-3",
            "save_every=100",
            *extra,
        ],
    )


def val_rows(run):
    with open(run / "val_log.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_baseline_at_iteration_0_and_best_by_the_named_metric(tmp_path, shared_data):
    cfg = cfg_for(
        tmp_path,
        shared_data,
        "total_iters=4",
        "val_every=1",
        "val.best=bicubic/ssim",
        "val.num_samples=1",
        "optim.ema_decay=0",
    )
    train(cfg, show_progress=False)
    run = tmp_path / "smoke"
    rows = val_rows(run)
    assert sorted({int(r["iteration"]) for r in rows}) == [0, 1, 2, 3, 4]
    ssim = {int(r["iteration"]): float(r["value"]) for r in rows if (r["set"], r["metric"]) == ("bicubic", "ssim")}
    best_it = max(ssim, key=lambda i: (ssim[i], -i))  # the first of the highest
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["best"]["metric"] == "bicubic/ssim"
    assert status["best"]["iteration"] == best_it and status["best"]["value"] == pytest.approx(ssim[best_it], abs=1e-6)
    # checkpoints/best was saved at that iteration
    state = torch.load(run / "checkpoints" / "best" / "state.pt", weights_only=True)
    assert state["iteration"] == best_it and state["best_value"] == pytest.approx(ssim[best_it], abs=1e-6)
    assert "checkpoints/best: the highest bicubic/ssim" in (run / "train.log").read_text()
    assert {int(r["iteration"]) for r in rows if r["set"] == "degraded"} == {0, 1, 2, 3, 4}


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
    assert sorted(p.name for p in (tmp_path / "smoke" / "samples" / "iter_00000000").glob("*.png")) == [
        "baby_degraded.png"
    ]
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


# ------------------------------------------------------------------------------------ several sets, each of a kind


def panels(strip_path, count):
    """The ``count`` equal panels of an LR | SR (| GT) strip (4-px white gaps)."""
    strip = np.asarray(Image.open(strip_path).convert("RGB"))
    w = (strip.shape[1] - 4 * (count - 1)) // count
    return [strip[:, i * (w + 4) : i * (w + 4) + w] for i in range(count)]


@pytest.fixture
def val_folders(tmp_path, shared_data):
    """A paired set made by MATLAB-bicubic downscaling two Set5 crops (plus an LR without an HR, to be ignored),
    and a real set of two RealSRSet crops."""
    hr_dir, lr_dir, real_dir = tmp_path / "pair_hr", tmp_path / "pair_lr", tmp_path / "real"
    for d in (hr_dir, lr_dir, real_dir):
        d.mkdir()
    for name in ("bird", "head"):
        hr = np.asarray(Image.open(shared_data / "test" / "Set5" / f"{name}.png").convert("RGB"))[8:72, 16:96]
        Image.fromarray(hr).save(hr_dir / f"{name}.png")
        lr = np.clip(np.round(imresize(hr, scale=0.25)), 0, 255).astype(np.uint8)
        Image.fromarray(lr).save(lr_dir / f"{name}.png")
    Image.fromarray(lr).save(lr_dir / "unmatched.png")
    for name in ("building", "comic1"):
        lr = np.asarray(Image.open(shared_data / "real_lr" / "RealSRSet" / f"{name}.png").convert("RGB"))
        h, w = lr.shape[:2]
        lr = lr[h // 2 - 14 : h // 2 + 14, w // 2 - 16 : w // 2 + 16]  # textured centres, 28x32
        Image.fromarray(np.ascontiguousarray(lr)).save(real_dir / f"{name}.png")
    return hr_dir, lr_dir, real_dir


# SRVGGNetCompact adds the nearest-upsampled input: even untrained its SR is an image, so NIQE is defined
COMPACT = ("network.arch=SRVGGNetCompact", "network.num_feat=8", "network.num_conv=2")


def sets_override(shared_data, hr_dir, lr_dir, real_dir):
    return (
        f"val.sets=[{{kind: synthetic, path: '{shared_data / 'test' / 'Set5'}', name: set5}}, "
        f"{{kind: paired, path: '{hr_dir}', lr: '{lr_dir}', name: pairs}}, {{kind: real, path: '{real_dir}'}}]"
    )


@pytest.mark.slow
def test_each_kind_of_set_gives_its_rows_checked_against_the_metrics(tmp_path, shared_data, val_folders):
    hr_dir, lr_dir, real_dir = val_folders
    cfg = cfg_for(
        tmp_path,
        shared_data,
        "val.folder=",
        sets_override(shared_data, *val_folders),
        *COMPACT,
        "total_iters=2",
        "val_every=2",
        "val.num_samples=2",
        "val.max_size=0",
        "optim.ema_decay=0",
    )
    train(cfg, show_progress=False)
    run = tmp_path / "smoke"
    rows = val_rows(run)
    assert {(int(r["iteration"]), r["set"], r["metric"]) for r in rows} == {
        (i, s, m)
        for i in (0, 2)
        for s, ms in (("set5", ("psnr", "ssim")), ("pairs", ("psnr", "ssim")), ("real", ("niqe",)))
        for m in ms
    }
    value = {(int(r["iteration"]), r["set"], r["metric"]): float(r["value"]) for r in rows}
    samples = run / "samples" / "iter_00000002"
    # synthetic: the GT panels are Set5 itself, metrics recomputed from the saved SR panels
    for metric, fn in (("psnr", psnr), ("ssim", ssim)):
        got = [
            fn(sr, gt, crop_border=4, y_channel=True)
            for _, sr, gt in (panels(samples / f"{n}_set5.png", 3) for n in ("baby", "bird"))
        ]
        assert value[2, "set5", metric] == pytest.approx(np.mean(got), rel=1e-5)
    # paired, matched by name: the LR panel is the LR file, PSNR against the test's own HR files
    got = []
    for name in ("bird", "head"):
        lr_panel, sr, gt = panels(samples / f"{name}_pairs.png", 3)
        lr = np.asarray(Image.open(lr_dir / f"{name}.png"))
        assert np.array_equal(lr_panel, np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1))
        assert np.array_equal(gt, np.asarray(Image.open(hr_dir / f"{name}.png")))
        got.append(psnr(sr, np.asarray(Image.open(hr_dir / f"{name}.png")), crop_border=4, y_channel=True))
    assert value[2, "pairs", "psnr"] == pytest.approx(np.mean(got), rel=1e-5)
    # real: LR | SR strips, NIQE of the SR panels (Y, the standard 4-px border)
    got = [niqe(panels(samples / f"{n}_real.png", 2)[1], crop_border=4) for n in ("building", "comic1")]
    assert value[2, "real", "niqe"] == pytest.approx(np.mean(got), rel=1e-5)
    log_text = (run / "train.log").read_text()
    assert "checkpoints/best: the highest set5/psnr (val.best empty: the default for this stage)" in log_text
    assert json.loads((run / "status.json").read_text())["best"]["metric"] == "set5/psnr"
    assert (run / "plots" / "validation.png").stat().st_size > 1000


@pytest.mark.slow
def test_gan_stage_picks_best_by_the_lowest_niqe_of_the_real_set(tmp_path, shared_data, val_folders):
    cfg = load_config(
        SMOKE,
        [
            f"output_dir={tmp_path}",
            f"data.train={shared_data / 'train' / 'photos'}",
            "val.folder=",
            sets_override(shared_data, *val_folders),
            "val.max_images=1",
            "val.max_size=0",
            *COMPACT,
            "total_iters=4",
            "val_every=1",
            "save_every=100",
            "optim.lr_g=5e-3",
            "optim.lr_d=5e-3",
            "optim.ema_decay=0",
            "val.num_samples=0",
        ],
    )
    assert cfg.stage == "esrgan" and cfg.val.best == ""
    train(cfg, show_progress=False)
    run = tmp_path / "smoke"
    niqes = {int(r["iteration"]): float(r["value"]) for r in val_rows(run) if r["set"] == "real"}
    assert sorted(niqes) == [0, 1, 2, 3, 4] and len(set(niqes.values())) > 1
    best_it = min(niqes, key=lambda i: (niqes[i], i))  # the first of the lowest
    status = json.loads((run / "status.json").read_text())
    assert status["best"]["metric"] == "real/niqe" and status["best"]["iteration"] == best_it
    state = torch.load(run / "checkpoints" / "best" / "state.pt", weights_only=True)
    assert state["iteration"] == best_it and state["best_value"] == pytest.approx(niqes[best_it], rel=1e-5)
    assert "checkpoints/best: the lowest real/niqe" in (run / "train.log").read_text()


def test_val_sets_config_errors_name_the_key(tmp_path, shared_data, val_folders):
    hr_dir, lr_dir, real_dir = val_folders
    with pytest.raises(ConfigError, match=r"val.sets\[0\].lr") as info:
        cfg_for(tmp_path, shared_data, f"val.sets=[{{kind: paired, path: '{hr_dir}'}}]")
    assert info.value.key == "val.sets[0].lr"
    with pytest.raises(ConfigError, match="val.sets.0..kind"):
        cfg_for(tmp_path, shared_data, f"val.sets=[{{kind: fake, path: '{hr_dir}'}}]")
    with pytest.raises(ConfigError, match="must be one of degraded/psnr, .*, real/niqe"):
        cfg_for(tmp_path, shared_data, f"val.sets=[{{kind: real, path: '{real_dir}'}}]", "val.best=real/psnr")
    # `val:` as the list itself; the old single folder is one synthetic set (its degraded and bicubic LR)
    from realesr.train.config import config_from_dict, default_best

    cfg = config_from_dict(
        {"data": {"train": "x"}, "stage": "esrgan", "val": [{"kind": "real", "path": str(real_dir)}]}
    )
    assert [s.kind for s in cfg.val.sets] == ["real"] and default_best(cfg) == "real/niqe"
    cfg = config_from_dict({"data": {"train": "x"}, "stage": "esrgan", "val": {"folder": str(hr_dir)}})
    assert default_best(cfg) == "degraded/psnr"
