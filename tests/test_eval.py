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
from realesr.errors import ConfigError
from realesr.evaluate import EvalConfig, EvalModel, evaluate, find_dataset, format_table


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
        "-m",
        "bicubic",
        "--data",
        str(shared_data / "test" / "Set5"),
        "--format",
        "json",
        "--per-image",
        str(per_image),
        "--metrics",
        "psnr,ssim,niqe",
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
    code, out, _ = run_cli(
        "-m", "bicubic", "--data", str(shared_data / "test" / "Set5"), "--format", "csv", "--limit", "2"
    )
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


def test_a_single_image_is_a_dataset_of_one(run_cli, shared_data):
    code, out, _ = run_cli(
        "-m", "bicubic", "--data", str(shared_data / "test" / "Set5" / "bird.png"), "--format", "json"
    )
    assert code == 0
    (row,) = json.loads(out)
    assert (row["dataset"], row["n"]) == ("bird", 1)


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
    code, out, err = run_cli(
        "-m",
        str(tmp_path / "nothing.pth"),
        "-m",
        "bicubic",
        "--data",
        str(shared_data / "test" / "Set5"),
        "--limit",
        "1",
        "--no-download",
    )
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
    code, out, err = run_cli(
        "-m",
        "bicubic",
        "--data",
        str(shared_data / "real_lr" / "RealSRSet"),
        "--no-ref",
        "--limit",
        "2",
        "--figure",
        str(figure),
        "--save-images",
        str(saved),
        "--format",
        "json",
    )
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
        on_problem=problems.append,
    )
    assert any("x2-net" in p and "x2" in p for p in problems)
    (row,) = result.rows
    assert row.model == "torch-bicubic" and row.n == 3 and row.failed == 0
    # Same images, same protocol: a different bicubic kernel lands within a few tenths of a dB of MATLAB's.
    matlab = evaluate([module_model_matlab()], [dataset], EvalConfig(scale=4)).rows[0]
    assert abs(row.psnr - matlab.psnr) < 0.5 and row.psnr != matlab.psnr
    assert "| torch-bicubic | Set5 | 3 |" in format_table(result.rows)


def module_model_matlab() -> EvalModel:
    from realesr.evaluate import bicubic_model

    return bicubic_model(4)


def test_networks_given_as_modules_and_names(shared_data):
    from realesr.archs import SRVGGNetCompact
    from realesr.evaluate import load_eval_model

    torch.manual_seed(0)
    net = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4, act_type="prelu")
    model = load_eval_model(net, scale=4, device="cpu", tile=0, label="tiny")
    assert model.scale == 4
    dataset = find_dataset(shared_data / "test" / "Set5", limit=1)
    (row,) = evaluate([model], [dataset], EvalConfig(scale=4)).rows
    assert row.n == 1 and np.isfinite(row.psnr) and 0 < row.ssim < 1


def test_model_that_needs_a_download_is_skipped_with_a_clear_message(run_cli, shared_data):
    code, out, err = run_cli(
        "-m",
        "RealESRNet_x4plus",
        "-m",
        "bicubic",
        "--no-download",
        "--data",
        str(shared_data / "test" / "Set5"),
        "--limit",
        "1",
    )
    assert code == 1
    assert "model RealESRNet_x4plus skipped" in err and "download" in err
    assert "| bicubic | Set5 | 1 |" in out and "RealESRNet" not in out


def test_degrade_protocol_is_seeded_and_harder_than_bicubic(shared_data, tmp_path):
    from realesr.evaluate import bicubic_model

    listing = tmp_path / "one.txt"
    listing.write_text(str(shared_data / "test" / "Set5" / "butterfly.png") + "\n")
    dataset = find_dataset(listing)

    def run(protocol: str, seed: int = 0):
        config = EvalConfig(scale=4, protocol=protocol, seed=seed)
        return evaluate([bicubic_model(4)], [dataset], config).rows[0]

    first, again, other_seed = run("degrade"), run("degrade"), run("degrade", seed=1)
    assert first.psnr == again.psnr and first.ssim == again.ssim
    assert first.psnr != other_seed.psnr
    assert first.psnr < run("bicubic").psnr - 2  # blur, noise and JPEG cost bicubic several dB


def test_a_network_that_fails_on_one_image_does_not_stop_the_run(shared_data):
    dataset = find_dataset(shared_data / "test" / "Set5", limit=3)
    calls = []

    def flaky(lr: np.ndarray) -> np.ndarray:
        calls.append(lr.shape)
        if len(calls) == 2:
            raise RuntimeError("out of memory\nsecond line of a long torch message")
        return np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1)

    problems = []
    result = evaluate([EvalModel("flaky", flaky, 4)], [dataset], EvalConfig(scale=4), on_problem=problems.append)
    (row,) = result.rows
    assert (row.n, row.failed) == (2, 1)
    assert len(problems) == 1 and "RuntimeError: out of memory" in problems[0] and "\n" not in problems[0]


def test_written_files_are_atomic_and_get_normal_permissions(tmp_path):
    import os
    import stat

    from realesr.atomic import atomic_write_bytes

    target = tmp_path / "sub" / "table.md"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["table.md"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_images_are_read_as_the_protocol_reads_them(shared_data, tmp_path):
    from realesr.imagefiles import read_rgb as read_rgb_float
    from realesr.imagefiles import to_uint8

    def read_rgb(path):  # what the protocol reads: the one reader, rounded to 8 bits
        return to_uint8(read_rgb_float(path))

    bridge = shared_data / "test" / "Set14" / "bridge.png"  # stored as 8-bit greyscale (L)
    grey = np.asarray(Image.open(bridge))
    assert grey.ndim == 2
    rgb = read_rgb(bridge)
    assert rgb.shape == grey.shape + (3,) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[:, :, c], grey) for c in range(3))
    # 16-bit greyscale: scaled to 8 bits (65535 -> 255, 257 * k -> k), not clipped.
    wide = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert read_rgb(tmp_path / "wide.png")[0, :, 0].tolist() == [0, 100, 255]
    (tmp_path / "broken.png").write_bytes(b"not a png")
    from realesr.errors import ImageReadError

    with pytest.raises(ImageReadError, match="broken.png"):
        read_rgb(tmp_path / "broken.png")


def test_progress_is_a_callback_per_image_and_model_ending_at_the_total(shared_data, tmp_path, capsys):
    from realesr.evaluate import bicubic_model

    listing = tmp_path / "two.txt"
    listing.write_text("".join(f"{shared_data / 'test' / 'Set5' / n}\n" for n in ("bird.png", "baby.png")))
    dataset = find_dataset(listing)
    calls = []
    evaluate([bicubic_model(4)], [dataset], EvalConfig(scale=4), progress=lambda *a: calls.append(a))
    assert [c[:3] for c in calls] == [
        (dataset.name, 0, 2),
        (dataset.name, 0, 2),
        (dataset.name, 1, 2),
        (dataset.name, 1, 2),
        (dataset.name, 2, 2),
    ]
    assert calls[1][3].startswith("bird.png: ") and calls[3][3].startswith("baby.png: ")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # the library drew nothing
