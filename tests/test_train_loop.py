"""The training loop on the CPU with tiny networks: the smoke config, overfitting, exact resume, the non-finite
guard, DDP with gloo. Real photos from ../shared/data; nothing is downloaded."""

import csv
import math
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch.nn import functional as F

from realesr.archs import RRDBNet
from realesr.data import read_rgb
from realesr.errors import RealesrError
from realesr.train import NonFiniteLossError, load_config, train
from realesr.train import loop as loop_module
from realesr.train.config import config_from_dict
from realesr.train.loop import generator_losses

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
FAST_VGG = "loss.perceptual.layer_weights={conv1_2: 0.1, conv2_2: 0.1}"  # a shallow VGG: seconds, not minutes


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def smoke_cfg(tmp_path, shared_data, *overrides):
    return load_config(
        SMOKE,
        [
            f"output_dir={tmp_path}",
            f"data.train={shared_data / 'train' / 'photos'}",
            f"val.folder={shared_data / 'test' / 'Set5'}",
            *overrides,
        ],
    )


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_logged_losses(rows, vanilla=True):
    """What the logged values must satisfy, whatever the weights: L1 of images in [0, 1] lies in (0, 1); BCE with
    logits is a mean of softplus, so by Jensen BCE(D(gt), 1) >= softplus(-mean D(gt)) and BCE(D(out), 0) >=
    softplus(mean D(out)); the gradient norms of the steps taken are positive."""
    for r in rows:
        values = {k: float(v) for k, v in r.items() if v not in ("", None) and k != "iteration"}
        assert all(math.isfinite(v) for v in values.values()), r
        if "l_g_pix" in values:
            assert 0 < values["l_g_pix"] < 1, r
        if vanilla and "l_d_real" in values:
            assert values["l_d_real"] >= math.log1p(math.exp(-values["out_d_real"])) - 1e-6, r
            assert values["l_d_fake"] >= math.log1p(math.exp(values["out_d_fake"])) - 1e-6, r
        if "l_g_pix" in values:  # a generator step happened
            assert values["grad_norm_g"] > 0, r
        assert values.get("grad_norm_d", 1) > 0, r


