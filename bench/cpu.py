"""CPU speed of each precision and backend, against the official RealESRGANer (fp32) and the bare network.

Prints, with the CPU's model, flags, clock and the ISA's peak in the header: for each variant, the median time
over alternating rounds (A B C ... A B C ...: a busy moment on a shared machine slows whichever variant runs in
it, not always the same one), LR megapixels per second, GFLOP/s of the network's convolutions, the fraction of
the ISA's peak for that precision, and the output's difference to fp32 (mean 8-bit levels, PSNR).

    PYTHONPATH=src python bench/cpu.py [--model RealESRGAN_x4plus] [--crop 64] [--rounds 5] [--openvino] [--compile]
    PYTHONPATH=src python bench/cpu.py --checks      # measure bf16 vs fp32 for the zoo; writes the table auto reads

The official path is bench_upscale.official_enhance: RealESRGANer.enhance's fp32 steps reproduced from
xinntao/Real-ESRGAN (see that script), on a contiguous-format copy of the same network.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_upscale import official_enhance  # noqa: E402

from realesr.devices import cpu_info  # noqa: E402
from realesr.errors import RealesrError  # noqa: E402
from realesr.imagefiles import read_image  # noqa: E402
from realesr.infer import Upscaler, cpu_packed, precision  # noqa: E402
from realesr.weights import ZOO, find_model, load_model  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared/data"
DEFAULT_IMAGE = DATA / "real_lr/RealESRGAN_inputs/0014.jpg"
# The crops of the bf16 check table (--checks) and of tests/test_precision.py: textured spots of photos and
# drawings; (file under shared/data, top, left); side CHECK_SIDE.
CHECK_CROPS = (
    ("real_lr/RealESRGAN_inputs/0014.jpg", 40, 40),
    ("real_lr/RealESRGAN_inputs/OST_009.png", 100, 150),
    ("real_lr/RealESRGAN_inputs/ADE_val_00000114.jpg", 80, 80),
    ("real_lr/RealSRSet/comic1.png", 60, 60),
)
CHECK_SIDE = 32


# ------------------------------------------------------------------------------------------ the processor


def clock_hz() -> tuple[float, str]:
    """The core clock while busy: a chain of dependent adds (one per cycle) timed in thread CPU time, compiled
    with the C compiler if there is one; else the clock /proc/cpuinfo reports (often the base clock)."""
    source = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec a, b; unsigned long x = 0, n = 40000000UL;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    for (unsigned long i = 0; i < n; i++) {
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                         "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    printf("%f\n", (double)x / ((b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec)));
    return 0;
}
"""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler and os.uname().machine in ("x86_64", "amd64"):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "clock.c").write_text(source)
            done = subprocess.run([compiler, "-O1", "-o", f"{tmp}/clock", f"{tmp}/clock.c"], capture_output=True)
            if done.returncode == 0:
                runs = [
                    float(subprocess.run([f"{tmp}/clock"], capture_output=True, text=True).stdout) for _ in range(3)
                ]
                return max(runs), "measured (dependent adds)"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) * 1e6, "/proc/cpuinfo cpu MHz"
    return 3e9, "assumed"


def flops_per_cycle(flags: frozenset[str], model: str) -> dict[str, float]:
    """Peak FLOP per cycle per core for fp32 FMA, bf16 and int8 products, from the instruction sets.

    fp32: two FMA pipes of the vector width (AVX-512 on Zen 4 runs on 256-bit pipes, so 2 x 8 lanes x 2);
    bf16: VDPBF16PS does two products per fp32 lane (2x fp32), AMX-BF16 1024 per cycle (Intel's figure);
    int8: VPDPBUSD four per lane (4x fp32), AMX-INT8 2048. Without a native instruction, the fp32 figure.
    """
    zen4 = "AMD" in model.upper() and "avx512f" in flags and "avx512_fp16" not in flags
    if "avx512f" in flags:
        fp32 = 32.0 if zen4 else 64.0
    elif "fma" in flags or "avx2" in flags:
        fp32 = 32.0
    else:
        fp32 = 8.0
    bf16 = 1024.0 if "amx_bf16" in flags else 2 * fp32 if "avx512_bf16" in flags else fp32
    int8 = 2048.0 if "amx_int8" in flags else 4 * fp32 if ("avx512_vnni" in flags or "avx_vnni" in flags) else fp32
    return {"fp32": fp32, "bf16": bf16, "int8": int8}


