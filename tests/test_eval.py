"""`realesr eval`: the benchmark protocol end to end on the shared test sets, outputs and error handling."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import realesr.cli as cli
from realesr.evaluate import EvalConfig, EvalModel, evaluate, find_dataset, format_table
from realesr.errors import ConfigError


@pytest.fixture
def run_cli(monkeypatch, capsys):
    # Only this command: the test must not depend on the other sub-commands being present.
    monkeypatch.setattr(cli, "COMMANDS", ("eval",))

    def run(*argv: str):
        code = cli.main(["eval", "-q", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_bicubic_set5_markdown_reproduces_published_figures(run_cli, shared_data):
    code, out, err = run_cli("-m", "bicubic", "--data", str(shared_data / "test" / "Set5"))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("| model | dataset | n | PSNR")
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:3] == ["bicubic", "Set5", "5"]
    assert float(cells[3]) == pytest.approx(28.431, abs=0.01)
    assert float(cells[4]) == pytest.approx(0.8113, abs=0.001)


def test_json_output_and_per_image_csv(run_cli, shared_data, tmp_path):
    per_image = tmp_path / "scores.csv"
    code, out, err = run_cli(
        "-m", "bicubic", "--data", str(shared_data / "test" / "Set5"), "--format", "json",
        "--per-image", str(per_image), "--metrics", "psnr,ssim,niqe",
    )
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 1
    row = rows[0]
    assert {"model", "dataset", "n", "psnr", "ssim", "niqe"} <= row.keys()
    assert (row["model"], row["dataset"], row["n"]) == ("bicubic", "Set5", 5)
    assert row["psnr"] == pytest.approx(28.431, abs=0.01)
    assert row["ssim"] == pytest.approx(0.8113, abs=0.001)
    assert np.isfinite(row["niqe"]) and row["niqe"] > 0
    with per_image.open() as handle:
        records = list(csv.DictReader(handle))
    assert sorted(r["image"] for r in records) == ["baby.png", "bird.png", "butterfly.png", "head.png", "woman.png"]
    assert np.mean([float(r["psnr"]) for r in records]) == pytest.approx(row["psnr"], abs=1e-5)


def test_csv_format(run_cli, shared_data):
    code, out, _ = run_cli("-m", "bicubic", "--data", str(shared_data / "test" / "Set5"), "--format", "csv", "--limit", "2")
    assert code == 0
    records = list(csv.DictReader(out.splitlines()))
    assert records[0]["model"] == "bicubic" and records[0]["n"] == "2" and records[0]["niqe"] == ""


@pytest.mark.parametrize("bad", ["missing_folder", "empty_folder", "not_a_list.bin"])
def test_bad_data_paths_give_one_line_error_and_exit_2(run_cli, tmp_path, bad):
    target = tmp_path / bad
    if bad == "empty_folder":
        target.mkdir()
    elif bad.endswith(".bin"):
        target.write_bytes(b"\0")
    code, out, err = run_cli("-m", "bicubic", "--data", str(target))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and str(target) in err and "Traceback" not in err


def test_txt_list_with_a_broken_entry_still_scores_the_rest(run_cli, shared_data, tmp_path):
    listing = tmp_path / "mini.txt"
    set5 = shared_data / "test" / "Set5"
    listing.write_text(f"# two good, one missing\n{set5 / 'bird.png'}\nnot_there.png\n\n{set5 / 'head.png'}\n")
    code, out, err = run_cli("-m", "bicubic", "--data", str(listing), "--format", "json")
    assert code == 1  # something failed: say so in the exit status
    assert "not_there.png" in err
    (row,) = json.loads(out)
    assert (row["dataset"], row["n"], row["failed"]) == ("mini", 2, 1)


def test_unavailable_model_is_reported_and_the_others_still_run(run_cli, shared_data, tmp_path):
    code, out, err = run_cli("-m", str(tmp_path / "nothing.pth"), "-m", "bicubic",
                             "--data", str(shared_data / "test" / "Set5"), "--limit", "1", "--no-download")
    assert code == 1
    assert "nothing.pth skipped" in err
    assert "| bicubic | Set5 | 1 |" in out


def test_option_errors_exit_2(run_cli, shared_data):
    set5 = str(shared_data / "test" / "Set5")
    assert run_cli("-m", "bicubic", "--data", set5, "--metrics", "psnr,lpips")[0] == 2
    assert run_cli("-m", "bicubic", "--data", set5, "--no-ref", "--metrics", "psnr")[0] == 2
    with pytest.raises(ConfigError):
        EvalConfig(scale=4, metrics=("niqe", "ssim"), protocol="no-ref")


def test_no_ref_niqe_figure_and_saved_images(run_cli, shared_data, tmp_path):
    figure, saved = tmp_path / "cmp.png", tmp_path / "out"
    code, out, err = run_cli("-m", "bicubic", "--data", str(shared_data / "real_lr" / "RealSRSet"), "--no-ref",
                             "--limit", "2", "--figure", str(figure), "--save-images", str(saved), "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["protocol"] == "no-ref" and row["n"] == 2 and row["psnr"] is None and np.isfinite(row["niqe"])
    outputs = sorted((saved / "RealSRSet" / "bicubic").glob("*.png"))
    assert len(outputs) == 2
    first_input = sorted((shared_data / "real_lr" / "RealSRSet").glob("*.png"))[0]
    w, h = Image.open(first_input).size
    assert Image.open(outputs[0]).size == (4 * w, 4 * h)
    with Image.open(figure) as img:
        assert img.width >= 2 * 160 and img.height >= 2 * 160  # two panels per row, two rows


class TorchBicubic(torch.nn.Module):
    """A stand-in network: PyTorch's bicubic (a = -0.75, no antialiasing), differs slightly from MATLAB's."""

    scale = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)


def module_model(net: torch.nn.Module, label: str) -> EvalModel:
    def upscale(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            y = net(x)[0].permute(1, 2, 0).numpy()
        return np.clip(np.round(y * 255), 0, 255).astype(np.uint8)

    return EvalModel(label=label, upscale=upscale, scale=getattr(net, "scale", None))


def test_protocol_with_modules_and_scale_mismatch(shared_data):
    dataset = find_dataset(shared_data / "test" / "Set5", limit=3)
    half = TorchBicubic()
    half.scale = 2
    problems = []
    result = evaluate(
        [module_model(TorchBicubic(), "torch-bicubic"), module_model(half, "x2-net")],
        [dataset],
        EvalConfig(scale=4),
        progress=False,
        on_problem=problems.append,
    )
    assert any("x2-net" in p and "x2" in p for p in problems)
    (row,) = result.rows
    assert row.model == "torch-bicubic" and row.n == 3 and row.failed == 0
    # Same images, same protocol: a different bicubic kernel lands within a few tenths of a dB of MATLAB's.
    matlab = evaluate([module_model_matlab()], [dataset], EvalConfig(scale=4), progress=False).rows[0]
    assert abs(row.psnr - matlab.psnr) < 0.5 and row.psnr != matlab.psnr
    assert "| torch-bicubic | Set5 | 3 |" in format_table(result.rows)


def module_model_matlab() -> EvalModel:
    from realesr.evaluate import bicubic_model

    return bicubic_model(4)
