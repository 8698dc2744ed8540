"""Issue 18 class 5: numbers and strings out of range. Every number a user gives (an option of any sub-command, a key
of a training config or its degradation section) has a range and is finite; every name is usable as a file name.
A bad one is exit 2 with one message naming the option or key, before anything is written.

The examples of the issue and their siblings are listed cases; Hypothesis then walks the option and config schema
itself (every numeric option of every parser, every key of the training config, every degradation key), so an
option or key added later without a range is found here. Bounded: few examples per property, no deadline."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realesr.cli import build_parser, main
from realesr.errors import ConfigError
from realesr.schema import INT_LIMIT, SEED

from .harness import assert_unchanged, snapshot, tiny_image

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"
# no example database: a test run writes nothing into the checkout
FEW = settings(
    max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _train(*sets: str) -> list[str]:
    argv = ["train", str(SMOKE), "--dry-run", "--set", "data.train=nowhere"]
    for item in sets:
        argv += ["--set", item]
    return argv


# argv -> what the one error line must name
CASES = {
    "degrade-seed-negative": (["degrade", "a.png", "-o", "out", "--seed", "-1"], "--seed"),
    "degrade-seed-2**70": (["degrade", "a.png", "-o", "out", "--seed", str(2**70)], "--seed"),
    "degrade-per-image-0": (["degrade", "a.png", "-o", "out", "--per-image", "0"], "--per-image"),
    "degrade-crop-negative": (["degrade", "a.png", "-o", "out", "--crop", "-8"], "--crop"),
    "eval-seed-negative": (["eval", "-m", "bicubic", "--data", "a.png", "--seed", "-1"], "--seed"),
    "eval-seed-2**70": (["eval", "-m", "bicubic", "--data", "a.png", "--seed", str(2**70)], "--seed"),
    "eval-figure-crop-negative": (["eval", "-m", "bicubic", "--data", "a.png", "--figure-crop", "-1"], "--figure-crop"),
    "eval-crop-border-negative": (["eval", "-m", "bicubic", "--data", "a.png", "--crop-border", "-1"], "--crop-border"),
    "eval-limit-negative": (["eval", "-m", "bicubic", "--data", "a.png", "--limit", "-1"], "--limit"),
    "eval-tile-huge": (["eval", "-m", "bicubic", "--data", "a.png", "--tile", str(2**70)], "--tile"),
    "prepare-crop-0": (["prepare", "hr", "out", "--crop", "0"], "--crop"),
    "prepare-step-0": (["prepare", "hr", "out", "--step", "0"], "--step"),
    "prepare-thresh-negative": (["prepare", "hr", "out", "--thresh", "-1"], "--thresh"),
    "convert-denoise-nan": (["convert", "a.pth", "b.safetensors", "--denoise-strength", "nan"], "--denoise-strength"),
    "upscale-start-inf": (["upscale", "a.mp4", "--start", "inf"], "--start"),
    "upscale-end-huge": (["upscale", "a.mp4", "--end", "1e400"], "--end"),
    "upscale-crf-64": (["upscale", "a.mp4", "--crf", "64"], "--crf"),
    "upscale-tile-pad-2**70": (["upscale", "a.png", "--tile-pad", str(2**70)], "--tile-pad"),
    "train-seed-negative": (_train("seed=-1"), "'seed'"),
    "train-seed-2**70": (_train(f"seed={2**70}"), "'seed'"),
    "train-val-seed": (_train("val.seed=-3"), "'val.seed'"),
    "train-val-max-size-1": (_train("val.max_size=1"), "'val.max_size'"),
    "train-lr-inf": (_train("optim.lr_g=.inf"), "'optim.lr_g'"),
    "train-lr-nan": (_train("optim.lr_d=.nan"), "'optim.lr_d'"),
    "train-beta-inf": (_train("optim.betas=[0.9, .inf]"), "'optim.betas[1]'"),
    "train-batch-2**70": (_train(f"batch_size={2**70}"), "'batch_size'"),
    "train-total-1e300": (_train("total_iters=1e300"), "'total_iters'"),
    "train-gt-size-huge": (_train("data.gt_size=1000000"), "'data.gt_size'"),
    "train-label-2": (_train("loss.gan.real_label=2"), "'loss.gan.real_label'"),
    "train-layer-weight-inf": (_train("loss.perceptual.layer_weights.conv1_2=.inf"), "layer_weights.conv1_2'"),
    "train-source-weight-inf": (_train("data.train=[{path: a, weight: .inf}]"), "'data.train[0].weight'"),
    "train-milestone-0": (_train("optim.milestones=[0, 5]"), "'optim.milestones[0]'"),
    "train-name-slash": (_train("name=a/b"), "'name'"),
    "train-name-dotdot": (_train("name=.."), "'name'"),
    "train-name-too-long": (_train("name=" + "n" * 250), "'name'"),
    "train-name-control": (_train('name="a\\x1bb"'), "'name'"),
    "train-val-set-name-slash": (_train("val.sets=[{path: x, name: a/b}]"), "'val.sets[0].name'"),
    "train-noise-inf": (_train("data.degradation.noise_range=[1, .inf]"), "'data.degradation.noise_range'"),
    "train-kernel-huge": (_train("data.degradation.blur_kernel_size=100001"), "'data.degradation.blur_kernel_size'"),
    "train-resize-huge": (_train("data.degradation.resize_range=[0.5, 1e9]"), "'data.degradation.resize_range'"),
    "train-sinc-limit-text": (
        _train("data.degradation.sinc_small_kernel_limit=x"),
        "'data.degradation.sinc_small_kernel_limit'",
    ),
    "train-degradation-typo": (_train("data.degradation.noise_rnge=[1, 2]"), "did you mean 'noise_range'"),
    "train-device-index-text": (_train("runtime.device=cuda:x"), "'runtime.device'"),
    "train-pool-huge": (_train("data.pool_size=1048576", "batch_size=1"), "'data.pool_size'"),
    "train-workers-huge": (_train("data.num_workers=100000"), "'data.num_workers'"),
    "train-max-size-vs-border": (_train("val.max_size=8", "val.crop_border=4"), "'val.max_size'"),
    "train-max-size-rounded-down": (_train("val.max_size=9", "val.crop_border=4"), "'val.max_size'"),
    "train-gt-size-under-vgg": (
        _train("stage=esrgan", "scale=8", "data.gt_size=8", "data.load_size=8"),
        "'data.gt_size'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_number_or_name_out_of_range_is_exit_2_naming_it(tmp_path, capsys, monkeypatch, case):
    argv, named = CASES[case]
    monkeypatch.chdir(tmp_path)
    tiny_image(tmp_path / "a.png")
    before = snapshot(tmp_path)
    assert main(argv) == 2, case
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and named in errors[0], err
    assert "Traceback" not in err and not out
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("name", "a\\0b"),  # a NUL cannot reach argv: it comes from the config file
        ("output_dir", "runs\\0x"),
        ("data.train", "photos\\0"),
        ("init_from", "model\\0.pth"),
    ],
)
def test_a_nul_byte_in_a_config_name_or_path_is_refused(tmp_path, capsys, key, text):
    *parents, leaf = key.split(".")
    body = "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents)) + f'{"  " * len(parents)}{leaf}: "{text}"\n'
    config = tmp_path / "c.yaml"
    config.write_text(("data:\n  train: x\n" if key != "data.train" else "") + body)
    before = snapshot(tmp_path)
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"'{key}'" in err and "NUL" in err and len(err.strip().splitlines()) == 1
    assert_unchanged(tmp_path, before)


def test_the_issues_cases_through_the_real_entry_point(realesr, tmp_path):
    """The issue's own examples, each as its own process: exit 2, one line, no traceback, nothing written."""
    tiny_image(tmp_path / "a.png")
    bad_name = tmp_path / "n.yaml"
    bad_name.write_text('name: "run\\0"\ndata:\n  train: x\n')
    before = snapshot(tmp_path)
    for argv, named in [
        (["degrade", tmp_path / "a.png", "-o", tmp_path / "o", "--seed", "-1"], "--seed"),
        (["eval", "-m", "bicubic", "--data", tmp_path / "a.png", "--figure-crop", "-1"], "--figure-crop"),
        (["train", bad_name], "'name'"),
    ]:
        realesr(*argv, timeout=60).check(2, named, lines=None)
    assert_unchanged(tmp_path, before)


