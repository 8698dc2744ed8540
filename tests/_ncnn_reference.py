"""A small, independent interpreter of ncnn graphs, written from ncnn's layer semantics.

It executes a .param/.bin pair as the graph says (blobs wired by name, weights read in layer
order), without realesr's mapping onto state-dict keys; tests compare it with the network that
realesr builds from the same files, so a convolution mapped onto the wrong key shows up as a
different output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F


def _value(text: str):
    try:
        return int(text)
    except ValueError:
        return float(text)


def _layers(param: Path):
    lines = [ln.split() for ln in param.read_text().splitlines() if ln.strip()]
    assert lines[0] == ["7767517"]
    for fields in lines[2:]:
        n_in, n_out = int(fields[2]), int(fields[3])
        ins, outs = fields[4 : 4 + n_in], fields[4 + n_in : 4 + n_in + n_out]
        params = {}
        for item in fields[4 + n_in + n_out :]:
            key, value = item.split("=")
            key = int(key)
            if key <= -23300:
                values = value.split(",")
                params[-23300 - key] = [_value(v) for v in values[1:]]
            else:
                params[key] = _value(value)
        yield fields[0], ins, outs, params


def run_ncnn(param: Path, x: torch.Tensor) -> torch.Tensor:
    """Run the ncnn model on x [1, C, H, W] (float32), returning the blob named ``output``."""
    data = Path(param).with_suffix(".bin").read_bytes()
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    blobs: dict[str, torch.Tensor] = {}
    for ltype, ins, outs, p in _layers(Path(param)):
        args = [blobs.pop(name) for name in ins]  # ncnn: every blob is read exactly once
        if ltype == "Input":
            y = x
        elif ltype == "Split":
            for name in outs:
                blobs[name] = args[0]
            continue
        elif ltype == "Convolution":
            out_ch, k, size = p[0], p[1], p[6]
            tag = int.from_bytes(take(4), "little")
            if tag == 0x01306B47:
                w = np.frombuffer(take(2 * size + (2 * size) % 4)[: 2 * size], "<f2").astype(np.float32)
            else:
                assert tag == 0
                w = np.frombuffer(take(4 * size), "<f4")
            w = torch.from_numpy(w.copy()).reshape(out_ch, -1, k, k)
            b = torch.from_numpy(np.frombuffer(take(4 * out_ch), "<f4").copy()) if p.get(5) else None
            y = F.conv2d(args[0], w, b, padding=p.get(4, 0))
            if p.get(9) == 1:
                y = F.relu(y)
            elif p.get(9) == 2:
                y = F.leaky_relu(y, p[10][0])
        elif ltype == "PReLU":
            slope = torch.from_numpy(np.frombuffer(take(4 * p[0]), "<f4").copy())
            y = F.prelu(args[0], slope)
        elif ltype == "ReLU":
            y = F.leaky_relu(args[0], p.get(0, 0.0))
        elif ltype == "Concat":
            y = torch.cat(args, dim=1)
        elif ltype == "Eltwise":
            assert p[0] == 1  # SUM
            coeffs = p.get(1, [1.0] * len(args))
            y = sum(c * a for c, a in zip(coeffs, args))
        elif ltype == "BinaryOp":
            assert p.get(0, 0) == 0  # ADD
            y = args[0] + args[1]
        elif ltype == "Interp":
            mode = {1: "nearest", 2: "bilinear", 3: "bicubic"}[p[0]]
            h, w = args[0].shape[-2:]
            size = (int(h * p[1]), int(w * p[2]))
            y = F.interpolate(args[0], size=size, mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
        elif ltype == "PixelShuffle":
            y = F.pixel_shuffle(args[0], p[0])
        elif ltype == "Reorg":
            assert p.get(1, 0) == 0
            y = F.pixel_unshuffle(args[0], p[0])
        else:
            raise NotImplementedError(ltype)
        blobs[outs[0]] = y
    assert pos == len(data), "weights left over"
    return blobs["output"]
