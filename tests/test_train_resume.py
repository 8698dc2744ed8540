"""The trainer does what the config says and keeps runs apart (issue 8 §3): a changed schedule on resume, the lr
logged is the lr used, runs refused / moved aside, failed resumes touch nothing, start-up checks, plots at every
validation, a plain install without TensorBoard or matplotlib. Tiny networks, real photos from ../shared/data."""

import csv
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from realesr.errors import ConfigError, ModelNotFoundError
from realesr.train import load_config, train
from realesr.train.checkpoint import CheckpointError
from realesr.train.loop import RunFolderError, build_generator

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
LR = 1e-3

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def esrnet_cfg(tmp_path, shared_data, *overrides):
    return load_config(
        SMOKE,
        [
            f"output_dir={tmp_path}",
            f"data.train={shared_data / 'train' / 'photos'}",
            "val.folder=",
            "stage=esrnet",
            f"optim.lr_g={LR}",
            "save_every=100",
            *overrides,
        ],
    )


def lr_column(run_dir: Path) -> dict[int, float]:
    with open(run_dir / "train_log.csv", newline="") as f:
        return {int(r["iteration"]): float(r["lr_g"]) for r in csv.DictReader(f)}


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_resume_follows_a_changed_schedule_and_an_extended_run_keeps_its_lr(tmp_path, shared_data):
    # first run: 4 iterations, warm-up over 2, the default milestone at its end (4)
    train(esrnet_cfg(tmp_path, shared_data, "total_iters=4", "optim.warmup_iters=2"), show_progress=False)
    # extended to 8 and given a new schedule: milestone 6, gamma 0.1, no warm-up
    cfg = esrnet_cfg(tmp_path, shared_data, "total_iters=8", "optim.milestones=[6]", "optim.gamma=0.1")
    train(cfg, resume="auto", show_progress=False)
    lr = lr_column(tmp_path / "smoke")
    # the documented closed form: lr * min(1, (step + 1) / warm-up) * gamma ** (milestones passed), step = it - 1
    expected = {
        1: LR / 2,
        2: LR,
        3: LR,
        4: LR,  # the first run's schedule (warm-up 2, milestone 4 not reached)
        5: LR,
        6: LR,  # the old end (milestone 4) halves nothing: the new milestone is 6
        7: LR * 0.1,
        8: LR * 0.1,
    }
    assert lr == pytest.approx(expected, rel=1e-5)
    log = (tmp_path / "smoke" / "train.log").read_text()
    assert "schedule changed on resume, followed from iteration 5 on:" in log
    assert "total_iters 4 -> 8" in log and "optim.milestones [4] -> [6]" in log and "optim.gamma 0.5 -> 0.1" in log
    assert "optim.warmup_iters 2 -> 0" in log


def test_a_run_extended_past_its_end_does_not_halve_the_lr_at_the_old_end(tmp_path, shared_data):
    train(esrnet_cfg(tmp_path, shared_data, "total_iters=3"), show_progress=False)
    train(esrnet_cfg(tmp_path, shared_data, "total_iters=6"), resume="auto", show_progress=False)
    assert lr_column(tmp_path / "smoke") == pytest.approx(dict.fromkeys(range(1, 7), LR), rel=1e-6)


def test_the_lr_logged_is_the_lr_used(tmp_path, shared_data):
    # Adam's first step moves every weight with a non-zero gradient by lr * g / (|g| + eps) ~= +-lr: the lr used
    # at iteration 1 can be read from the weights. With a warm-up over 4 it is lr / 4.
    cfg = esrnet_cfg(tmp_path, shared_data, "total_iters=1", "optim.warmup_iters=4", "optim.ema_decay=0")
    train(cfg, show_progress=False)
    torch.manual_seed(cfg.seed)  # the trainer seeds so before building the networks
    initial = build_generator(cfg).state_dict()
    after = load_file(str(tmp_path / "smoke" / "checkpoints" / "iter_00000001" / "net_g.safetensors"))
    steps = torch.cat([(after[k] - initial[k]).abs().flatten() for k in initial if initial[k].is_floating_point()])
    moved = steps[steps > 1e-7]
    assert moved.numel() > 0.9 * steps.numel()
    # |g| / (|g| + eps) < 1: no weight moves by more than the lr, the ones with large gradients by almost exactly it
    assert moved.max().item() == pytest.approx(LR / 4, rel=1e-3)
    assert lr_column(tmp_path / "smoke") == pytest.approx({1: LR / 4}, rel=1e-6)


