"""The degradation chain, its configuration, crops and the training pair pool."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from realesr.degrade import (
    DegradationConfig,
    TrainingPairPool,
    degrade,
    label_lines,
    paired_random_crop,
    sample_degradation_batch,
    sample_degradation_params,
    usm_sharpen,
)
from realesr.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _crops(shared_data, n, size, seed=0):
    rng = np.random.default_rng(seed)
    photos = sorted((shared_data / "train" / "photos").glob("*.png"))
    out = []
    for i in range(n):
        a = np.asarray(Image.open(photos[(i * 7 + seed) % len(photos)]).convert("RGB"))
        top = int(rng.integers(0, a.shape[0] - size))
        left = int(rng.integers(0, a.shape[1] - size))
        out.append(torch.from_numpy(a[top : top + size, left : left + size].copy()).permute(2, 0, 1))
    return torch.stack(out).float() / 255.0


# ------------------------------------------------------------------------------------------------ config
def test_config_defaults_are_official_x4plus_and_round_trip():
    cfg = DegradationConfig()
    assert cfg.kernel_prob == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    assert cfg.blur_sigma == (0.2, 3.0) and cfg.blur_sigma2 == (0.2, 1.5)
    assert cfg.resize_prob == (0.2, 0.7, 0.1) and cfg.resize_range == (0.15, 1.5)
    assert cfg.resize_prob2 == (0.3, 0.4, 0.3) and cfg.resize_range2 == (0.3, 1.2)
    assert cfg.noise_range == (1.0, 30.0) and cfg.noise_range2 == (1.0, 25.0)
    assert cfg.poisson_scale_range == (0.05, 3.0) and cfg.poisson_scale_range2 == (0.05, 2.5)
    assert cfg.final_sinc_prob == 0.8 and cfg.second_blur_prob == 0.8
    again = DegradationConfig.from_dict(cfg.to_dict())
    assert again == cfg
    for scale in (2, 4, 8):
        assert isinstance(DegradationConfig.for_scale(scale), DegradationConfig)
    # an official option block loads as it is (lists from YAML)
    official = {
        "resize_prob": [0.2, 0.7, 0.1],
        "jpeg_range": [30, 95],
        "kernel_list": ["iso", "aniso"],
        "kernel_prob": [0.5, 0.5],
    }
    assert DegradationConfig.from_dict(official).kernel_list == ("iso", "aniso")


@pytest.mark.parametrize(
    "changes,key",
    [
        ({"kernel_prob": (0.5, 0.5, 0, 0, 0, 0.1)}, "kernel_prob"),
        ({"resize_prob2": (0.5, 0.5)}, "resize_prob2"),
        ({"blur_sigma": (3.0, 0.2)}, "blur_sigma"),
        ({"jpeg_range2": (0, 95)}, "jpeg_range2"),
        ({"kernel_list": ("iso", "box")}, "kernel_list"),
        ({"gray_noise_prob": 1.5}, "gray_noise_prob"),
        ({"kernel_size_range": (6, 21)}, "kernel_size_range"),
        ({"resize_modes": ("nearest",)}, "resize_modes"),
        ({"blur_kernel_size2": 20}, "blur_kernel_size2"),
        ({"blur_kernel_size": 15}, "kernel_size_range"),
    ],
)
def test_config_validation_names_the_key(changes, key):
    with pytest.raises(ConfigError, match=key):
        DegradationConfig(**changes)


def test_config_unknown_key_and_bad_scale():
    with pytest.raises(ConfigError, match="resize_probb"):
        DegradationConfig.from_dict({"resize_probb": [0.2, 0.7, 0.1]})
    with pytest.raises(ConfigError, match="scale"):
        DegradationConfig.for_scale(3)


# ------------------------------------------------------------------------------------------------ params
def test_params_are_reproducible_collatable_and_within_ranges():
    cfg = DegradationConfig()
    a = [sample_degradation_params(cfg, np.random.default_rng(42)) for _ in range(2)]
    assert all(torch.equal(a[0][k], a[1][k]) for k in a[0])
    batch = default_collate([sample_degradation_params(cfg, np.random.default_rng(s)) for s in range(200)])
    assert batch["kernel1"].shape == (200, 21, 21) and batch["kernel1"].dtype == torch.float32
    assert batch["sinc_kernel"].shape == (200, 21, 21)
    torch.testing.assert_close(batch["kernel2"].sum(dim=(1, 2)), torch.ones(200))
    s1 = batch["resize1_scale"]
    assert s1.min() >= 0.15 and s1.max() <= 1.5
    up, down, keep = (batch["resize1_direction"] == d for d in range(3))
    assert (s1[up] >= 1).all() and (s1[down] <= 1).all() and (s1[keep] == 1).all()
    assert abs(down.float().mean().item() - 0.7) < 0.12
    assert 1 <= batch["noise1_sigma"].min() and batch["noise1_sigma"].max() <= 30
    assert 1 <= batch["noise2_sigma"].min() and batch["noise2_sigma"].max() <= 25
    assert 30 <= batch["jpeg1_quality"].min() and batch["jpeg2_quality"].max() <= 95
    s2 = batch["resize2_scale"]
    assert s2.min() >= 0.3 and s2.max() <= 1.2
    # per-sample draws: a batch mixes Gaussian and Poisson noise, modes and final orders
    assert 0 < batch["noise1_gaussian"].float().mean() < 1
    assert len(set(batch["resize1_mode"].tolist())) == 3
    assert 0 < batch["final_resize_first"].float().mean() < 1
    lines = label_lines(batch, 3)
    assert len(lines) == 8 and lines[2].startswith("1 noise ")


# ------------------------------------------------------------------------------------------------ chain
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_output_shapes_range_and_quantisation(shared_data, scale):
    cfg = DegradationConfig.for_scale(scale)
    gt = _crops(shared_data, 3, 96, seed=scale)
    params = sample_degradation_batch(cfg, np.random.default_rng(scale), 3)
    lq = degrade(usm_sharpen(gt), params, cfg, scale, generator=torch.Generator().manual_seed(0))
    assert lq.shape == (3, 3, 96 // scale, 96 // scale)
    assert lq.min() >= 0 and lq.max() <= 1
    torch.testing.assert_close(lq * 255, (lq * 255).round(), atol=1e-4, rtol=0)


def test_same_seed_same_lr_and_different_seed_differs(shared_data):
    cfg = DegradationConfig()
    gt = usm_sharpen(_crops(shared_data, 4, 64, seed=3))

    def run(seed):
        params = sample_degradation_batch(cfg, np.random.default_rng(seed), 4)
        return degrade(gt, params, cfg, 4, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(11), run(11))
    assert not torch.equal(run(11), run(12))


def test_many_random_draws_on_real_photos_stay_finite_and_in_range(shared_data):
    cfg = DegradationConfig()
    rng = np.random.default_rng(2024)
    gen = torch.Generator().manual_seed(2024)
    diffs, mean_shift = [], []
    for b in range(6):
        gt = _crops(shared_data, 8, 48, seed=100 + b)
        lq = degrade(usm_sharpen(gt), sample_degradation_batch(cfg, rng, 8), cfg, 4, generator=gen)
        assert torch.isfinite(lq).all() and lq.min() >= 0 and lq.max() <= 1
        down = torch.nn.functional.interpolate(gt, scale_factor=0.25, mode="area")
        diffs.append((lq - down).abs().mean(dim=(1, 2, 3)))
        mean_shift.append(lq.mean(dim=(1, 2, 3)) - down.mean(dim=(1, 2, 3)))
    diffs, mean_shift = torch.cat(diffs), torch.cat(mean_shift)
    # blur, resampling, zero-mean noise and JPEG keep the brightness; only the clipping of strong noise on
    # near-white or near-black content shifts it (by up to ~0.1 on a bright crop with sigma 27 noise)
    assert mean_shift.abs().mean() < 0.02 and mean_shift.abs().max() < 0.15
    # degraded, but still the same picture: not identical to a clean downscale, nor unrelated to it
    assert diffs.min() > 0.002 and diffs.mean() < 0.15


def test_canvas_and_per_sample_processing_agree_without_noise(shared_data):
    cfg = DegradationConfig(
        noise_range=(0.0, 0.0), noise_range2=(0.0, 0.0), poisson_scale_range=(0.0, 0.0), poisson_scale_range2=(0.0, 0.0)
    )
    gt = usm_sharpen(_crops(shared_data, 6, 64, seed=9))
    params = sample_degradation_batch(cfg, np.random.default_rng(9), 6)
    assert len(set(params["resize1_scale"].tolist())) == 6  # truly ragged
    a = degrade(gt, params, cfg, 4, on_canvas=True)
    b = degrade(gt, params, cfg, 4, on_canvas=False)
    # the canvas is an implementation detail: every sample comes out as if processed at its own size
    assert torch.equal(a, b)
    # and each sample equals itself degraded alone
    alone = degrade(gt[2:3], {k: v[2:3] for k, v in params.items()}, cfg, 4)
    assert torch.equal(alone, b[2:3])


@pytest.mark.parametrize("resize_first", [1, 0])
def test_chain_applies_the_drawn_operations_in_the_official_order(shared_data, resize_first):
    # Noise off so that the chain is deterministic; every other step is drawn explicitly and replayed by hand.
    from torch.nn import functional as F

    from realesr.degrade import filter2d, jpeg_compress
    from realesr.degrade.kernels import circular_lowpass_kernel, gaussian_kernel, pad_kernel

    cfg = DegradationConfig()
    gt = _crops(shared_data, 1, 64, seed=21)
    p = sample_degradation_batch(cfg, np.random.default_rng(0), 1)
    k1 = torch.from_numpy(gaussian_kernel(21, 1.4, 0.7, 0.5)).float()[None]
    k2 = torch.from_numpy(pad_kernel(gaussian_kernel(9, 0.8, 0.8, 0.0), 21)).float()[None]
    sinc = torch.from_numpy(pad_kernel(circular_lowpass_kernel(2.0, 13), 21)).float()[None]
    p.update(
        kernel1=k1,
        kernel2=k2,
        sinc_kernel=sinc,
        resize1_scale=torch.tensor([0.62]),
        resize1_mode=torch.tensor([2]),  # bicubic
        noise1_gaussian=torch.tensor([1]),
        noise1_sigma=torch.tensor([0.0]),
        jpeg1_quality=torch.tensor([41.0]),
        blur2_apply=torch.tensor([1]),
        resize2_scale=torch.tensor([0.8]),
        resize2_mode=torch.tensor([1]),  # bilinear
        noise2_gaussian=torch.tensor([0]),
        noise2_poisson_scale=torch.tensor([0.0]),
        final_resize_first=torch.tensor([resize_first]),
        final_resize_mode=torch.tensor([0]),  # area
        jpeg2_quality=torch.tensor([77.0]),
    )
    lq = degrade(gt, p, cfg, 4)
    # replayed with the official DiffJPEG's chroma upsampling (repeat), which the default config must use

    x = filter2d(gt, k1)
    x = F.interpolate(x, scale_factor=0.62, mode="bicubic").clamp(0, 1)
    x = jpeg_compress(x, torch.tensor([41.0]), "nearest")
    x = filter2d(x, k2)
    x = F.interpolate(x, size=(int(64 / 4 * 0.8), int(64 / 4 * 0.8)), mode="bilinear").clamp(0, 1)
    if resize_first:
        x = filter2d(F.interpolate(x, size=(16, 16), mode="area"), sinc)
        x = jpeg_compress(x.clamp(0, 1), torch.tensor([77.0]), "nearest")
    else:
        x = jpeg_compress(x, torch.tensor([77.0]), "nearest")
        x = filter2d(F.interpolate(x, size=(16, 16), mode="area"), sinc)
    expected = (x * 255).round().clamp(0, 255) / 255
    torch.testing.assert_close(lq, expected, atol=1e-6, rtol=0)


def test_half_precision_input_is_computed_in_float32(shared_data):
    cfg = DegradationConfig()
    gt = usm_sharpen(_crops(shared_data, 2, 64, seed=4))
    params = sample_degradation_batch(cfg, np.random.default_rng(4), 2)
    full = degrade(gt, params, cfg, 4, generator=torch.Generator().manual_seed(4))
    half = degrade(gt.half(), params, cfg, 4, generator=torch.Generator().manual_seed(4))
    assert half.dtype == torch.float16
    # the fp16 input is itself rounded, so a few pixels may land on the neighbouring 8-bit level
    assert (half.float() - full).abs().max() <= 2 / 255 + 1e-3 and (half.float() - full).abs().mean() < 1e-3
    with pytest.raises(ValueError, match="float"):
        degrade((gt * 255).to(torch.uint8), params, cfg, 4)


def test_degrade_rejects_missing_params():
    cfg = DegradationConfig()
    params = sample_degradation_batch(cfg, np.random.default_rng(0), 2)
    del params["jpeg2_quality"]
    with pytest.raises(ConfigError, match="jpeg2_quality"):
        degrade(torch.rand(2, 3, 32, 32), params, cfg, 4)


# ------------------------------------------------------------------------------------------------ crops
def test_paired_random_crop_is_aligned_per_sample():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(5, 3, 64, 48, generator=g)
    lq = torch.nn.functional.avg_pool2d(gt, 4)
    gt2 = gt * 2
    (gt_c, gt2_c), lq_c = paired_random_crop([gt, gt2], lq, 32, 4, generator=torch.Generator().manual_seed(1))
    assert gt_c.shape == (5, 3, 32, 32) and lq_c.shape == (5, 3, 8, 8)
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(gt_c, 4), lq_c)
    torch.testing.assert_close(gt2_c, gt_c * 2)
    # offsets differ between samples
    offsets = {tuple((gt[i] == gt_c[i, 0, 0, 0]).nonzero()[0].tolist()) for i in range(5)}
    assert len(offsets) > 1
    single, _ = paired_random_crop(gt, lq, 32, 4)
    assert torch.is_tensor(single)
    with pytest.raises(DataError):
        paired_random_crop(gt, lq, 64, 4)
    with pytest.raises(DataError):
        paired_random_crop(gt[:, :, :60], lq, 32, 4)


# ------------------------------------------------------------------------------------------------ pool
def _batch(start, b=4):
    ids = torch.arange(start, start + b, dtype=torch.float32)
    return ids.view(b, 1, 1, 1).expand(b, 3, 2, 2).clone(), ids.view(b, 1, 1, 1).expand(b, 3, 8, 8) * 10


def test_pool_fills_then_swaps_and_keeps_pairs():
    pool = TrainingPairPool(12, 4, seed=0)
    seen = []
    for step in range(3):  # filling: returned unchanged
        lq, gt = _batch(step * 4)
        out_lq, out_gt = pool(lq, gt)
        assert torch.equal(out_lq, lq) and torch.equal(out_gt, gt)
        seen += list(range(step * 4, step * 4 + 4))
    assert pool.full
    for step in range(3, 10):
        lq, gt = _batch(step * 4)
        out_lq, out_gt = pool(lq, gt)
        ids = out_lq[:, 0, 0, 0]
        torch.testing.assert_close(out_gt[:, 0, 0, 0], ids * 10)  # pairs stay matched
        assert set(ids.tolist()) <= set(seen)  # only earlier samples come out
        for i in ids.tolist():
            seen.remove(i)
        seen += list(range(step * 4, step * 4 + 4))
        assert sorted(pool.queue_lq[:, 0, 0, 0].tolist()) == sorted(seen)  # nothing lost, nothing duplicated


def test_pool_state_round_trip_gives_identical_continuation():
    a = TrainingPairPool(8, 4, seed=3)
    for step in range(4):
        a(*_batch(step * 4))
    state = a.state_dict()
    b = TrainingPairPool(8, 4, seed=99)
    b.load_state_dict(state)
    for step in range(4, 8):
        out_a, out_b = a(*_batch(step * 4)), b(*_batch(step * 4))
        assert torch.equal(out_a[0], out_b[0]) and torch.equal(out_a[1], out_b[1])
    with pytest.raises(ConfigError, match="pool_size"):
        TrainingPairPool(10, 4)
    with pytest.raises(ConfigError, match="pool_size"):
        TrainingPairPool(12, 4).load_state_dict(state)
