"""The exit-code rule of the CLI (realesr.cli.main), for every sub-command: 0 ok, 1 an input failed, 2 usage,
130 Ctrl-C, 143 SIGTERM; one line on stderr, never a traceback. And SIGTERM in the middle of a real batch."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr.cli import COMMANDS, Terminated, main
from realesr.errors import ImageReadError, ModelNotFoundError, RealesrError, UsageError

ROOT = Path(__file__).resolve().parents[1]


def _raiser(exc: BaseException):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UsageError("bad option value"), 2),
        (ModelNotFoundError("no such model"), 2),
        (ImageReadError("x.png: broken"), 1),
        (RealesrError("some input failed"), 1),
        (OSError(28, "No space left on device"), 1),
        (KeyboardInterrupt(), 130),
        (Terminated(), 143),
    ],
)
def test_every_command_maps_errors_to_one_line_and_its_exit_code(monkeypatch, capsys, command, exc, code):
    module = importlib.import_module(f"realesr.cli.{command}")
    monkeypatch.setattr(module, "run", _raiser(exc))
    argv = {
        "upscale": ["upscale", "x.png"],
        "degrade": ["degrade", "x.png", "-o", "out"],
        "eval": ["eval", "-m", "bicubic", "--data", "d"],
        "train": ["train", "c.yaml"],
        "convert": ["convert", "a.pth", "b.safetensors"],
        "models": ["models"],
        "serve": ["serve"],
        "prepare": ["prepare", "hr", "out"],
        "runs": ["runs"],
    }[command]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_a_bad_option_with_2(capsys, command):
    assert main([command, "--no-such-option-anywhere"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err or "required" in err or "error:" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["upscale", "{tmp}/missing.png"], 1, "no such file"),
        (["upscale", "{tmp}/in.png", "-m", "no-such-model-name"], 2, "neither a model name"),
        (["upscale", "{tmp}/in.png", "--tile", "5"], 2, "--tile"),
        (["upscale", "{tmp}/in.png", "-o", "{tmp}", "--suffix", ""], 2, "would overwrite the input"),
        (["degrade", "{tmp}/missing.png", "-o", "{tmp}/out"], 1, "no such file"),
        (["degrade", "{tmp}/in.png", "-o", "{tmp}/out", "--device", "cuda:7"], 2, "--device"),
        (["degrade", "{tmp}/in.png", "-o", "{tmp}", "--per-image", "0"], 2, "--per-image"),
        (["eval", "-m", "bicubic", "--data", "{tmp}/missing"], 2, "--data"),
        (["eval", "-m", "bicubic", "--data", "{tmp}", "-o", "{tmp}/in.png"], 2, "would overwrite the input"),
        (["train", "{tmp}/missing.yaml"], 2, "missing.yaml"),
        (["convert", "{tmp}/missing.pth", "{tmp}/out.safetensors"], 2, "missing.pth"),
        (["models", "--cache-dir-that-does-not-exist"], 2, "unrecognized"),
    ],
)
def test_real_failures_of_each_command(tmp_path, capsys, argv, code, fragment):
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tmp_path / "in.png")
    before = (tmp_path / "in.png").read_bytes()
    assert main([a.format(tmp=tmp_path) for a in argv]) == code
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err, err
    assert (tmp_path / "in.png").read_bytes() == before


@pytest.mark.slow
def test_sigterm_mid_batch_leaves_finished_outputs_and_no_temporary_file(tmp_path):
    from realesr.archs import SRVGGNetCompact
    from realesr.weights import save_model

    save_model(SRVGGNetCompact(num_feat=16, num_conv=4, upscale=4), tmp_path / "m.safetensors")
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "realesr",
            "upscale",
            str(folder),
            "-o",
            str(out),
            "-m",
            str(tmp_path / "m.safetensors"),
            "--device",
            "cpu",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(p.suffix == ".png" for p in out.iterdir()):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the batch ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()
    assert b"terminated" in err and b"Traceback" not in err
    names = sorted(p.name for p in out.iterdir())
    assert names and len(names) < 40
    assert all(n.endswith("_out.png") and not n.startswith(".") for n in names), names  # no temporary file
    for name in names:  # every finished output is whole
        with Image.open(out / name) as im:
            im.load()
            assert im.size == (640, 640)


@pytest.fixture()
def tiny_weights(tmp_path):
    from realesr.archs import SRVGGNetCompact
    from realesr.weights import save_model

    path = tmp_path / "tiny.safetensors"
    save_model(SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4), path)
    return path


@pytest.mark.parametrize("command", ["upscale", "convert"])
def test_a_model_that_is_a_folder_or_an_image_is_a_usage_error(tmp_path, capsys, command):
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tmp_path / "in.png")
    (tmp_path / "folder").mkdir()
    for model, fragment in [(tmp_path / "folder", "is a folder"), (tmp_path / "in.png", "not a weights file")]:
        argv = (
            ["upscale", str(tmp_path / "in.png"), "-m", str(model), "-o", str(tmp_path / "out")]
            if command == "upscale"
            else ["convert", str(model), str(tmp_path / "o.safetensors")]
        )
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert fragment in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "o.safetensors").exists()


def test_denoise_strength_with_another_model_is_a_usage_error(tmp_path, capsys, tiny_weights):
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tmp_path / "in.png")
    argv = [
        "upscale",
        str(tmp_path / "in.png"),
        "-m",
        str(tiny_weights),
        "-o",
        str(tmp_path / "out"),
        "--denoise-strength",
        "0.5",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "realesr-general-x4v3 only" in err and "--denoise-strength" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    assert main(["convert", str(tiny_weights), str(tmp_path / "o.param"), "--denoise-strength", "0.5"]) == 2
    assert "realesr-general-x4v3 only" in capsys.readouterr().err


@pytest.mark.parametrize("crop", [32, 2**16])  # 2**16: the largest crop the option takes (beyond: usage error)
def test_degrade_crop_larger_than_an_image_fails_that_file_from_its_header(tmp_path, capsys, crop):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    out = tmp_path / "out"
    code = main(
        [
            "degrade",
            str(tmp_path / "small.png"),
            str(tmp_path / "big.png"),
            "--crop",
            str(crop),
            "--scale",
            "2",
            "-o",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "MemoryError" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    if crop == 32:  # the small image fails in one line naming its size, the big one is degraded
        assert len(lines) == 1 and "small.png" in lines[0] and "24x16" in lines[0] and "--crop" in lines[0]
        assert sorted(p.name for p in out.iterdir()) == ["big_0_gt.png", "big_0_lr.png"]
        with Image.open(out / "big_0_gt.png") as im:
            assert im.size == (32, 32)
    else:  # both fail before any work, each in its line
        assert len(lines) == 2 and all("smaller than the crop" in ln for ln in lines)
        assert not out.exists() or not any(out.iterdir())
