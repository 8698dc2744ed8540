"""Every device of one machine (`--device cpu,cpu`), batches, --resume: the files written are the ones a single
process writes, a worker that dies takes only its file with it. Real crops of ../shared/data, a tiny network."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realesr.archs import RRDBNet, SRVGGNetCompact
from realesr.cli import main
from realesr.errors import RealesrError, UsageError
from realesr.imagefiles import read_image
from realesr.infer.files import OutputOptions, plan_upscale, run_item
from realesr.infer.pool import CRASH_HOOK, CRASH_ONCE, parse_devices, upscale_items
from realesr.infer.upscaler import Upscaler
from realesr.weights import save_model

pytestmark = [
    pytest.mark.usefixtures("single_torch_thread"),
    pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN"),
]
INPUTS = "real_lr/RealESRGAN_inputs"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny_x4.safetensors"
    save_model(SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4), path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_data):
    """10 small real images of every kind the CLI handles (JPEG, grey, alpha, 16-bit + alpha) and a broken one."""
    folder = tmp_path_factory.mktemp("in")
    for i, photo in enumerate(sorted((shared_data / "train" / "photos").glob("*.png"))[:6]):
        with Image.open(photo) as im:
            im.crop((0, 0, 40, 32)).save(folder / f"photo{i}.png")
    for name in ("0014.jpg", "00017_gray.png", "children-alpha.png", "tree_alpha_16bit.png"):
        with Image.open(shared_data / INPUTS / name) as im:
            im.crop((0, 0, 36, 28)).save(folder / name)
    (folder / "broken.png").write_bytes((shared_data / INPUTS / "00003.png").read_bytes()[:3000])
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory, inputs, tiny_model):
    """The single-process CLI's outputs (the thing every other front end must reproduce byte for byte)."""
    out = tmp_path_factory.mktemp("single")
    assert main(["upscale", str(inputs), "-m", str(tiny_model), "-o", str(out), "--no-progress"]) == 1
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(files) == 10
    return files