@pytest.mark.slow
def test_smoke_config_trains_on_cpu(tmp_path, shared_data):
    cfg = smoke_cfg(tmp_path, shared_data, "val.max_images=1")
    result = train(cfg, show_progress=False)
    run = tmp_path / "smoke"
    assert result.status == "completed" and result.iteration == 6 and result.run_dir == run
    assert (run / "config.yaml").is_file() and (run / "train.log").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best", "iter_00000003", "iter_00000006"]
    for name in ("net_g", "net_g_ema", "net_d"):
        assert (run / "checkpoints" / "iter_00000006" / f"{name}.safetensors").is_file()
    rows = read_csv(run / "train_log.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    check_logged_losses(rows)
    val = read_csv(run / "val_log.csv")
    assert {(int(r["iteration"]), r["set"], r["metric"]) for r in val} == {
        (i, k, m) for i in (0, 3, 6) for k in ("degraded", "bicubic") for m in ("psnr", "ssim")
    }
    assert (run / "plots" / "losses.png").stat().st_size > 1000
    assert (run / "plots" / "validation.png").stat().st_size > 1000
    assert any((run / "tb").iterdir())
    assert list((run / "samples" / "iter_00000006").glob("*.png"))
    # model.safetensors is the EMA generator, a working x4 network
    ema = load_file(str(run / "model.safetensors"))
    assert max_diff(ema, load_file(str(run / "checkpoints" / "iter_00000006" / "net_g_ema.safetensors"))) == 0
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    net.load_state_dict(ema)
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


def test_loss_falls_when_overfitting_one_batch(shared_data):
    torch.manual_seed(0)
    photo = torch.from_numpy(read_rgb(sorted((shared_data / "train" / "photos").glob("*.png"))[0]))
    gt = photo.permute(2, 0, 1)[None, :, 100:164, 200:264].contiguous()
    lq = F.interpolate(gt, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
    cfg = config_from_dict({"stage": "esrnet", "data": {"train": "x"}, "loss": {"l1_gt_usm": False}})
    net = RRDBNet(num_feat=16, num_block=1, num_grow_ch=8, scale=4)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, betas=(0.9, 0.99))
    history = []
    for _ in range(60):
        opt.zero_grad()
        loss = generator_losses(cfg, net(lq), gt, gt, None, None)["l_g_pix"]
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.35 * history[0], history[::10]


@pytest.mark.slow
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, shared_data):
    common = [
        "total_iters=5",
        "save_every=100",
        "val_every=0",
        "optim.accum_steps=2",
        "data.pool_size=4",
        FAST_VGG,
        "optim.warmup_iters=2",
        "optim.milestones=[4]",
    ]
    straight = train(smoke_cfg(tmp_path / "a", shared_data, *common, "data.num_workers=0"), show_progress=False)
    assert straight.iteration == 5

    def interrupt(iteration, losses):
        if iteration == 3:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C does: the handler asks for a stop

    # with a worker process: the data stream must not depend on the number of workers
    cfg_b = smoke_cfg(tmp_path / "b", shared_data, *common, "data.num_workers=1")
    first = train(cfg_b, on_iteration=interrupt, show_progress=False)
    assert first.status == "interrupted" and first.iteration == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is removed again
    second = train(cfg_b, resume="auto", show_progress=False)
    assert second.status == "completed" and second.iteration == 5

    a_dir, b_dir = tmp_path / "a/smoke/checkpoints/iter_00000005", tmp_path / "b/smoke/checkpoints/iter_00000005"
    for name in ("net_g", "net_g_ema", "net_d"):
        diff = max_diff(load_file(str(a_dir / f"{name}.safetensors")), load_file(str(b_dir / f"{name}.safetensors")))
        print(f"resume max |diff| {name}: {diff:.3g}")
        assert diff == 0, (name, diff)  # bit-exact, as docs/train.md says
    # the logs read as one run
    assert [r["iteration"] for r in read_csv(tmp_path / "b/smoke/train_log.csv")] == ["1", "2", "3", "4", "5"]


class NaNAt(loop_module.PairSynthesizer):
    """Makes the LQ of chosen micro-batches NaN."""

    bad_calls: set = set()
    calls = 0

    def __call__(self, gt, params, generator=None, **kwargs):
        lq, gt, gt_usm = super().__call__(gt, params, generator, **kwargs)
        NaNAt.calls += 1
        if NaNAt.calls in NaNAt.bad_calls or (-1 in NaNAt.bad_calls and NaNAt.calls >= 3):
            lq = torch.full_like(lq, float("nan"))
        return lq, gt, gt_usm


GUARD = ["stage=esrnet", "save_every=2", "keep_last=10", "val_every=0", "val.at_start=false", "runtime.max_nonfinite=3"]


@pytest.mark.slow
def test_nonfinite_loss_skips_the_step(tmp_path, shared_data, monkeypatch, caplog):
    monkeypatch.setattr(loop_module, "PairSynthesizer", NaNAt)
    NaNAt.calls, NaNAt.bad_calls = 0, {3, 4}
    result = train(smoke_cfg(tmp_path, shared_data, *GUARD), show_progress=False)
    assert result.status == "completed" and result.iteration == 6
    ck = tmp_path / "smoke" / "checkpoints"
    # iterations 3 and 4 were skipped: the weights after 4 are those after 2, and training went on after
    for name in ("net_g", "net_g_ema"):
        assert (
            max_diff(
                load_file(str(ck / f"iter_00000002/{name}.safetensors")),
                load_file(str(ck / f"iter_00000004/{name}.safetensors")),
            )
            == 0
        )
        assert (
            max_diff(
                load_file(str(ck / f"iter_00000004/{name}.safetensors")),
                load_file(str(ck / f"iter_00000006/{name}.safetensors")),
            )
            > 0
        )
    assert all(torch.isfinite(v).all() for v in load_file(str(ck / "iter_00000006/net_g.safetensors")).values())
    log = (tmp_path / "smoke" / "train.log").read_text()
    assert "iteration 3: non-finite l_g_pix" in log and "step skipped (1 in a row)" in log
    assert "iteration 4: non-finite l_g_pix" in log and "step skipped (2 in a row)" in log
    assert read_csv(tmp_path / "smoke" / "train_log.csv")[-1]["skipped"] == "2"


