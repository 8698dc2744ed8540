"""`realesr prepare` (official sub-image rule, meta_info lists) and `realesr runs` (finished, interrupted, running
and killed runs). Real photos from ../shared/data, tiny networks."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr.cli import main
from realesr.data import list_images
from realesr.data.prepare import subimage_starts
from realesr.train import load_config, train

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.mark.parametrize(
    ("length", "crop", "step", "thresh", "expected"),
    [
        # the official extract_subimages.py rule: starts 0, step, ... while a window fits; when more than thresh
        # pixels are left after the last window, one more window flush with the border
        (1000, 480, 240, 0, [0, 240, 480, 520]),  # 1000 - 960 = 40 left > 0
        (960, 480, 240, 0, [0, 240, 480]),  # nothing left
        (1000, 480, 240, 40, [0, 240, 480]),  # 40 left, not above the threshold
        (1000, 480, 240, 39, [0, 240, 480, 520]),
        (480, 480, 240, 0, [0]),
        (850, 480, 240, 0, [0, 240, 370]),
        (300, 480, 240, 0, [0]),  # shorter than the crop: the whole side
    ],
)
def test_subimage_starts_follow_the_official_rule(length, crop, step, thresh, expected):
    assert subimage_starts(length, crop, step, thresh) == expected


def test_prepare_cuts_sub_images_and_writes_a_meta_info_list(shared_data, tmp_path, capsys):
    hr = tmp_path / "hr"
    (hr / "sub").mkdir(parents=True)
    shutil.copy(shared_data / "train" / "photos" / "001.png", hr / "001.png")  # 1276 x 850
    shutil.copy(shared_data / "train" / "photos" / "002.png", hr / "sub" / "002.png")  # 1260 x 806
    out = tmp_path / "out"
    assert main(["prepare", str(hr), str(out)]) == 0
    # 001: x starts 0, 240, 480, 720, 796 (1276 - 1200 = 76 left); y starts 0, 240, 370
    subs = sorted(out.glob("001_s*.png"))
    assert len(subs) == 5 * 3 and len(sorted((out / "sub").glob("002_s*.png"))) == 5 * 3
    src = np.asarray(Image.open(hr / "001.png").convert("RGB"))
    # row by row: s001 at (0, 0), s005 at (0, 796), s006 at (240, 0), s015 at (370, 796)
    for name, (top, left) in {
        "001_s001.png": (0, 0),
        "001_s005.png": (0, 796),
        "001_s006.png": (240, 0),
        "001_s015.png": (370, 796),
    }.items():
        piece = np.asarray(Image.open(out / name).convert("RGB"))
        assert np.array_equal(piece, src[top : top + 480, left : left + 480]), name  # exactly the source pixels
    lines = (out / "meta_info.txt").read_text().splitlines()
    assert len(lines) == 30 and lines[0] == "001_s001.png (480,480,3)" and "sub/002_s015.png (480,480,3)" in lines
    # data.train accepts the official meta_info format
    listed = list_images(out / "meta_info.txt")
    assert len(listed) == 30 and all(p.is_file() for p in listed)
    assert "wrote 30 sub-images of 2 images" in capsys.readouterr().out
    # a second run into the same folder is refused, nothing written
    before = sorted(p.stat().st_mtime_ns for p in out.rglob("*.png"))
    assert main(["prepare", str(hr), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("*.png")) == before


def _cfg_args(tmp_path, shared_data, *extra):
    return [
        f"output_dir={tmp_path}",
        f"data.train={shared_data / 'train' / 'photos'}",
        "val.folder=",
        "stage=esrnet",
        *extra,
    ]


def _runs_table(capsys, folder) -> dict[str, str]:
    assert main(["runs", str(folder)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["name", "stage", "iteration"]
    return {line.split()[0]: line for line in lines[1:]}


@pytest.mark.slow
def test_runs_shows_finished_interrupted_running_and_killed_runs(shared_data, tmp_path, capsys):
    # finished, with a validation
    train(
        load_config(
            SMOKE,
            _cfg_args(
                tmp_path,
                shared_data,
                "name=done",
                "total_iters=2",
                "val_every=2",
                f"val.folder={shared_data / 'test' / 'Set5'}",
                "val.max_images=1",
            ),
        ),
        show_progress=False,
    )
    # running: a real training in another process
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "realesr", "train", str(SMOKE), "--no-progress"]
    for item in _cfg_args(tmp_path, shared_data, "save_every=1", "total_iters=100000"):
        cmd += ["--set", item]
    procs = {}
    for name in ("live", "killed"):
        procs[name] = subprocess.Popen(
            cmd + ["--set", f"name={name}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all((tmp_path / n / "checkpoints").is_dir() for n in procs):
        time.sleep(0.2)
    try:
        table = _runs_table(capsys, tmp_path)
        assert table["done"].split()[1:5] == ["esrnet", "2", "/", "2"] and table["done"].endswith("finished")
        with open(tmp_path / "done" / "val_log.csv", newline="") as f:
            psnr = {
                int(r["iteration"]): float(r["value"])
                for r in csv.DictReader(f)
                if (r["set"], r["metric"]) == ("degraded", "psnr")
            }
        assert sorted(psnr) == [0, 2]  # the baseline, then the validation at the end
        best_it = 2 if psnr[2] > psnr[0] else 0
        assert f"{psnr[best_it]:.2f} dB (degraded/psnr) @ {best_it}" in table["done"]
        assert f"@ 2: degraded {psnr[2]:.2f} dB" in table["done"]
        assert table["live"].endswith("running") and "/ 100000" in table["live"]
        procs["killed"].send_signal(signal.SIGKILL)  # gone without a word
        procs["killed"].wait(timeout=30)
        procs["live"].send_signal(signal.SIGTERM)  # saves and says so
        procs["live"].communicate(timeout=60)
        assert procs["live"].returncode == 143
        table = _runs_table(capsys, tmp_path)
        assert table["live"].endswith("interrupted")
        assert table["killed"].endswith("failed")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def test_train_dry_run_reports_and_writes_nothing(shared_data, tmp_path, capsys):
    from realesr.archs import RRDBNet

    argv = [
        "train",
        str(SMOKE),
        "--dry-run",
        "--set",
        f"output_dir={tmp_path / 'runs'}",
        "--set",
        f"data.train={shared_data / 'train' / 'photos'}",
        "--set",
        f"val.folder={shared_data / 'test' / 'Set5'}",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "# resolved config" in out and "total_iters: 6" in out
    n_photos = len(list((shared_data / "train" / "photos").glob("*.png")))
    assert f"training data: {n_photos} image(s)" in out and "validation: 5 image(s)" in out
    g = sum(p.numel() for p in RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4).parameters())
    assert f"generator RRDBNet: {g:,} parameters" in out
    assert "perceptual loss VGG19 (frozen): 20,024,384 parameters" in out  # torchvision's vgg19.features
    assert "memory estimate per process:" in out and "run folder" in out and out.rstrip().endswith("new")
    assert not (tmp_path / "runs").exists()
