"""The second-order degradation chain of Real-ESRGAN (official x4plus order of operations), batched.

Per-sample parameters are drawn on the CPU with a numpy Generator by :func:`sample_degradation_params` (one
sample per call, so DataLoader workers can draw them and ``default_collate`` can stack them). :func:`degrade`
applies the chain to a batch on any device; its only own randomness is the noise, from a torch.Generator.

Where the official draws once per batch (resize direction, scale and mode, Gaussian-vs-Poisson, the second blur,
the final order), every sample here draws its own; see ``realesr.degrade.resize`` for how the samples of
different sizes are batched.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from realesr.degrade.config import RESIZE_MODES, DegradationConfig, StageSettings
from realesr.degrade.jpeg import jpeg_compress
from realesr.degrade.kernels import filter2d, random_blur_kernel, random_final_sinc
from realesr.degrade.noise import add_noise
from realesr.degrade.resize import from_canvas, resize_one, same_size, to_canvas
from realesr.degrade.usm import usm_sharpen
from realesr.errors import ConfigError

RESIZE_DIRECTIONS = ("up", "down", "keep")

# Scalar keys of a parameter dict, and the dtype they are stored with.
_KERNEL_FIELDS = ("type", "size", "sigma_x", "sigma_y", "theta", "beta", "omega")
_INT_KEYS = {
    "kernel1_type",
    "kernel1_size",
    "kernel2_type",
    "kernel2_size",
    "sinc_type",
    "sinc_size",
    "resize1_direction",
    "resize1_mode",
    "noise1_gaussian",
    "noise1_gray",
    "blur2_apply",
    "resize2_direction",
    "resize2_mode",
    "noise2_gaussian",
    "noise2_gray",
    "final_resize_first",
    "final_resize_mode",
}


def _draw_resize(rng: np.random.Generator, probs, scale_range) -> tuple[int, float]:
    direction = int(rng.choice(3, p=np.asarray(probs) / np.sum(probs)))
    if direction == 0:
        scale = rng.uniform(1.0, scale_range[1])
    elif direction == 1:
        scale = rng.uniform(scale_range[0], 1.0)
    else:
        scale = 1.0
    return direction, float(scale)


def _draw_mode(rng: np.random.Generator, modes: tuple[str, ...]) -> int:
    return RESIZE_MODES.index(modes[int(rng.integers(len(modes)))])


def sample_degradation_params(cfg: DegradationConfig, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Draw every random choice of the chain for ONE sample (kernels, scales, modes, noise, qualities, order).

    Returns a dict of tensors: ``kernel1``, ``kernel2``, ``sinc_kernel`` (``blur_kernel_size``^2 float32, kernel2
    ``blur_kernel_size2``^2) and
    0-dim scalars (int64 for choices, float32 for values). Every key is always drawn, used or not, so the stream
    of random numbers, and thus a seeded run, does not depend on earlier outcomes.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed))")
    out: dict[str, torch.Tensor | int | float] = {}  # plain numbers become tensors on return

    def put_kernel(prefix: str, draw) -> None:
        out[prefix] = torch.from_numpy(draw.kernel.astype(np.float32))
        stem = "sinc" if prefix == "sinc_kernel" else prefix
        values = (draw.type_index, draw.size, draw.sigma_x, draw.sigma_y, draw.theta, draw.beta, draw.omega)
        for name, value in zip(_KERNEL_FIELDS, values):
            out[f"{stem}_{name}"] = value

    # The data-set part of the official (kernels), then the model part (feed_data), in the official order.
    put_kernel("kernel1", random_blur_kernel(rng, cfg, second=False))
    put_kernel("kernel2", random_blur_kernel(rng, cfg, second=True))
    put_kernel("sinc_kernel", random_final_sinc(rng, cfg))

    def put_resize_and_noise(stage: int, settings: StageSettings) -> None:
        direction, scale = _draw_resize(rng, settings.resize_prob, settings.resize_range)
        out[f"resize{stage}_direction"], out[f"resize{stage}_scale"] = direction, scale
        out[f"resize{stage}_mode"] = _draw_mode(rng, settings.resize_modes)
        out[f"noise{stage}_gaussian"] = int(rng.uniform() < settings.gaussian_noise_prob)
        out[f"noise{stage}_sigma"] = float(rng.uniform(*settings.noise_range))
        out[f"noise{stage}_poisson_scale"] = float(rng.uniform(*settings.poisson_scale_range))
        out[f"noise{stage}_gray"] = int(rng.uniform() < settings.gray_noise_prob)

    put_resize_and_noise(1, cfg.stage1)
    out["jpeg1_quality"] = float(rng.uniform(*cfg.stage1.jpeg_range))
    out["blur2_apply"] = int(rng.uniform() < cfg.second_blur_prob)
    put_resize_and_noise(2, cfg.stage2)
    out["final_resize_first"] = int(rng.uniform() < cfg.final.resize_before_jpeg_prob)
    out["final_resize_mode"] = _draw_mode(rng, cfg.final.resize_modes)
    out["jpeg2_quality"] = float(rng.uniform(*cfg.stage2.jpeg_range))

    return {
        k: v if torch.is_tensor(v) else torch.tensor(v, dtype=torch.int64 if k in _INT_KEYS else torch.float32)
        for k, v in out.items()
    }


REQUIRED_KEYS = (
    "kernel1",
    "kernel2",
    "sinc_kernel",
    "resize1_scale",
    "resize1_mode",
    "noise1_gaussian",
    "noise1_sigma",
    "noise1_poisson_scale",
    "noise1_gray",
    "jpeg1_quality",
    "blur2_apply",
    "resize2_scale",
    "resize2_mode",
    "noise2_gaussian",
    "noise2_sigma",
    "noise2_poisson_scale",
    "noise2_gray",
    "final_resize_first",
    "final_resize_mode",
    "jpeg2_quality",
)


def sample_degradation_batch(
    cfg: DegradationConfig, rng: np.random.Generator, batch_size: int
) -> dict[str, torch.Tensor]:
    """``batch_size`` draws of :func:`sample_degradation_params`, stacked as default_collate would."""
    draws = [sample_degradation_params(cfg, rng) for _ in range(batch_size)]
    return {k: torch.stack([d[k] for d in draws]) for k in draws[0]}


# ------------------------------------------------------------------------------------------------ the chain
def _blur_ragged(items: list, kernels: torch.Tensor, on_canvas: bool) -> list:
    if same_size(items):
        return list(filter2d(torch.cat(items), kernels).split(1))
    if not on_canvas:
        return [filter2d(t, kernels[i : i + 1]) for i, t in enumerate(items)]
    k = kernels.shape[-1]
    canvas, sizes = to_canvas(items, border=k // 2)
    kernels = kernels.to(device=canvas.device, dtype=canvas.dtype)
    b, c, hh, ww = canvas.shape
    weight = kernels.repeat_interleave(c, dim=0).unsqueeze(1)
    out = torch.nn.functional.conv2d(canvas.reshape(1, b * c, hh, ww), weight, groups=b * c)
    return from_canvas(out.view(b, c, hh - k + 1, ww - k + 1), sizes)


def _noise_ragged(
    items: list, p: Mapping[str, torch.Tensor], stage: int, generator: torch.Generator | None, on_canvas: bool
) -> list:
    keys = [f"noise{stage}_{name}" for name in ("gaussian", "sigma", "poisson_scale", "gray")]
    if same_size(items) or on_canvas:
        canvas, sizes = to_canvas(items)
        gaussian, sigma, poisson_scale, gray = (p[k] for k in keys)
        out = add_noise(
            canvas, gaussian, sigma, poisson_scale, gray, generator, sizes=None if same_size(items) else sizes
        )
        return from_canvas(out, sizes)
    noisy = []
    for i, t in enumerate(items):
        gaussian, sigma, poisson_scale, gray = (p[k][i : i + 1] for k in keys)
        noisy.append(add_noise(t, gaussian, sigma, poisson_scale, gray, generator))
    return noisy


def _jpeg_ragged(items: list, quality: torch.Tensor, chroma_upsampling: str, on_canvas: bool) -> list:
    if same_size(items) or on_canvas:
        # Canvas edges are replicated to the 16-pixel MCU grid, which is what the encoder itself would do.
        canvas, sizes = to_canvas(items, multiple=16)
        return from_canvas(jpeg_compress(canvas.clamp(0.0, 1.0), quality, chroma_upsampling, sizes), sizes)
    return [jpeg_compress(t.clamp(0.0, 1.0), quality[i : i + 1], chroma_upsampling) for i, t in enumerate(items)]


def _check_params(params: Mapping[str, torch.Tensor], batch: int) -> None:
    for key in REQUIRED_KEYS:
        if key not in params:
            raise ConfigError(f"degradation params: missing key {key!r} (draw them with sample_degradation_params)")
        if params[key].shape[0] != batch:
            raise ConfigError(f"degradation params: {key!r} has {params[key].shape[0]} entries for a batch of {batch}")


def degrade(
    gt_usm: torch.Tensor,
    params: Mapping[str, torch.Tensor],
    cfg: DegradationConfig,
    scale: int,
    generator: torch.Generator | None = None,
    on_canvas: bool | None = None,
) -> torch.Tensor:
    """Synthesise LQ images [B,3,H//scale,W//scale] from (sharpened) GT [B,3,H,W] in [0,1], any device.

    ``params``: a collated batch of :func:`sample_degradation_params`. ``generator`` drives the noise; noise is
    drawn on the generator's device, so for speed give one on the images' device (a CPU generator with GPU images
    works, and gives the same noise as on the CPU, at the cost of a copy). The result is clamped to [0, 1] and
    rounded to 8-bit levels, like the official.

    Between the first resize and the final resize the samples have their own sizes. ``on_canvas`` chooses how
    they are processed: True batches them on one edge-replicated canvas (few large kernels: what an accelerator
    wants), False processes them one by one at their own size (no wasted pixels: what a CPU wants). The default
    is True except on the CPU. Both give the same images up to the noise draws, which are shaped differently.
    """
    scale = _check_inputs(gt_usm, params, scale)
    b, _, ori_h, ori_w = gt_usm.shape
    # Half precision would blur the DCT and the 8-bit rounding: the chain runs in float32 (or float64 if given).
    out_dtype = gt_usm.dtype
    if gt_usm.dtype not in (torch.float32, torch.float64):
        gt_usm = gt_usm.float()
    p = {k: v.detach().cpu() if k not in ("kernel1", "kernel2", "sinc_kernel") else v for k, v in params.items()}
    device = gt_usm.device
    if on_canvas is None:
        on_canvas = device.type != "cpu"

    # ---- first degradation: blur, resize (own scale and mode per sample), noise, JPEG
    out = filter2d(gt_usm, params["kernel1"].to(device, gt_usm.dtype))
    scales1 = p["resize1_scale"].tolist()
    modes1 = p["resize1_mode"].tolist()
    items = [resize_one(out[i : i + 1], RESIZE_MODES[modes1[i]], scale=scales1[i]) for i in range(b)]
    items = _noise_ragged(items, p, 1, generator, on_canvas)
    items = _jpeg_ragged(items, p["jpeg1_quality"], cfg.jpeg_chroma_upsampling, on_canvas)

    # ---- second degradation: optional blur, resize relative to the LR size, noise
    blur2 = p["blur2_apply"].bool()
    if bool(blur2.any()):
        sel = torch.nonzero(blur2).flatten().tolist()
        blurred = _blur_ragged([items[i] for i in sel], params["kernel2"][sel].to(device), on_canvas)
        for i, t in zip(sel, blurred):
            items[i] = t
    scales2 = p["resize2_scale"].tolist()
    modes2 = p["resize2_mode"].tolist()
    items = [
        resize_one(
            items[i], RESIZE_MODES[modes2[i]], size=(int(ori_h / scale * scales2[i]), int(ori_w / scale * scales2[i]))
        )
        for i in range(b)
    ]
    items = _noise_ragged(items, p, 2, generator, on_canvas)
    out = _final_stage(items, params, p, cfg, (ori_h // scale, ori_w // scale), on_canvas)
    return (torch.clamp((out * 255.0).round(), 0, 255) / 255.0).to(out_dtype)


def _check_inputs(gt_usm: torch.Tensor, params: Mapping[str, torch.Tensor], scale) -> int:
    """The scale as an int, after checking the batch's shape, type and parameters."""
    if gt_usm.dim() != 4 or gt_usm.shape[1] != 3:
        raise ValueError(f"degrade expects [B,3,H,W], got {tuple(gt_usm.shape)}")
    if not gt_usm.is_floating_point():
        raise ValueError(f"degrade expects a float image in [0, 1], got {gt_usm.dtype}")
    if int(scale) != scale or scale < 1:
        raise ConfigError(f"degradation.scale: expected a positive integer, got {scale!r}")
    scale = int(scale)
    b, _, ori_h, ori_w = gt_usm.shape
    if ori_h < scale or ori_w < scale:
        raise ValueError(f"GT of {ori_h}x{ori_w} is smaller than the scale {scale}")
    _check_params(params, b)
    return scale


def _final_stage(
    items: list[torch.Tensor], params, p, cfg: DegradationConfig, lr_size, on_canvas: bool
) -> torch.Tensor:
    """The final step, per sample: [resize to LR + sinc, JPEG] or [JPEG, resize to LR + sinc]."""
    b, device = len(items), items[0].device
    resize_first = p["final_resize_first"].bool().tolist()
    jpeg_first = [i for i in range(b) if not resize_first[i]]
    if jpeg_first:
        coded = _jpeg_ragged(
            [items[i] for i in jpeg_first], p["jpeg2_quality"][jpeg_first], cfg.jpeg_chroma_upsampling, on_canvas
        )
        for i, t in zip(jpeg_first, coded):
            items[i] = t
    final_modes = p["final_resize_mode"].tolist()
    out = torch.cat([resize_one(items[i], RESIZE_MODES[final_modes[i]], size=lr_size) for i in range(b)])
    out = filter2d(out, params["sinc_kernel"].to(device))
    resize_first_idx = [i for i in range(b) if resize_first[i]]
    if resize_first_idx:
        idx = torch.tensor(resize_first_idx, device=device)
        coded_final = jpeg_compress(
            out[idx].clamp(0.0, 1.0), p["jpeg2_quality"][resize_first_idx], cfg.jpeg_chroma_upsampling
        )
        out = out.index_copy(0, idx, coded_final)
    return out


def synthesize_pairs(
    gt: torch.Tensor,
    cfg: DegradationConfig,
    scale: int,
    count: int,
    rng: np.random.Generator,
    generator: torch.Generator | None = None,
    crop: int = 256,
    region: int = 400,
    sharpen: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The training-time synthesis on one image: ``count`` LR versions of one GT crop.

    As the official data set and model: take a random ``region``^2 window of the image (reflect-padded when the
    image is smaller), sharpen it (``sharpen``), degrade it ``count`` times with independent draws, then crop
    ``crop``^2 (GT) / (crop/scale)^2 (LR) at one random position shared by the versions. ``crop`` 0 keeps the whole
    image (cut to a multiple of the scale) and ignores ``region``.
    Returns (plain GT crop [3,c,c], LR [count,3,c/scale,c/scale], the collated parameters).
    """
    if gt.dim() != 3 or gt.shape[0] != 3:
        raise ValueError(f"synthesize_pairs expects [3,H,W], got {tuple(gt.shape)}")
    if crop < 0 or crop % scale:
        raise ConfigError(f"crop: {crop} must be a multiple of the scale {scale}")
    h, w = gt.shape[-2:]
    if crop == 0:
        window = gt[:, : h - h % scale, : w - w % scale]
        if window.shape[-1] < scale or window.shape[-2] < scale:
            raise ConfigError(f"crop: the image of {w}x{h} is smaller than the scale {scale}")
    else:
        size = max(region, crop)
        size += (-size) % scale
        if h < size or w < size:
            pad_h, pad_w = max(0, size - h), max(0, size - w)
            arr = np.pad(gt.cpu().numpy(), ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
            gt = torch.from_numpy(arr).to(gt.device)
            h, w = gt.shape[-2:]
        top = int(rng.integers(0, h - size + 1))
        left = int(rng.integers(0, w - size + 1))
        window = gt[:, top : top + size, left : left + size]
    batch = window.unsqueeze(0).expand(count, -1, -1, -1).contiguous()
    params = sample_degradation_batch(cfg, rng, count)
    source = usm_sharpen(batch) if sharpen else batch
    lq = degrade(source, params, cfg, scale, generator=generator)
    if crop == 0:
        return window, lq, params
    lq_size = crop // scale
    top = int(rng.integers(0, lq.shape[-2] - lq_size + 1))
    left = int(rng.integers(0, lq.shape[-1] - lq_size + 1))
    gt_crop = window[:, top * scale : top * scale + crop, left * scale : left * scale + crop]
    return gt_crop, lq[:, :, top : top + lq_size, left : left + lq_size], params


__all__ = [
    "REQUIRED_KEYS",
    "degrade",
    "sample_degradation_batch",
    "sample_degradation_params",
    "synthesize_pairs",
]