def outputs(folder: Path) -> dict[str, bytes]:
    """The finished outputs (not the hidden temporary files of writes in progress)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


@pytest.mark.slow
def test_two_cpu_workers_write_the_single_process_files(tmp_path, inputs, tiny_model, reference, capsys):
    out = tmp_path / "out"
    code = main(["upscale", str(inputs), "-m", str(tiny_model), "-o", str(out), "--device", "cpu,cpu"])
    captured = capsys.readouterr()
    assert code == 1  # the broken file, reported, the rest written
    assert outputs(out) == reference
    failed = [line for line in captured.err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "broken.png" in failed[0] and "Traceback" not in captured.err
    assert "10 of 11 image(s) upscaled" in captured.out and "2 worker process(es): cpu, cpu" in captured.out


@pytest.mark.slow
def test_a_dying_worker_loses_nothing_and_a_poison_file_fails_alone(
    tmp_path, inputs, tiny_model, reference, capsys, monkeypatch
):
    # The worker that takes photo2 exits (as an out-of-memory kill would): the file is retried on the other.
    monkeypatch.setenv(CRASH_HOOK, "photo2.png")
    monkeypatch.setenv(CRASH_ONCE, str(tmp_path / "crashed"))
    out = tmp_path / "out"
    assert main(["upscale", str(inputs), "-m", str(tiny_model), "-o", str(out), "--device", "cpu,cpu"]) == 1
    captured = capsys.readouterr()
    assert outputs(out) == reference
    assert (tmp_path / "crashed").exists() and "on cpu stopped (exit code 3)" in captured.err
    assert [line for line in captured.err.splitlines() if line.startswith("failed:")] == [
        line for line in captured.err.splitlines() if line.startswith("failed:") and "broken.png" in line
    ]

    # A file that stops every worker that takes it: it fails after one retry, in batches too; the others are done.
    monkeypatch.setenv(CRASH_HOOK, "photo3.png")
    monkeypatch.delenv(CRASH_ONCE)
    out = tmp_path / "poison"
    assert (
        main(["upscale", str(inputs), "-m", str(tiny_model), "-o", str(out), "--device", "cpu,cpu", "--batch", "3"])
        == 1
    )
    captured = capsys.readouterr()
    expected = {name: data for name, data in reference.items() if name != "photo3_out.png"}
    assert set(outputs(out)) == set(expected)
    failed = [line for line in captured.err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 2 and any(
        "photo3.png: the worker process upscaling it stopped" in line and "2 times" in line for line in failed
    ), captured.err
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.slow
def test_batches_give_the_arrays_of_one_at_a_time(shared_data):
    photos = sorted((shared_data / "train" / "photos").glob("*.png"))[:4]
    rgb = [read_image(p).array[:30, :44] for p in photos]
    grey = [np.ascontiguousarray(a[..., 1]) for a in rgb]
    deep = [a.astype(np.uint16) * 257 + 3 for a in rgb]
    torch.manual_seed(0)
    nets = [
        SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4),
        RRDBNet(3, 3, scale=2, num_feat=8, num_block=1, num_grow_ch=4),
    ]
    for net in nets:
        for outscale in (None, 1.5):
            up = Upscaler(net, device="cpu", tile=0, outscale=outscale)
            for arrays in (rgb, grey, deep):
                single = [up.upscale_array(a) for a in arrays]
                # With a batch-invariant convolution (oneDNN off) batching changes nothing at all: stacking,
                # grey, 16 bits, resizing and splitting are exact.
                with torch.backends.mkldnn.flags(enabled=False):
                    exact_single = [up.upscale_array(a) for a in arrays]
                    exact_batch = up.upscale_arrays(arrays)
                for a, b in zip(exact_single, exact_batch):
                    assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
                # oneDNN picks other kernels for other batch sizes: float sums in another order, so a value on
                # a rounding edge may move by one level, in very few pixels.
                for a, b in zip(single, up.upscale_arrays(arrays)):
                    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
                    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    # Tiled batches split the same way as one image, and mixed shapes go one at a time.
    up = Upscaler(nets[0], device="cpu", tile=16, tile_pad=4)
    mixed = rgb[:2] + [rgb[2][:20]]
    with torch.backends.mkldnn.flags(enabled=False):
        for a, b in zip([up.upscale_array(x) for x in rgb], up.upscale_arrays(rgb)):
            assert np.array_equal(a, b)
        for a, b in zip([up.upscale_array(x) for x in mixed], up.upscale_arrays(mixed)):
            assert np.array_equal(a, b)


def test_batched_files_are_the_files_of_run_item(tmp_path, inputs, tiny_model):
    """upscale_items with batches writes exactly what run_item writes (names, metadata, marks, errors)."""
    up = Upscaler(str(tiny_model), device="cpu", tile=0)
    with torch.backends.mkldnn.flags(enabled=False):
        plan = plan_upscale([inputs], tmp_path / "one", OutputOptions(compare=True))
        plan.check_sizes(up)
        plan.prepare()
        for item in plan.items:
            try:
                run_item(up, item, plan.options)
            except RealesrError as err:
                assert "broken.png" in str(err)
        plan_b = plan_upscale([inputs], tmp_path / "batch", OutputOptions(compare=True))
        plan_b.check_sizes(up)
        plan_b.prepare()
        results = list(upscale_items(up, plan_b.items, plan_b.options, batch=4))
    assert [item.source for item, _r, _e in results] != []
    errors = [error for _item, _result, error in results if error]
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert outputs(tmp_path / "batch") == outputs(tmp_path / "one")
    assert len(outputs(tmp_path / "one")) == 20  # 10 results and 10 comparison sheets


def test_resume_keeps_complete_outputs_and_redoes_the_rest(tmp_path, inputs, tiny_model, reference, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("photo0_out.png", "photo1_out.png", "0014_out.jpg"):
        (out / name).write_bytes(reference[name])
    # Not complete: a file of the user's at a planned name (no mark of realesr), and a result of another size.
    with Image.open(inputs / "photo4.png") as im:
        im.save(out / "photo4_out.png")
    small = tmp_path / "small"
    small.mkdir()
    shutil.copy(inputs / "photo5.png", small / "photo5.png")
    assert main(["upscale", str(small), "-m", str(tiny_model), "-o", str(out), "-s", "2", "--no-progress"]) == 0
    kept = {name: (out / name).stat() for name in ("photo0_out.png", "photo1_out.png", "0014_out.jpg")}
    capsys.readouterr()
    assert main(["upscale", str(inputs), "-m", str(tiny_model), "-o", str(out), "--resume", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "3 input(s) already have complete outputs: skipped (--resume)" in captured.err
    assert "7 of 8 image(s) upscaled" in captured.out
    assert outputs(out) == reference
    for name, before in kept.items():
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), name


def test_device_lists(monkeypatch):
    assert parse_devices("cpu") is None and parse_devices("auto") is None
    assert parse_devices("cpu, cpu") == ["cpu", "cpu"]
    if not torch.cuda.is_available():
        assert parse_devices("all") is None  # no GPU: the ordinary single process, every core
        with pytest.raises(UsageError, match="no CUDA GPU"):
            parse_devices("cuda:0,cuda:1")
    for bad in ("cpu,,cpu", "auto,cpu", "cpu,tpu"):
        with pytest.raises(UsageError):
            parse_devices(bad)


@pytest.mark.slow
def test_sigterm_stops_every_worker_and_leaves_no_temporary_file(tmp_path, shared_data, tiny_model):
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "in"
    folder.mkdir()
    photos = sorted((shared_data / "train" / "photos").glob("*.png"))
    for i in range(30):
        with Image.open(photos[i % len(photos)]) as im:
            im.crop((0, 0, 64, 48)).save(folder / f"p{i:02d}.png")
    out = tmp_path / "out"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "realesr",
            "upscale",
            str(folder),
            "-o",
            str(out),
            "-m",
            str(tiny_model),
            "--device",
            "cpu,cpu",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None and not (out.is_dir() and len(outputs(out)) >= 3):
        time.sleep(0.02)
    assert driver.poll() is None, driver.communicate()
    driver.send_signal(signal.SIGTERM)
    _stdout, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 143 and "terminated" in stderr and "Traceback" not in stderr
    written = list(out.iterdir())
    assert 3 <= len(written) < 30 and not [p for p in written if p.name.startswith(".")]
    # Nothing of the run's process group is left (multiprocessing's resource tracker ends when it sees EOF).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(driver.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.killpg(driver.pid, 0)