def header(threads: int) -> dict[str, float]:
    info = cpu_info()
    hz, how = clock_hz()
    per_cycle = flops_per_cycle(info.flags, info.model)
    shown = sorted(f for f in info.flags if f.startswith(("avx512", "amx", "avx_vnni")) or f in ("avx2", "fma"))
    print(f"CPU: {info.describe()}")
    print(f"flags: {' '.join(shown)}")
    print(f"clock {hz / 1e9:.2f} GHz ({how}); torch {torch.__version__}, {threads} threads; load {os.getloadavg()}")
    peaks = {k: v * hz * threads / 1e9 for k, v in per_cycle.items()}
    print(
        "ISA peak for these threads: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s ({per_cycle[k]:.0f}/cycle/core)" for k, v in peaks.items())
    )
    return peaks


# ------------------------------------------------------------------------------------------ measuring


def conv_flops(net: nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds x 2 of every Conv2d in one forward pass of ``net`` on ``x``."""
    total = 0.0

    def hook(module: nn.Conv2d, _inputs, output) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += 2.0 * output.numel() * module.in_channels // module.groups * kh * kw

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        net(x)
    for handle in handles:
        handle.remove()
    return total


def levels(y: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(y, np.ndarray):
        return y.astype(np.float64)
    return y.detach().float().clamp(0, 1).mul(255).round()[0].permute(1, 2, 0).numpy().astype(np.float64)


def difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = a - b
    mse = float((d * d).mean())
    return float(np.abs(d).mean()), (math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse))


def load_crop(path: Path, top: int, left: int, side: int) -> np.ndarray:
    rgb = read_image(path).array
    rgb = np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb[..., :3]
    return np.ascontiguousarray(rgb[top : top + side, left : left + side] if side else rgb)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255).contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------------------ the variants


def openvino_runner(net: nn.Module, hint: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """realesr.infer.openvino_backend (dynamic shapes, as the Upscaler would use it)."""
    from realesr.infer.openvino_backend import OpenVinoNetwork

    try:
        start = time.perf_counter()
        backend = OpenVinoNetwork(net, hint=hint, threads=torch.get_num_threads())
    except RealesrError as err:
        print(f"openvino: {err}", file=sys.stderr)
        return None
    print(f"openvino {hint}: converted and compiled in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return backend


def compiled_runner(net: nn.Module, dtype: torch.dtype, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """torch.compile (inductor) with freezing: weights constant-folded and pre-packed, conv+activation fused."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    model = torch.compile(copy.deepcopy(net).to(dtype), dynamic=False)
    start = time.perf_counter()
    with torch.inference_mode():
        model(x.to(dtype))
    print(
        f"torch.compile (inductor, freezing) {dtype}: first call {time.perf_counter() - start:.1f} s", file=sys.stderr
    )
    return lambda t: model(t.to(dtype))


def int8_runner(net: nn.Module, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Post-training static int8 (torch.ao FX, x86 backend: per-channel weights, per-tensor activations),
    calibrated on 32-pixel crops of six training photos of shared/data (not the measured image)."""
    import warnings

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    photos = sorted((DATA / "train/photos").glob("*.png"))[:6]
    calibration = [to_tensor(load_crop(p, 100, 100, 32)).contiguous() for p in photos]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = copy.deepcopy(net).eval()
        for module in source.modules():
            if isinstance(module, nn.LeakyReLU):
                module.inplace = False  # quantized leaky_relu warns on every call otherwise
        prepared = prepare_fx(source, get_default_qconfig_mapping("x86"), (calibration[0],))
        with torch.inference_mode():
            for crop in calibration:
                prepared(crop)
        model = convert_fx(prepared)
    return lambda t: model(t.contiguous())


def variants(args, loaded, rgb: np.ndarray) -> dict[str, tuple[Callable[[], object], str]]:
    """name -> (run, precision of its arithmetic for the peak)."""
    net = loaded.net.eval()
    official_net = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    x = to_tensor(rgb)
    fp32_up = Upscaler(loaded, device="cpu", precision="fp32", tile=0)
    default_up = Upscaler(loaded, device="cpu")
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    plain = copy.deepcopy(cl).to(torch.bfloat16)
    contiguous = copy.deepcopy(net).to(torch.bfloat16)
    found: dict[str, tuple[Callable[[], object], str]] = {
        "official RealESRGANer fp32": (lambda: official_enhance(official_net, bgr)[..., ::-1], "fp32"),
        "realesr fp32 (--precision fp32)": (lambda: fp32_up(rgb), "fp32"),
        f"realesr default (auto: {default_up.precision})": (lambda: default_up(rgb), default_up.precision),
        "network fp32 channels-last": (lambda: cl(x), "fp32"),
        f"network as default runs it ({default_up.precision})": (
            lambda: default_up._net(x.to(default_up._input_dtype)),
            default_up.precision,
        ),
        "network bf16 eager cast, channels-last": (lambda: plain(x.bfloat16()), "bf16"),
        "network bf16 eager cast, contiguous": (lambda: contiguous(x.bfloat16().contiguous()), "bf16"),
    }
    unfused = cpu_packed.pack_network(net, torch.bfloat16, keep_fp32=("first", "last"), fuse=False)
    if unfused is not None:
        found["network bf16 packed, not fused"] = (lambda: unfused(x), "bf16")
    all_bf16 = cpu_packed.pack_network(net, torch.bfloat16)
    if all_bf16 is not None:
        found["network bf16 packed+fused, bf16 ends"] = (lambda: all_bf16(x), "bf16")
    if args.openvino:
        for hint, kind in (("bf16", "bf16"), ("f32", "fp32")):
            run = openvino_runner(net, hint)
            if run is not None:
                found[f"openvino {hint} hint"] = ((lambda r=run: r(x)), kind)
    if args.int8:
        run8 = int8_runner(net, x)
        found["network int8 (static PTQ, torch.ao x86)"] = ((lambda: run8(x)), "int8")
    if args.compile:
        for dtype, kind in ((torch.bfloat16, "bf16"),):
            run = compiled_runner(cl, dtype, x)
            found[f"torch.compile freezing {kind}"] = ((lambda r=run: r(x)), kind)
    return found


def measure(args) -> None:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    peaks = header(torch.get_num_threads())
    loaded = load_model(args.model, allow_download=False, progress=False)
    rgb = load_crop(args.image, args.top, args.left, args.crop)
    x = to_tensor(rgb)
    flops = conv_flops(loaded.net, x)
    megapixels = rgb.shape[0] * rgb.shape[1] / 1e6
    print(
        f"{args.model} on {rgb.shape[1]}x{rgb.shape[0]} of {args.image.name}: {flops / 1e9:.1f} GFLOP a pass; "
        f"{args.rounds} alternating rounds after a warm-up; {'process CPU' if args.cpu_time else 'wall'} seconds\n"
    )
    runs = variants(args, loaded, rgb)
    with torch.inference_mode():
        reference = levels(runs["network fp32 channels-last"][0]())
        quality = {}
        for name, (run, _) in runs.items():
            out = run()
            quality[name] = difference(
                levels(np.ascontiguousarray(out) if isinstance(out, np.ndarray) else out), reference
            )
        times: dict[str, list[float]] = {name: [] for name in runs}
        # Process CPU time with one thread: what the work costs, nearly independent of other jobs on the machine.
        clock = time.process_time if args.cpu_time else time.perf_counter
        for index in range(args.rounds):
            order = list(runs) if index % 2 == 0 else list(reversed(runs))
            for name in order:
                start = clock()
                runs[name][0]()
                times[name].append(clock() - start)
    official = statistics.median(times["official RealESRGANer fp32"])
    print(f"{'variant':<46}{'median s':>9}{'vs official':>12}{'LR MP/s':>9}{'GFLOP/s':>9}{'of peak':>8}  vs fp32")
    for name, (_, kind) in runs.items():
        t = statistics.median(times[name])
        mean, psnr = quality[name]
        gflops = flops / t / 1e9
        fraction = gflops / peaks[kind if kind in peaks else "fp32"]
        print(
            f"{name:<46}{t:>9.3f}{official / t:>11.2f}x{megapixels / t:>9.4f}{gflops:>9.0f}{fraction:>8.1%}  "
            f"{mean:.3f} lv / {psnr:.1f} dB"
        )
    print(f"\nload after: {os.getloadavg()}")


# ------------------------------------------------------------------------------------------ the check table


def check_model(name: str) -> dict | None:
    if not find_model(name).path:
        return None
    loaded = load_model(name, allow_download=False, progress=False)
    bf16 = Upscaler(loaded, device="cpu", precision="bf16", tile=0)
    diffs = []
    for file, top, left in CHECK_CROPS:
        x = to_tensor(load_crop(DATA / file, top, left, CHECK_SIDE))
        with torch.inference_mode():
            diffs.append(levels(loaded.net(x.contiguous())) - levels(bf16.upscale_tensor(x)))
    d = np.concatenate([a.ravel() for a in diffs])
    mse = float((d * d).mean())
    return {
        "mean_levels": round(float(np.abs(d).mean()), 4),
        "psnr_db": round(10 * math.log10(255.0**2 / mse), 2),
        "side": CHECK_SIDE,
        "per_crop_mean": [round(float(np.abs(a).mean()), 4) for a in diffs],
        "source": loaded.source.split(":")[0],
    }


def write_checks(path: Path) -> None:
    info = cpu_info()
    table = {
        "about": "bf16 (realesr.infer.precision.half_network) vs fp32, 8-bit outputs, written by bench/cpu.py --checks",
        "cpu": info.describe(),
        "torch": torch.__version__,
        "crops": [f"{f} ({t},{left}) {CHECK_SIDE}px" for f, t, left in CHECK_CROPS],
        "models": {},
    }
    for name, entry in ZOO.items():
        if entry.output_resize:
            continue  # the same weights as its x4 model; the bicubic resize after it adds no bf16 arithmetic
        result = check_model(name)
        verdict = "not on disk" if result is None else f"{result['mean_levels']} levels, {result['psnr_db']} dB"
        print(f"{name}: {verdict}", file=sys.stderr)
        if result is not None:
            table["models"][name] = result
    for name, entry in ZOO.items():
        base = table["models"].get(entry.weights_of or "")
        if entry.output_resize and base:
            table["models"][name] = dict(base, note=f"the weights of {entry.weights_of}")
    path.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="RealESRGAN_x4plus")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--crop", type=int, default=64, help="crop side (0: whole image)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--left", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--cpu-time", action="store_true", help="time in process CPU seconds (use with --threads 1 on a busy machine)"
    )
    parser.add_argument("--openvino", action="store_true", help="also OpenVINO with bf16 and f32 hints")
    parser.add_argument("--int8", action="store_true", help="also int8 post-training quantization")
    parser.add_argument("--compile", action="store_true", help="also torch.compile with freezing (slow to build)")
    parser.add_argument("--checks", action="store_true", help="measure bf16 vs fp32 per zoo model; write the table")
    args = parser.parse_args()
    if args.checks:
        write_checks(Path(precision.__file__).with_name(precision.CHECKS_FILE))
    else:
        measure(args)


if __name__ == "__main__":
    main()
