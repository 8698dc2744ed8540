"""The shared argparse number types (realesr.cli._options.number): bounds, finiteness, and argparse's exit 2."""

from __future__ import annotations

import argparse

import pytest

from realesr.cli import main
from realesr.cli._options import number


@pytest.mark.parametrize(
    ("kind", "bounds", "good", "bad"),
    [
        # unbounded above is still bounded: 1e300 would become a size or a count (issue 18 class 5)
        (float, {"above": 0}, ["1e-9", "4", "1e15"], ["0", "-1", "inf", "nan", "x", "1e300"]),
        (int, {"low": 0}, ["0", "7"], ["-1", "1.5", "x"]),
        (int, {"low": 1, "high": 100}, ["1", "100"], ["0", "101"]),
        (float, {"low": 0, "high": 1}, ["0", "0.5", "1"], ["-0.1", "1.01", "inf"]),
    ],
)
def test_number_accepts_its_range_only(kind, bounds, good, bad):
    parse = number(kind, **bounds)
    for text in good:
        assert parse(text) == kind(text) and type(parse(text)) is kind
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["upscale", "x.png", "--quality", "0"],
        ["upscale", "x.png", "-s", "inf"],
        ["upscale", "x.png", "--batch", "0"],
        ["serve", "--port", "65536"],
        ["serve", "--max-jobs", "0"],
    ],
)
def test_every_command_refuses_a_bad_number_with_2(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"argument {argv[-2]}" in err and "must be" in err and "Traceback" not in err


def test_the_denoise_help_names_the_zoos_denoise_models():
    """The CLI's help (kept free of torch for start-up) and the zoo say the same: which model has a denoise
    strength and which one it is blended with."""
    from realesr.cli._options import DENOISE_HELP
    from realesr.weights.zoo import ZOO, denoise_models

    names = denoise_models()
    assert names == ["realesr-general-x4v3"]
    assert all(name in DENOISE_HELP and str(ZOO[name].denoise_with) in DENOISE_HELP for name in names)
