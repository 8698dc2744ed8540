"""Training config: YAML + --set overrides, validation messages that name the key, every shipped config loads."""

from pathlib import Path

import pytest
import yaml

from realesr.errors import ConfigError
from realesr.train.config import apply_overrides, config_from_dict, load_config, save_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_shipped_configs_exist_and_load():
    names = {p.name for p in CONFIGS}
    assert {
        "smoke.yaml",
        "esrnet_x4.yaml",
        "esrgan_x4.yaml",
        "esrnet_x2.yaml",
        "esrgan_x2.yaml",
        "esrnet_x8.yaml",
        "esrgan_x8.yaml",
        "compact_x4.yaml",
    } <= names
    for path in CONFIGS:
        cfg = load_config(path)
        assert cfg.total_iters >= 1 and cfg.optim.lr_g > 0, path


def test_official_recipe_defaults():
    # options/train_realesrnet_x4plus.yml and train_realesrgan_x4plus.yml of xinntao/Real-ESRGAN
    net = load_config(ROOT / "configs/esrnet_x4.yaml")
    assert (net.stage, net.scale, net.batch_size, net.data.gt_size, net.data.pool_size) == ("esrnet", 4, 12, 256, 180)
    assert net.optim.lr_g == 2e-4 and net.optim.betas == [0.9, 0.99] and net.total_iters == 1_000_000
    assert net.optim.ema_decay == 0.999 and net.loss.l1_gt_usm
    gan = load_config(ROOT / "configs/esrgan_x4.yaml")
    assert gan.optim.lr_g == 1e-4 and gan.optim.lr_d == 1e-4 and gan.total_iters == 400_000
    assert gan.loss.perceptual.layer_weights == {
        "conv1_2": 0.1,
        "conv2_2": 0.1,
        "conv3_4": 1.0,
        "conv4_4": 1.0,
        "conv5_4": 1.0,
    }
    assert (gan.loss.gan.type, gan.loss.gan.weight, gan.loss.pixel_weight) == ("vanilla", 0.1, 1.0)
    assert gan.loss.percep_gt_usm and not gan.loss.gan_gt_usm


def test_stage_defaults_fill_unset_values():
    cfg = config_from_dict({"stage": "esrgan", "data": {"train": "x"}})
    assert cfg.optim.lr_g == 1e-4 and cfg.total_iters == 400_000 and cfg.optim.milestones == [400_000]
    cfg = config_from_dict({"stage": "esrnet", "data": {"train": "x"}})
    assert cfg.optim.lr_g == 2e-4 and cfg.total_iters == 1_000_000


def test_overrides_dotted_keys_and_yaml_values():
    raw = {"data": {"train": "x"}}
    apply_overrides(
        raw, ["optim.lr_g=3e-4", "loss.gan.type=ragan", "scale=2", "optim.betas=[0.5, 0.9]", "new.deep.key=1"]
    )
    assert raw["optim"]["lr_g"] == "3e-4"  # PyYAML reads 3e-4 as a string; the typed config converts it
    assert raw["new"]["deep"]["key"] == 1
    del raw["new"]
    cfg = config_from_dict(raw)
    assert cfg.optim.lr_g == pytest.approx(3e-4) and cfg.loss.gan.type == "ragan" and cfg.scale == 2
    assert cfg.optim.betas == [0.5, 0.9]


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"scale": 3}, "scale"),
        ({"stage": "gan"}, "stage"),
        ({"optim": {"lr_g": "fast"}}, "optim.lr_g"),
        ({"optim": {"betas": [0.9]}}, "optim.betas"),
        ({"optim": {"ema_decay": 1.0}}, "optim.ema_decay"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 7}, "data.pool_size"),  # 180 is not a multiple of 7
        ({"data": {"gt_size": 30}}, "data.gt_size"),
        ({"data": {"small_images": "crop"}}, "data.small_images"),
        ({"loss": {"perceptual": {"layer_weights": {"conv6_1": 1.0}}}}, "loss.perceptual.layer_weights.conv6_1"),
        ({"loss": {"gan": {"type": "wgan"}}}, "loss.gan.type"),
        ({"runtime": {"precision": "fp8"}}, "runtime.precision"),
        ({"runtime": {"channels_last": "yes"}}, "runtime.channels_last"),
        ({"network": {"arch": "SwinIR"}}, "network.arch"),
        ({"optim": {"lrg": 1}}, "optim.lrg"),
        ({"data": "folder"}, "data"),
        ({"scale": "4x"}, "scale"),
        ({"network": {"act_type": "gelu"}}, "network.act_type"),
        ({"loss": {"perceptual": {"criterion": "l3"}}}, "loss.perceptual.criterion"),
        ({"runtime": {"dist_backend": "mpi"}}, "runtime.dist_backend"),
        ({"data": {"degradation": {"noise_range": [5, 1]}}}, "data.degradation.noise_range"),
        ({"data": {"degradation": {"noise_rang": [1, 5]}}}, "data.degradation.noise_rang"),
    ],
)
def test_validation_errors_name_the_key(raw, key):
    raw.setdefault("data", {})
    if isinstance(raw["data"], dict):
        raw["data"].setdefault("train", "x")
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert f"'{key}'" in str(err.value)
    assert err.value.key == key  # a field, not parsed from the message


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'optim.lr_g'"):
        config_from_dict({"data": {"train": "x"}, "optim": {"lrg": 1e-4}})


def test_missing_training_data_key():
    with pytest.raises(ConfigError, match="'data.train'"):
        config_from_dict({})


def test_bad_set_syntax_and_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["scale"])
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(ROOT / "configs/esrgan_x4.yaml", ["optim.grad_clip=0.5", "data.train=somewhere"])
    save_config(cfg, tmp_path / "config.yaml")
    raw = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert raw["optim"]["grad_clip"] == 0.5 and raw["optim"]["lr_g"] == 1e-4
    assert config_from_dict(raw) == cfg
