"""Multi-node training launch, on one node: torchrun with the rendezvous arguments a cluster uses (c10d backend,
an endpoint, a job id) starts two processes of `python -m realesr train` that train as one job."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
FAST_VGG = "loss.perceptual.layer_weights={conv1_2: 0.1, conv2_2: 0.1}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_c10d_rendezvous_two_processes(tmp_path, shared_data):
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc-per-node=2",
        "--node-rank=0",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--rdzv-id=realesr-test",
        "--max-restarts=0",
        "-m",
        "realesr",
        "train",
        str(SMOKE),
        "--no-progress",
        "--no-download",
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        f"data.train={shared_data / 'train' / 'photos'}",
        "--set",
        "val.folder=",
        "--set",
        "total_iters=2",
        "--set",
        "save_every=2",
        "--set",
        FAST_VGG,
        "--set",
        "runtime.dist_backend=gloo",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (tmp_path / "smoke" / "train.log").read_text()
    assert "2 process(es)" in log
    state = torch.load(tmp_path / "smoke" / "checkpoints" / "iter_00000002" / "state.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    weights = load_file(str(tmp_path / "smoke" / "checkpoints" / "iter_00000002" / "net_g.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
