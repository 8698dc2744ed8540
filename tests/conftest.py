from pathlib import Path

import pytest
import torch

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
    """One torch thread for the test: small tensors gain nothing from worker threads, and on a busy 2-core
    machine their contention costs more than the work itself."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
