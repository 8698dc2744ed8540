"""Weights: reading official and converted checkpoints, recognising their network, the model zoo.

::

    sd = load_state_dict(path)         # .pth/.pt (tensors only), .safetensors, ncnn .param/.bin
    spec = detect_arch(sd)             # ModelSpec from keys and shapes alone
    net = spec.build()
    loaded = load_model("RealESRGAN_x4plus")   # LoadedModel(net, spec, name, source)
    save_model(net, "model.safetensors")
"""

from realesr.weights.io import (
    WeightsFile,
    load_state_dict,
    load_strict,
    read_weights,
    save_model,
    save_state_dict,
    unwrap_state_dict,
)
from realesr.weights.ncnn import export_ncnn, read_ncnn
from realesr.weights.spec import ModelSpec, OutputResize, detect_arch, spec_of, state_dict_mismatch, traits_of
from realesr.weights.zoo import DEFAULT_MODEL, ZOO, LoadedModel, ZooEntry, cache_dir, find_model, load_model, read_model

__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "ModelSpec",
    "OutputResize",
    "WeightsFile",
    "ZOO",
    "ZooEntry",
    "cache_dir",
    "detect_arch",
    "export_ncnn",
    "find_model",
    "load_model",
    "load_state_dict",
    "load_strict",
    "read_model",
    "read_ncnn",
    "read_weights",
    "save_model",
    "save_state_dict",
    "spec_of",
    "state_dict_mismatch",
    "traits_of",
    "unwrap_state_dict",
]
