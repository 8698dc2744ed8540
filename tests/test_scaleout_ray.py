"""Ray Data: a local Ray (2 CPUs) upscales 40 real crops and a broken file with the CLI's bytes; a driver killed
half way is resumed without redoing what was written. Ray starts once for the module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from realesr.archs import SRVGGNetCompact
from realesr.cli import main
from realesr.infer.files import OutputOptions, plan_upscale
from realesr.infer.pool import UpscalerSpec
from realesr.weights import save_model

ray = pytest.importorskip("ray")
pytestmark = [
    pytest.mark.slow,  # a Ray cluster starts for each test (tens of seconds)
    pytest.mark.usefixtures("single_torch_thread"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray"),
]
COUNT = 40


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny_x4.safetensors"
    save_model(SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4), path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("in")
    photos = sorted((shared_data / "train" / "photos").glob("*.png"))
    for i in range(COUNT):
        with Image.open(photos[i % len(photos)]) as im:
            x = (i // len(photos)) * 64
            im.crop((x, 0, x + 64, 48)).save(folder / f"p{i:02d}.png")
    (folder / "broken.png").write_bytes(photos[0].read_bytes()[:2000])  # a header, then the file stops
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory, inputs, tiny_model):
    out = tmp_path_factory.mktemp("single")
    assert main(["upscale", str(inputs), "-m", str(tiny_model), "-o", str(out), "--no-progress"]) == 1
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(files) == COUNT
    return files


@pytest.fixture(scope="module")
def cluster():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


def test_actor_rows_without_ray(tmp_path, inputs, tiny_model):
    """The map_batches callable on its own: one row per input, a bad file is a row, not an exception."""
    from realesr.infer.ray_data import UpscaleActor, plan_rows

    plan = plan_upscale([inputs / "p00.png", inputs / "broken.png"], tmp_path, OutputOptions())
    actor = UpscaleActor(UpscalerSpec(str(tiny_model)), plan.options, device="cpu", threads=1)
    rows = plan_rows(plan.items)
    batch = {key: [row[key] for row in rows] for key in rows[0]}
    out = actor(batch)
    assert out["status"] == ["done", "failed"]
    assert out["error"][0] == "" and "broken.png: broken or truncated" in out["error"][1]
    assert (out["width"][0], out["height"][0]) == (256, 192)
    assert Path(out["output"][0]).is_file() and not Path(out["output"][1]).exists()


def test_ray_dataset_writes_the_cli_files(tmp_path, inputs, tiny_model, reference, cluster):
    from realesr.infer.ray_data import run_ray
    from realesr.infer.upscaler import Upscaler

    plan = plan_upscale([inputs], tmp_path / "out", OutputOptions())
    plan.check_sizes(Upscaler(str(tiny_model), device="cpu"))
    plan.prepare()
    seen = []
    rows = run_ray(plan.items, UpscalerSpec(str(tiny_model)), plan.options, on_row=seen.append)
    assert len(rows) == len(seen) == COUNT + 1
    failed = [row for row in rows if row["status"] == "failed"]
    assert len(failed) == 1 and "broken.png: broken or truncated" in failed[0]["error"]
    assert outputs(tmp_path / "out") == reference


def _driver(
    inputs: Path, out: Path, model: Path, address: str, *extra: str, env_address: str | None = None
) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    if env_address:
        env["RAY_ADDRESS"] = env_address  # what `ray start` / a cluster's job environment provides for "auto"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "realesr",
            "upscale",
            str(inputs),
            "-o",
            str(out),
            "-m",
            str(model),
            "--ray",
            address,
            "--no-progress",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def test_killed_driver_resumes_without_redoing(tmp_path, inputs, tiny_model, reference, cluster):
    out = tmp_path / "out"
    driver = _driver(inputs, out, tiny_model, cluster)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        if out.is_dir() and len(outputs(out)) >= 6:
            break
        time.sleep(0.02)
    assert driver.poll() is None, driver.communicate()
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and anything it started, nothing else
    driver.communicate()
    # The cluster ends the dead driver's job; let in-flight writes land, then look at what is there.
    stable, last = 0, -1
    while stable < 20:
        count = len(outputs(out))
        stable, last = (stable + 1, count) if count == last else (0, count)
        time.sleep(0.1)
    done = {name: (out / name).stat() for name in outputs(out)}
    assert 6 <= len(done) < COUNT
    assert all(reference[name] == (out / name).read_bytes() for name in done)

    rerun = _driver(inputs, out, tiny_model, "auto", "--resume", env_address=cluster)  # joins the running one
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 1, stderr  # the broken file
    assert f"{len(done)} input(s) already have complete outputs: skipped (--resume)" in stderr
    assert f"{COUNT - len(done)} of {COUNT + 1 - len(done)} image(s) upscaled" in stdout
    assert "Traceback" not in stderr and "broken.png" in stderr
    assert outputs(out) == reference
    for name, before in done.items():
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), name
