"""Class 6 (signals) and 11 of issue 18: Ctrl-C and SIGTERM end every command within a few seconds, on every try
(realesr/signals.py, the one rule): exit 130 / 143, one line, no traceback, no temporary file, inputs untouched;
while the interpreter is still loading torch, in the middle of the work, twice in a row, and under `--ray`, whose
`ray.init` takes the SIGTERM handler over."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .harness import assert_unchanged, snapshot, tiny_image

CODES = {signal.SIGINT: (130, "interrupted"), signal.SIGTERM: (143, "terminated")}


def _big_image(path: Path, side: int = 1024) -> Path:
    """An image of many tiles for the tiny network: seconds of work, so that a signal finds it working."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path, compress_level=0)
    return path


def _wait_for(condition, proc, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.proc.poll() is None, "the command ended before the signal"
        assert time.monotonic() < deadline, "the command never reached the point to signal"
        time.sleep(0.01)


def _check_stopped(result, sig, folder: Path | None = None, lines: int | None = 1) -> None:
    code, word = CODES[sig]
    result.check(code, word, lines=lines)
    assert result.seconds < 60
    if folder is not None and folder.exists():
        leftovers = [p.name for p in folder.rglob(".*")]
        assert not leftovers, f"temporary files left: {leftovers}"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_torch_loads_is_an_interrupt_not_a_traceback(realesr, tmp_path, weights, sig):
    image = tiny_image(tmp_path / "in.png")
    before = snapshot(tmp_path)
    proc = realesr.start("upscale", image, "-m", weights, "-o", tmp_path / "out")
    time.sleep(1.0)  # realesr's main has started; the sub-command is importing torch and loading the model
    if proc.proc.poll() is not None:
        pytest.skip("the command finished within a second: nothing to interrupt on this machine")
    proc.signal(sig)
    _check_stopped(proc.finish(30), sig)
    assert_unchanged(tmp_path, before, allow=["out"])


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_work_stops_it_within_seconds_leaving_no_temporary_file(realesr, tmp_path, weights, sig):
    image = _big_image(tmp_path / "big.png")
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    proc = realesr.start("upscale", image, "-m", weights, "-o", out, "--tile", "32", "--no-progress")
    _wait_for(out.is_dir, proc)  # the plan is made and checked; the tiles are being upscaled
    time.sleep(0.2)
    proc.signal(sig)
    sent = time.monotonic()
    result = proc.finish(30)
    assert time.monotonic() - sent < 10
    _check_stopped(result, sig, out)
    assert_unchanged(tmp_path, before, allow=["out"])


def test_ctrl_c_twice_ends_it_at_once_with_130(realesr, tmp_path, weights):
    image = _big_image(tmp_path / "big.png")
    out = tmp_path / "out"
    proc = realesr.start("upscale", image, "-m", weights, "-o", out, "--tile", "32", "--no-progress")
    _wait_for(out.is_dir, proc)
    proc.signal(signal.SIGINT)
    time.sleep(0.01)
    if proc.proc.poll() is None:
        proc.signal(signal.SIGINT)
    result = proc.finish(30)
    assert result.code == 130 and "Traceback" not in result.err, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["degrade", "prepare"])
def test_sigterm_ends_the_other_commands_too(realesr, tmp_path, command):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        _big_image(folder / f"{i}.png", side=768)
    before = snapshot(folder)
    out = tmp_path / "out"
    argv = {
        "degrade": ["degrade", folder, "-o", out, "--crop", "0", "--per-image", "4"],
        "prepare": ["prepare", folder, out, "--crop", "16", "--step", "8"],
    }[command]
    proc = realesr.start(*argv)
    _wait_for(lambda: out.is_dir() and any(out.rglob("*.png")), proc)
    proc.signal(signal.SIGTERM)
    _check_stopped(proc.finish(30), signal.SIGTERM, out)
    assert_unchanged(folder, before)


@pytest.mark.slow
def test_sigterm_under_ray_exits_143(realesr, tmp_path, weights):
    """Issue 18 class 11: ray.init installs its own SIGTERM handler; realesr takes the rule back after it."""
    pytest.importorskip("ray")
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(200):
        tiny_image(folder / f"{i:03d}.png", size=48, seed=i)
    before = snapshot(folder)
    out = tmp_path / "out"
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_num_cpus": "2"}
    proc = realesr.start("upscale", folder, "-m", weights, "-o", out, "--ray", "--no-progress", env=env)
    _wait_for(lambda: out.is_dir() and any(p.name.endswith("_out.png") for p in out.iterdir()), proc, 240)
    proc.signal(signal.SIGTERM)
    result = proc.finish(60)
    # (Ray's C++ core prints its own notices to stderr, token authentication and actor restarts, which no
    # setting of ray.init silences: not counted.)
    _check_stopped(result, signal.SIGTERM, out, lines=None)
    assert_unchanged(folder, before)
