import os
from pathlib import Path

import pytest
import torch

# precision="auto" runs bf16 on CPUs with native bf16 (AMX, AVX512-BF16): the tests' expected values are fp32
# facts, so the suite runs as on a CPU without it (also in subprocesses), the same on every machine;
# tests/test_precision.py sets it per test to check both cases. REALESR_NATIVE_BF16=1 pytest ... runs it the other way.
os.environ.setdefault("REALESR_NATIVE_BF16", "0")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"../shared/data not found beside the repository ({DATA})")
    return DATA


@pytest.fixture
def single_torch_thread():
    """One torch thread for the test: tiny networks and small tensors gain nothing from worker threads, and on a
    busy 2-core machine idle-spinning OpenMP workers make each small convolution wait for a time slice
    (measured: 3x slower tests at load 8). Test modules opt in with
    ``pytestmark = pytest.mark.usefixtures("single_torch_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
