"""The optional OpenVINO backend: a tiny RRDBNet converted for any input size, against torch's fp32 output."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch

from realesr.archs import RRDBNet
from realesr.errors import RealesrError
from realesr.imagefiles import read_image
from realesr.infer import Upscaler, openvino_backend

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.mark.slow
def test_openvino_backend_matches_torch_on_a_real_photo(shared_data, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setenv("REALESR_NATIVE_BF16", "1")  # auto must not try to make a half copy of a compiled model
    torch.manual_seed(0)
    net = RRDBNet(num_block=1, num_feat=16, num_grow_ch=8, scale=4).eval()
    photo = read_image(shared_data / "real_lr/RealESRGAN_inputs/0014.jpg").array[40:70, 40:77]
    torch_fp32 = Upscaler(net, device="cpu", precision="fp32", tile=0)(photo).astype(int)
    exact = Upscaler(openvino_backend.OpenVinoNetwork(net, hint="f32", threads=1), device="cpu", tile=16)
    assert exact.precision == "fp32"
    assert np.abs(exact(photo).astype(int) - torch_fp32).max() <= 1  # tiles of another size: any shape runs
    bf16 = Upscaler(openvino_backend.OpenVinoNetwork(net, hint="bf16", threads=1), device="cpu", tile=0)
    diff = np.abs(bf16(photo).astype(int) - torch_fp32)
    assert diff.shape == (120, 148, 3) and diff.mean() < 1.0


def test_openvino_missing_is_one_line(monkeypatch):
    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino":
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(RealesrError, match=r"pip install 'realesr\[openvino\]'"):
        openvino_backend.OpenVinoNetwork(RRDBNet(num_block=1, num_feat=8, num_grow_ch=4, scale=4))