def test_nonfinite_losses_in_a_row_abort_with_the_last_good_state(tmp_path, shared_data, monkeypatch):
    monkeypatch.setattr(loop_module, "PairSynthesizer", NaNAt)
    NaNAt.calls, NaNAt.bad_calls = 0, {-1}  # NaN from the third iteration on
    with pytest.raises(NonFiniteLossError, match="3 non-finite steps in a row .*l_g_pix"):
        train(smoke_cfg(tmp_path, shared_data, *GUARD, "total_iters=20"), show_progress=False)
    ck = tmp_path / "smoke" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["iter_00000002", "iter_00000004", "iter_00000005"]
    last = load_file(str(ck / "iter_00000005/net_g.safetensors"))
    assert max_diff(load_file(str(ck / "iter_00000002/net_g.safetensors")), last) == 0
    assert all(torch.isfinite(v).all() for v in last.values())
    assert (tmp_path / "smoke" / "model.safetensors").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg_overrides, out_dir):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    from realesr.train.distributed import shutdown_distributed

    seen = []  # the GT patches this rank trained on, per micro-batch
    original = loop_module.training_pairs

    def recording(run, generator):
        micro = original(run, generator)
        seen.extend(gt.clone() for _, gt, _ in micro)
        return micro

    loop_module.training_pairs = recording
    try:
        result = train(load_config(SMOKE, cfg_overrides), show_progress=False)
        torch.save(
            {"model": result.model.state_dict(), "iteration": result.iteration, "seen": seen},
            Path(out_dir) / f"{rank}.pt",
        )
    finally:
        shutdown_distributed()


