"""Class 1 of issue 18: weights files that look like a known network but are not one. Every such file, whatever is
wrong with it, is one line naming the file and what is wrong, exit 2, nothing written; the same through every
command that takes weights (convert, upscale, eval)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from .harness import assert_unchanged, snapshot, tiny_image


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def srvgg(**override: torch.Tensor) -> dict[str, torch.Tensor]:
    """A valid 2x SRVGGNetCompact (4 features, no inner conv, ReLU) with some entries replaced."""
    sd = {"body.0.weight": r(4, 3, 3, 3), "body.0.bias": r(4), "body.2.weight": r(12, 4, 3, 3), "body.2.bias": r(12)}
    sd.update(override)
    return sd


# name -> (state dict, a word the message must hold)
SAFETENSORS = {
    "letters_as_index": ({**srvgg(), "body.x.weight": r(4)}, "SRVGGNetCompact"),
    "negative_index": ({**srvgg(), "body.-2.weight": r(4, 3, 3, 3)}, "body"),
    "zero_features": (srvgg(**{"body.0.weight": r(0, 3, 3, 3)}), "zero channels"),
    "zero_input_channels": (srvgg(**{"body.0.weight": r(4, 0, 3, 3)}), "zero channels"),
    "zero_output_channels": (srvgg(**{"body.2.weight": r(0, 4, 3, 3), "body.2.bias": r(0)}), "zero channels"),
    "scalar_conv": ({"body.0.weight": torch.tensor(1.0)}, "body"),
    "one_d_first_conv": (srvgg(**{"body.0.weight": r(4)}), "body"),
    "five_d_conv": (srvgg(**{"body.0.weight": r(4, 3, 3, 3, 1)}), "body"),
    "scale_ten": (srvgg(**{"body.2.weight": r(300, 4, 3, 3), "body.2.bias": r(300)}), "upscale"),
    "kernel_one": (srvgg(**{"body.0.weight": r(4, 3, 1, 1)}), "wrong shapes"),
    "integer_values": ({k: v.long() for k, v in srvgg().items()}, "int64"),
    "bool_values": ({k: v > 0 for k, v in srvgg().items()}, "bool"),
    "nan_values": (srvgg(**{"body.0.bias": torch.full((4,), float("nan"))}), "NaN"),
    "rrdb_one_d": ({"conv_first.weight": r(4), "conv_last.weight": r(3, 4, 3, 3)}, "RRDBNet"),
    "rrdb_zero": ({"conv_first.weight": r(0, 3, 3, 3), "conv_last.weight": r(3, 0, 3, 3)}, "zero channels"),
    "rrdb_scalar_last": ({"conv_first.weight": r(4, 3, 3, 3), "conv_last.weight": torch.tensor(3.0)}, "RRDBNet"),
    "rrdb_scalar_block": (
        {"conv_first.weight": r(4, 3, 3, 3), "conv_last.weight": r(3, 4, 3, 3), "body.0.rdb1.conv1.weight": r(1)[0]},
        "RRDBNet",
    ),
    "rrdb_no_blocks": ({"conv_first.weight": r(4, 3, 3, 3), "conv_last.weight": r(3, 4, 3, 3)}, "RRDBNet"),
}


def write_cases(folder: Path) -> dict[str, tuple[Path, str]]:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    cases = {}
    for name, (sd, word) in SAFETENSORS.items():
        save_file(sd, str(folder / f"{name}.safetensors"))
        cases[name] = (folder / f"{name}.safetensors", word)
    pickles = {
        "int_keys": ({1: r(3)}, "state dict"),
        "a_list": ([r(3)], "list"),
        "a_bare_tensor": (r(3), "Tensor"),
        "empty_params": ({"params": {}}, "state dict"),
        "mixed_values": ({"params_ema": {"body.0.weight": r(4, 3, 3, 3), "body.1": 5}}, "state dict"),
    }
    for name, (obj, word) in pickles.items():
        torch.save(obj, folder / f"{name}.pth")
        cases[name] = (folder / f"{name}.pth", word)
    raw = {
        "empty.pth": (b"", "PyTorch"),
        "empty.safetensors": (b"", "safetensors"),
        "junk_header.safetensors": (b"\x10" + b"\0" * 7 + b'{"a": 1, "b":[}    ', "safetensors"),
        "huge_header.safetensors": ((10**12).to_bytes(8, "little") + b"{}", "safetensors"),
    }
    for name, (data, word) in raw.items():
        (folder / name).write_bytes(data)
        cases[name] = (folder / name, word)
    # Valid tensors, metadata that contradicts them.
    meta = {"realesr": json.dumps({"arch": "SRVGGNetCompact", "kwargs": [1]})}
    save_file(srvgg(), str(folder / "altered_metadata.safetensors"), metadata=meta)
    cases["altered_metadata"] = (folder / "altered_metadata.safetensors", "metadata")
    return cases


@pytest.fixture(scope="module")
def bad_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_weights")
    return folder, write_cases(folder)


CASE_NAMES = list(SAFETENSORS) + ["int_keys", "a_list", "a_bare_tensor", "empty_params", "mixed_values"]
CASE_NAMES += ["empty.pth", "empty.safetensors", "junk_header.safetensors", "huge_header.safetensors"]
CASE_NAMES += ["altered_metadata"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_convert_names_the_file_and_what_is_wrong_exit_2(cli, bad_weights, tmp_path, case):
    folder, cases = bad_weights
    path, word = cases[case]
    tree = snapshot(folder)
    cli("convert", path, tmp_path / "out.safetensors").check(2, path.name, word)
    assert not (tmp_path / "out.safetensors").exists()
    assert_unchanged(folder, tree)


@pytest.mark.parametrize("case", ["letters_as_index", "zero_input_channels", "int_keys", "nan_values"])
def test_upscale_and_eval_refuse_them_the_same_way(cli, bad_weights, tmp_path, case):
    folder, cases = bad_weights
    path, word = cases[case]
    image = tiny_image(tmp_path / "in.png")
    tree = snapshot(tmp_path)
    cli("upscale", image, "-m", path, "-o", tmp_path / "out").check(2, path.name, word)
    # eval skips a model it cannot load (a line naming it and why), then finds none left: two lines.
    cli("eval", "-m", path, "--data", tmp_path, "-o", tmp_path / "report").check(2, path.name, word, lines=2)
    assert_unchanged(tmp_path, tree)


def test_a_bad_weights_file_in_a_real_process_is_one_line_exit_2(realesr, bad_weights, tmp_path):
    """The example of the issue, end to end: the SRVGG-like file whose keys are `body.x.weight`."""
    folder, cases = bad_weights
    path, _ = cases["letters_as_index"]
    image = tiny_image(tmp_path / "in.png")
    tree = snapshot(tmp_path)
    realesr("upscale", image, "-m", path, "-o", tmp_path / "out").check(2, path.name)
    assert_unchanged(tmp_path, tree)