def test_a_folder_holding_a_run_is_refused_or_moved_aside(tmp_path, shared_data):
    train(esrnet_cfg(tmp_path, shared_data, "total_iters=1"), show_progress=False)
    run = tmp_path / "smoke"
    before = snapshot(run)
    with pytest.raises(RunFolderError, match=r"--resume auto.*another name.*--overwrite") as info:
        train(esrnet_cfg(tmp_path, shared_data, "total_iters=2"), show_progress=False)
    assert info.value.exit_code == 2 and info.value.key == "name"
    assert snapshot(run) == before  # not even train.log was touched
    result = train(esrnet_cfg(tmp_path, shared_data, "total_iters=2"), show_progress=False, overwrite=True)
    assert result.iteration == 2
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("smoke.old-")]
    assert len(aside) == 1 and snapshot(aside[0]) == before
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iter_00000002"]


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("batch_size=4", "batch_size", "set batch_size: 2"),
        ("network.num_feat=16", "network.num_feat", "set network.num_feat: 8"),
    ],
)
def test_a_failed_resume_leaves_the_run_folder_as_it_was(tmp_path, shared_data, override, key, words):
    train(esrnet_cfg(tmp_path, shared_data, "total_iters=2"), show_progress=False)
    run = tmp_path / "smoke"
    before = snapshot(run)
    with pytest.raises(CheckpointError, match=f"config key '{key}'|{key}") as info:
        train(esrnet_cfg(tmp_path, shared_data, "total_iters=4", override), resume="auto", show_progress=False)
    assert info.value.key == key and words in str(info.value)
    assert "pool_size" not in str(info.value).split(";")[0] or key != "batch_size"
    assert snapshot(run) == before  # config.yaml, CSV files, train.log, checkpoints: byte for byte


@pytest.mark.slow
def test_a_changed_width_through_the_cli_is_one_line(tmp_path, shared_data):
    base = [
        sys.executable,
        "-m",
        "realesr",
        "train",
        str(SMOKE),
        "--no-progress",
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        f"data.train={shared_data / 'train' / 'photos'}",
        "--set",
        "val.folder=",
        "--set",
        "stage=esrnet",
        "--set",
        "total_iters=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    assert subprocess.run(base, env=env, capture_output=True, timeout=120).returncode == 0
    bad = subprocess.run(
        base + ["--set", "network.num_feat=16", "--resume", "auto"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("realesr: error:") and "network.num_feat" in last
    refused = subprocess.run(base, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--resume auto" in refused.stderr and "Traceback" not in refused.stderr


def test_a_missing_validation_folder_is_named_before_anything_is_written(tmp_path, shared_data):
    cfg = esrnet_cfg(tmp_path, shared_data, f"val.folder={tmp_path / 'nope'}")
    with pytest.raises(ConfigError, match="validation folder not found") as info:
        train(cfg, show_progress=False)
    assert info.value.key == "val.folder"
    assert not (tmp_path / "smoke").exists()


def test_missing_vgg_weights_fail_before_anything_is_written(tmp_path, shared_data):
    cfg = esrnet_cfg(tmp_path, shared_data, "stage=esrgan", f"loss.perceptual.weights={tmp_path / 'vgg19.pth'}")
    with pytest.raises(ModelNotFoundError, match="VGG19 weights file not found: .*vgg19.pth"):
        train(cfg, show_progress=False, allow_download=False)
    assert not (tmp_path / "smoke").exists()


@pytest.mark.slow
def test_plots_exist_after_an_interrupted_run(tmp_path, shared_data):
    cfg = esrnet_cfg(
        tmp_path,
        shared_data,
        "total_iters=20",
        "val_every=2",
        f"val.folder={shared_data / 'test/Set5'}",
        "val.max_images=1",
        "val.bicubic=false",
    )

    def interrupt(iteration, losses):
        if iteration == 2:
            signal.raise_signal(signal.SIGINT)

    result = train(cfg, on_iteration=interrupt, show_progress=False)
    assert result.status == "interrupted" and result.iteration == 2
    plots = tmp_path / "smoke" / "plots"
    assert (plots / "losses.png").stat().st_size > 1000 and (plots / "validation.png").stat().st_size > 1000


def test_training_without_tensorboard_and_matplotlib(tmp_path, shared_data, monkeypatch):
    # a plain install without the `train` extra: importing either raises ImportError
    for name in ("torch.utils.tensorboard", "matplotlib"):
        monkeypatch.setitem(sys.modules, name, None)
    from realesr.train import loop

    monkeypatch.setattr(loop, "_plot_warned", False)
    result = train(esrnet_cfg(tmp_path, shared_data, "total_iters=2"), show_progress=False)
    assert result.status == "completed"
    run = tmp_path / "smoke"
    assert not (run / "tb").exists() and not (run / "plots").exists()
    assert list(lr_column(run)) == [1, 2]
    log = (run / "train.log").read_text()
    assert "tensorboard package is not installed" in log and "matplotlib is not installed" in log