@pytest.mark.slow
def test_ddp_gloo_two_processes(tmp_path, shared_data):
    overrides = [
        f"output_dir={tmp_path}",
        f"data.train={shared_data / 'train' / 'photos'}",
        "val.folder=",
        "total_iters=3",
        "save_every=3",
        "optim.accum_steps=2",
        FAST_VGG,
        "runtime.dist_backend=gloo",
    ]
    mp.spawn(_ddp_worker, args=(2, _free_port(), overrides, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "0.pt"), torch.load(tmp_path / "1.pt")
    assert r0["iteration"] == r1["iteration"] == 3
    # each rank saw different patches (every micro-batch differs) ...
    assert len(r0["seen"]) == len(r1["seen"]) == 3 * 2
    assert all(a.shape == b.shape and not torch.equal(a, b) for a, b in zip(r0["seen"], r1["seen"]))
    # ... and still both end with identical weights: DDP averaged the gradients
    assert max_diff(r0["model"], r1["model"]) == 0
    log = (tmp_path / "smoke" / "train.log").read_text()
    assert "2 process(es); effective batch 8 = 2 per micro-batch x 2 accumulation x 2 process(es)" in log
    assert [r["iteration"] for r in read_csv(tmp_path / "smoke" / "train_log.csv")] == ["1", "2", "3"]
    assert (tmp_path / "smoke" / "checkpoints" / "iter_00000003" / "state.pt").is_file()
    state = torch.load(tmp_path / "smoke" / "checkpoints" / "iter_00000003" / "state.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and len(state["synth"]) == 2


def test_validation_reproduces_the_published_bicubic_figure(shared_data):
    # An "SR network" that is MATLAB bicubic x4 must score what shared/README.md publishes for bicubic on Set5:
    # 28.431 dB / 0.8113 (HR cropped to a multiple of 4, uint8 LR, Y channel, 4-pixel border).
    from realesr.metrics import imresize
    from realesr.train.validate import ValItem, ValSet, build_validation_set, validate_sets

    class Bicubic(torch.nn.Module):
        def forward(self, x):
            return imresize(x.double() * 255, scale=4) / 255

    images = build_validation_set(str(shared_data / "test" / "Set5"), 4, 1, 0, 0, 0, degraded=False, bicubic=True)
    assert len(images) == 5
    items = [ValItem(image.name, image.lr["bicubic"], image.hr) for image in images]
    result = validate_sets(Bicubic(), [ValSet("bicubic", "paired", items)], torch.device("cpu"), crop_border=4)
    assert result["bicubic"]["psnr"] == pytest.approx(28.431, abs=0.005)
    assert result["bicubic"]["ssim"] == pytest.approx(0.8113, abs=0.0005)


def test_degraded_validation_inputs_are_fixed(shared_data):
    from realesr.degrade import DegradationConfig
    from realesr.train.validate import build_validation_set

    args = (str(shared_data / "test" / "Set5"), 4, 1, 2, 64, 7, True, False, DegradationConfig())
    a, b = build_validation_set(*args), build_validation_set(*args)
    assert [x.lr["degraded"].shape for x in a] == [(1, 3, 16, 16)] * 2
    assert all(torch.equal(x.lr["degraded"], y.lr["degraded"]) for x, y in zip(a, b))


@pytest.mark.slow
def test_cli_trains_and_reports_config_errors(tmp_path, shared_data):
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    base = [
        sys.executable,
        "-m",
        "realesr",
        "train",
        str(SMOKE),
        "--no-progress",
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        f"data.train={shared_data / 'train' / 'photos'}",
        "--set",
        "val.folder=",
        "--set",
        FAST_VGG,
    ]
    bad = subprocess.run(base + ["--set", "optim.ema_decay=2"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("realesr: error: config key 'optim.ema_decay'")
    assert "Traceback" not in bad.stderr
    bad = subprocess.run(
        base + ["--set", "data.degradation.noise_range=[5, 1]"], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 2 and "'data.degradation.noise_range'" in bad.stderr and "Traceback" not in bad.stderr
    ok = subprocess.run(
        base + ["--set", "total_iters=2", "--set", "stage=esrnet"], capture_output=True, text=True, env=env, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    # model.safetensors is what `realesr upscale -m` loads: the weights module recognises it
    from realesr.weights import load_model

    loaded = load_model(tmp_path / "smoke" / "model.safetensors")
    assert loaded.spec.arch == "RRDBNet" and loaded.spec.scale == 4
    assert loaded.net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


def test_x2_initialised_partially_from_an_x4_model(tmp_path, shared_data):
    from realesr.weights import save_model

    torch.manual_seed(1)
    x4 = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    save_model(x4, tmp_path / "x4.safetensors")
    cfg = smoke_cfg(
        tmp_path,
        shared_data,
        "stage=esrnet",
        "scale=2",
        "total_iters=1",
        "val.folder=",
        f"init_from={tmp_path / 'x4.safetensors'}",
        "init_strict=false",
    )
    train(cfg, show_progress=False)
    log = (tmp_path / "smoke" / "train.log").read_text()
    assert (
        "generator layer re-initialised" in log and "conv_first.weight (checkpoint (8, 3, 3, 3), network (8, 12" in log
    )
    g = load_file(str(tmp_path / "smoke" / "checkpoints" / "iter_00000001" / "net_g.safetensors"))
    # one Adam step of lr 1e-4 moves each weight by at most ~1e-4: the x4 trunk was loaded
    assert (g["body.0.rdb1.conv1.weight"] - x4.state_dict()["body.0.rdb1.conv1.weight"]).abs().max() < 2e-4
    strict = smoke_cfg(
        tmp_path / "s",
        shared_data,
        "stage=esrnet",
        "scale=2",
        "total_iters=1",
        "val.folder=",
        f"init_from={tmp_path / 'x4.safetensors'}",
    )
    with pytest.raises(RealesrError, match="init_strict"):
        train(strict, show_progress=False)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_auto_continues(tmp_path, shared_data):
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [
        sys.executable,
        "-m",
        "realesr",
        "train",
        str(SMOKE),
        "--no-progress",
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        f"data.train={shared_data / 'train' / 'photos'}",
        "--set",
        "val.folder=",
        "--set",
        FAST_VGG,
        "--set",
        "stage=esrnet",
        "--set",
        "save_every=100000",
        "--set",
        "total_iters=100000",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log_csv = tmp_path / "smoke" / "train_log.csv"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (not log_csv.is_file() or len(log_csv.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err  # SIGTERM: 143, the rule of every command
    assert "stopped by SIGTERM" in err
    saved = sorted((tmp_path / "smoke" / "checkpoints").glob("iter_*"))
    assert (
        len(saved) == 1 and (saved[0] / "state.pt").is_file() and (tmp_path / "smoke" / "model.safetensors").is_file()
    )
    stopped_at = int(saved[0].name.split("_")[1])
    assert stopped_at >= 2
    # --resume auto picks it up and goes on to the (now lower) end
    done = subprocess.run(
        cmd[:-2] + ["--set", f"total_iters={stopped_at + 1}", "--resume", "auto"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"resumed from {saved[0]} at iteration {stopped_at}" in done.stderr
    assert (tmp_path / "smoke" / "checkpoints" / f"iter_{stopped_at + 1:08d}").is_dir()


@pytest.mark.slow
def test_relativistic_gan_discriminator_warmup_and_clipping(tmp_path, shared_data, monkeypatch):
    cfg = smoke_cfg(
        tmp_path,
        shared_data,
        FAST_VGG,
        "val.folder=",
        "total_iters=3",
        "loss.gan.type=ragan",
        "loss.net_d_init_iters=1",
        "optim.grad_clip=0.01",
        "data.use_rot=true",
    )
    after_clip = []  # the norm of the gradients the optimiser then applies
    original = loop_module._grad_norm

    def recording(params, clip):
        before = original(params, clip)
        grads = [p.grad for p in params if p.grad is not None]
        after_clip.append(
            (
                float(before),
                float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
                if grads
                else 0.0,
            )
        )
        return before

    monkeypatch.setattr(loop_module, "_grad_norm", recording)
    result = train(cfg, show_progress=False)
    assert result.status == "completed"
    rows = read_csv(tmp_path / "smoke" / "train_log.csv")
    # iteration 1 trains the discriminator only: no generator losses; then both
    assert rows[0]["l_g_pix"] == "" and rows[0]["l_d_real"] != ""
    assert all(r[k] != "" for r in rows[1:] for k in ("l_g_pix", "l_g_percep", "l_g_gan", "l_d_real"))
    check_logged_losses(rows, vanilla=False)
    # clipping: every applied gradient has norm <= 0.01, the norms before were larger, and the log has those
    assert len(after_clip) == 5  # D at 1, G and D at 2 and 3
    assert all(after <= 0.01 * (1 + 1e-5) for _, after in after_clip), after_clip
    assert all(before > 0.011 for before, _ in after_clip), after_clip
    assert [float(r["grad_norm_g"]) for r in rows[1:]] == pytest.approx([after_clip[1][0], after_clip[3][0]], rel=1e-5)
    # and the clipped run differs from an unclipped one (slightly: Adam is nearly invariant to a gradient's scale)
    train(
        smoke_cfg(
            tmp_path / "noclip",
            shared_data,
            FAST_VGG,
            "val.folder=",
            "total_iters=3",
            "loss.gan.type=ragan",
            "loss.net_d_init_iters=1",
            "data.use_rot=true",
        ),
        show_progress=False,
    )
    last = "smoke/checkpoints/iter_00000003/net_g.safetensors"
    assert max_diff(load_file(str(tmp_path / last)), load_file(str(tmp_path / "noclip" / last))) > 0
