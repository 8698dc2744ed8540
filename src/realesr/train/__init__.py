"""Two-stage Real-ESRGAN training (Real-ESRNet, then Real-ESRGAN): ``realesr train CONFIG.yaml``.

from realesr.train import load_config, train
cfg = load_config("configs/smoke.yaml", ["data.train=../shared/data/train/photos"])
result = train(cfg, resume="auto")
"""

from realesr.train.config import TrainConfig, config_from_dict, load_config, save_config
from realesr.train.loop import NonFiniteLossError, TrainResult, train

__all__ = [
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "config_from_dict",
    "load_config",
    "save_config",
    "train",
]