# ------------------------------------------------------------------------------------ the option schema


@functools.cache
def _numeric_actions() -> list[tuple[str, argparse.Action]]:
    """(sub-command, action) for every option or argument of every parser whose value is converted by a type."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.type is not None and action.type not in (str, Path) and action.choices is None:
                found.append((name, action))
    return found


def test_no_option_takes_a_number_without_a_range():
    plain = [f"{cmd} {a.option_strings}" for cmd, a in _numeric_actions() if a.type in (int, float)]
    assert not plain, f"options converted by int/float alone (no range, inf and 2**70 pass): {plain}"
    assert len(_numeric_actions()) >= 20  # the walk sees the parsers' options at all


_NUMBER_TEXT = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["inf", "-inf", "nan", "1e400", "-0", "0x10", "1_000", " 7 ", "", "٣", "1e3"]),
    st.text(max_size=8),
)


@pytest.mark.slow
@FEW
@given(index=st.integers(min_value=0), text=_NUMBER_TEXT)
def test_every_numeric_option_gives_a_finite_bounded_value_or_a_usage_error(index, text):
    actions = _numeric_actions()
    command, action = actions[index % len(actions)]
    try:
        value = action.type(text)
    except (argparse.ArgumentTypeError, ValueError):
        return  # argparse turns both into "argument X: ..." and exit 2
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert math.isfinite(value) and abs(value) <= INT_LIMIT, (command, action.option_strings, text, value)


# ------------------------------------------------------------------------------------ the config schema


def _config_keys(cls: type = None, prefix: str = "") -> list[tuple[str, typing.Any]]:
    """(dotted key, annotation) of every leaf key of the training config."""
    from realesr.train.config import TrainConfig

    cls = cls or TrainConfig
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += _config_keys(tp, f"{prefix}{f.name}.")
        else:
            keys.append((f"{prefix}{f.name}", tp))
    return keys


_ANY_VALUE = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**32, 2**53 + 1, 0.5, 1e-300, True, None, "", "x", "a/b", "..", "a\x00b", [], {}]),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3),
    st.text(max_size=6),
)


def _finite_everywhere(value: typing.Any, where: str) -> None:
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _finite_everywhere(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _finite_everywhere(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite_everywhere(v, f"{where}[{i}]")
    elif isinstance(value, float):
        assert math.isfinite(value), where
    elif isinstance(value, int) and not isinstance(value, bool):
        assert abs(value) <= INT_LIMIT, where
    elif isinstance(value, str):
        assert "\x00" not in value, where


@FEW
@given(index=st.integers(min_value=0), value=_ANY_VALUE)
def test_every_config_key_takes_a_value_in_range_or_names_itself(index, value):
    from realesr.train.config import config_from_dict

    keys = _config_keys()
    key, _ = keys[index % len(keys)]
    raw: dict = {"data": {"train": "x"}}
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    try:
        cfg = config_from_dict(raw)
    except ConfigError as err:
        assert err.key and f"'{err.key}'" in str(err) or err.key in str(err), str(err)
        assert err.exit_code == 2 and "\n" not in str(err)
        return
    _finite_everywhere(cfg, "config")
    assert 0 <= cfg.seed < 2**32 and 0 <= cfg.val.seed < 2**32
    assert cfg.val.max_size == 0 or cfg.val.max_size >= cfg.scale


# ------------------------------------------------------------------------------------ the degradation keys


def _degradation_value(key: str):
    from realesr.degrade.config import DegradationConfig

    default = DegradationConfig().to_dict()[key]
    if isinstance(default, list) and default and isinstance(default[0], str):
        return st.one_of(st.just(default[:1]), st.lists(st.sampled_from([*default, "bogus"]), max_size=3))
    number = st.one_of(
        st.floats(min_value=-5, max_value=40),
        st.integers(min_value=-3, max_value=40),
        st.sampled_from([math.inf, math.nan, 1e9, 1e-9, 0, 255, 257]),
    )
    if isinstance(default, list):
        return st.lists(number, min_size=max(0, len(default) - 1), max_size=len(default) + 1)
    return number if not isinstance(default, str) else st.sampled_from([default, "bogus", ""])


LINKED = {
    "kernel_list": ("kernel_prob",),
    "kernel_list2": ("kernel_prob2",),
    "blur_kernel_size": ("kernel_size_range",),
    "blur_kernel_size2": ("kernel_size_range",),
}
LINKED = {key: LINKED.get(key, ()) for key in __import__("realesr.degrade.config").degrade.config.FLAT_KEYS}


@settings(max_examples=150, deadline=None, database=None)
@given(data=st.data())
def test_every_degradation_value_accepted_runs_the_chain_on_a_small_image(data):
    """A value the schema takes must work: the whole chain on a 32 x 32 image gives a finite LR of the right size;
    a value it refuses is one ConfigError naming the key."""
    from realesr.degrade import DegradationConfig, degrade, sample_degradation_params
    from realesr.degrade.config import FLAT_KEYS
    from realesr.train.synth import degradation_config

    key = data.draw(st.sampled_from(sorted(FLAT_KEYS)))
    value = data.draw(_degradation_value(key))
    try:
        cfg = degradation_config(4, {key: value})
    except ConfigError as err:
        # the key itself, or the one it must agree with (kernel_list and kernel_prob, a blur size and the range)
        assert err.key.startswith("data.degradation.") and f"'{err.key}'" in str(err), str(err)
        assert err.key == f"data.degradation.{key}" or err.key.rpartition(".")[2] in LINKED[key], str(err)
        return
    assert isinstance(cfg, DegradationConfig)
    params = sample_degradation_params(cfg, np.random.default_rng(data.draw(st.integers(0, SEED.high))))
    batch = {k: v[None] for k, v in params.items()}
    gt = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    lq = degrade(gt, batch, cfg, 4, generator=torch.Generator().manual_seed(1))
    assert lq.shape == (1, 3, 8, 8) and torch.isfinite(lq).all()


@pytest.mark.slow
def test_a_validation_folder_too_small_to_score_is_named_before_anything_is_written(tmp_path, capsys, shared_data):
    """Images that leave no pixel once val.crop_border is cut were a ZeroDivisionError after the run folder was
    written; now each is skipped with a warning and an empty set is the key's error, exit 2, nothing written."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    for i in range(2):
        tiny_image(tiny / f"{i}.png", size=8, seed=i)
    before = snapshot(tmp_path)
    argv = ["train", str(SMOKE), "--no-progress"]
    for item in [
        f"data.train={shared_data / 'train' / 'photos'}",
        f"val.folder={tiny}",
        "stage=esrnet",
        f"output_dir={tmp_path / 'runs'}",
    ]:
        argv += ["--set", item]
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "'val.folder'" in errors[0] and "Traceback" not in err
    assert "skipped" in err  # each image said why
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize(
    ("variable", "value"), [("LOCAL_RANK", "x"), ("LOCAL_RANK", "-1"), ("WORLD_SIZE", "-5"), ("WORLD_SIZE", "1e9")]
)
def test_torchruns_environment_numbers_are_checked_and_named(tmp_path, capsys, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    argv = ["train", str(SMOKE), "--set", "data.train=x", "--set", f"output_dir={tmp_path / 'runs'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"${variable}" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
