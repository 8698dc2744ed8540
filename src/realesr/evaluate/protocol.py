"""The evaluation protocol: LR generation, upscaling, metrics per image, means per model and dataset."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from realesr.degrade import DegradationConfig, degraded_lr
from realesr.errors import ConfigError, RealesrError, UsageError
from realesr.evaluate.data import Dataset
from realesr.evaluate.models import EvalModel, bicubic_model
from realesr.imagefiles import PlannedOutput, read_rgb, to_uint8, write_image
from realesr.metrics import imresize, niqe, psnr, ssim

METRICS = ("psnr", "ssim", "niqe")
FULL_REFERENCE = ("psnr", "ssim")
PROTOCOLS = ("bicubic", "degrade", "no-ref")


@dataclass(frozen=True)
class EvalConfig:
    """How images are scored.

    protocol: ``bicubic`` (LR = MATLAB bicubic of the HR, rounded), ``degrade`` (LR = the Real-ESRGAN
    degradation chain from ``seed``) or ``no-ref`` (the images are the LR inputs; NIQE only).
    crop_border: pixels cut from each side before PSNR/SSIM; None means ``scale``.
    """

    scale: int = 4
    metrics: tuple[str, ...] = ("psnr", "ssim")
    protocol: str = "bicubic"
    seed: int = 0
    crop_border: int | None = None
    niqe_crop_border: int = 0

    def __post_init__(self) -> None:
        if self.scale not in (1, 2, 3, 4, 8):
            raise ConfigError(f"scale: expected 1, 2, 3, 4 or 8, got {self.scale}")
        if not self.metrics:
            raise ConfigError("metrics: at least one of psnr, ssim, niqe")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ConfigError(f"metrics: unknown {', '.join(unknown)} (choose from {', '.join(METRICS)})")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.protocol == "no-ref" and any(m in FULL_REFERENCE for m in self.metrics):
            raise ConfigError("metrics: psnr and ssim need reference images; without them (no-ref) only niqe")
        if self.crop_border is not None and self.crop_border < 0:
            raise ConfigError(f"crop_border: must be >= 0, got {self.crop_border}")

    @property
    def border(self) -> int:
        return self.scale if self.crop_border is None else self.crop_border


@dataclass
class ImageScore:
    model: str
    dataset: str
    image: str
    psnr: float | None = None
    ssim: float | None = None
    niqe: float | None = None
    seconds: float = 0.0


@dataclass
class SummaryRow:
    model: str
    dataset: str
    n: int
    psnr: float | None
    ssim: float | None
    niqe: float | None
    failed: int
    protocol: str
    scale: int

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "n": self.n,
            "psnr": self.psnr,
            "ssim": self.ssim,
            "niqe": self.niqe,
            "failed": self.failed,
            "protocol": self.protocol,
            "scale": self.scale,
        }


@dataclass
class FigureSample:
    """Aligned crops of one image for the comparison figure (all at output resolution)."""

    dataset: str
    image: str
    reference_label: str
    reference: np.ndarray
    window: tuple[int, int, int]  # top, left, size in output pixels
    panels: dict[str, np.ndarray] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)


@dataclass
class EvalResult:
    rows: list[SummaryRow]
    per_image: list[ImageScore]
    problems: list[str]
    figure_samples: list[FigureSample]


def crop_to_multiple(img: np.ndarray, multiple: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % multiple, : w - w % multiple]


def degraded_lr_image(hr: np.ndarray, scale: int, seed: int, name: str) -> np.ndarray:
    """HxWx3 uint8 -> the seeded degraded LR (uint8) of :func:`realesr.degrade.degraded_lr`."""
    gt = torch.from_numpy(hr.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    lq = degraded_lr(gt, DegradationConfig.for_scale(scale), scale, seed, name)
    return to_uint8(lq[0].permute(1, 2, 0).cpu().numpy())


def detail_window(img: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size``-pixel window with the most gradient energy (where models differ)."""
    h, w = img.shape[:2]
    if h <= size or w <= size:
        return 0, 0
    grey = img.astype(np.float64).mean(axis=2)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(1, size // 4)
    best, best_yx = -1.0, (0, 0)
    margin_y, margin_x = min(h - size, h // 10), min(w - size, w // 10)  # avoid border artefacts
    for y in range(margin_y, h - size - margin_y + 1, step):
        for x in range(margin_x, w - size - margin_x + 1, step):
            total = integral[y + size, x + size] - integral[y, x + size] - integral[y + size, x] + integral[y, x]
            if total > best:
                best, best_yx = total, (y, x)
    return best_yx


def _fmt_caption(score: ImageScore) -> str:
    parts = []
    if score.psnr is not None:
        parts.append(f"{score.psnr:.2f} dB")
    if score.ssim is not None:
        parts.append(f"SSIM {score.ssim:.3f}")
    if score.niqe is not None:
        parts.append(f"NIQE {score.niqe:.2f}")
    return "  ".join(parts)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def evaluate(
    models: Sequence[EvalModel],
    datasets: Sequence[Dataset],
    config: EvalConfig,
    save_dir: Path | None = None,
    figure_count: int = 0,
    figure_crop: int = 160,
    progress: Callable[[str, int, int, str], None] | None = None,
    on_problem: Callable[[str], None] | None = None,
) -> EvalResult:
    """Score every model on every dataset; a failing image or model is reported and the rest goes on.

    Per dataset each image is read once and its LR made once, then every model upscales it. ``progress(dataset,
    done, total, what)`` is called before each image and model (``what`` names them) and once at the end of a
    dataset (done == total); the library draws nothing itself.
    """
    run = _Evaluation(config, save_dir, figure_crop, progress, on_problem)
    usable = []
    for model in unique_labels(models):
        if model.scale is not None and model.scale != config.scale:
            run.problem(
                f"model {model.label} upscales x{model.scale}, not x{config.scale} (the scale evaluated): skipped"
            )
        else:
            usable.append(model)
    for dataset in datasets:
        picks: set[int] = set()
        if figure_count > 0 and len(run.samples) < figure_count:
            count = min(figure_count - len(run.samples), len(dataset.paths))
            picks = {round(i) for i in np.linspace(0, len(dataset.paths) - 1, count)}
        run.dataset(dataset, usable, picks)
    return EvalResult(rows=run.rows, per_image=run.per_image, problems=run.problems, figure_samples=run.samples)


class _Evaluation:
    """One evaluation's results as they come: per image, per dataset and model, figure samples, problems."""

    def __init__(self, config: EvalConfig, save_dir, figure_crop: int, progress, on_problem) -> None:
        self.config, self.save_dir, self.figure_crop = config, save_dir, figure_crop
        self.progress, self.on_problem = progress, on_problem
        self.want = set(config.metrics)
        self.figure_bicubic = bicubic_model(config.scale)
        self.problems: list[str] = []
        self.per_image: list[ImageScore] = []
        self.rows: list[SummaryRow] = []
        self.samples: list[FigureSample] = []

    def problem(self, message: str) -> None:
        self.problems.append(message)
        if self.on_problem is not None:
            self.on_problem(message)

    def _progress(self, dataset: str, done: int, total: int, what: str) -> None:
        if self.progress is not None:
            self.progress(dataset, done, total, what)

    def dataset(self, dataset: Dataset, usable: list[EvalModel], picks: set[int]) -> None:
        """Every image of ``dataset`` through every usable model, then a summary row per model."""
        scores: dict[str, list[ImageScore]] = {m.label: [] for m in usable}
        failed = {m.label: 0 for m in usable}
        total = len(dataset.paths)
        for index, path in enumerate(dataset.paths):
            self._progress(dataset.name, index, total, path.name)
            try:
                hr, lr = _inputs(path, self.config)
            except RealesrError as err:
                self.problem(f"{dataset.name}: {err}")
                for label in failed:
                    failed[label] += 1
                continue
            sample = None
            if index in picks:
                config = self.config
                crop, bicubic = self.figure_crop, self.figure_bicubic
                sample = _start_sample(dataset.name, path, hr, lr, config.scale, crop, bicubic, config.protocol)
            for model in usable:
                self._progress(dataset.name, index, total, f"{path.name}: {model.label}")
                score = self.image(model, dataset.name, path, hr, lr, sample)
                if score is None:
                    failed[model.label] += 1
                else:
                    scores[model.label].append(score)
            if sample is not None:
                self.samples.append(sample)
        self._progress(dataset.name, total, total, "")
        for model in usable:
            self.rows.append(self._row(model.label, dataset.name, scores[model.label], failed[model.label]))

    def image(self, model: EvalModel, dataset: str, path: Path, hr, lr, sample) -> ImageScore | None:
        """One model on one image: its scores (None when it failed: reported as a problem)."""
        config, want = self.config, self.want
        score = ImageScore(model=model.label, dataset=dataset, image=path.name)
        try:
            start = time.perf_counter()
            sr = np.asarray(model.upscale(lr))
            score.seconds = time.perf_counter() - start
            expected = (lr.shape[0] * config.scale, lr.shape[1] * config.scale, 3)
            if sr.shape != expected or sr.dtype != np.uint8:
                raise UsageError(
                    f"model {model.label} returned {sr.dtype} {sr.shape} for a {lr.shape} input, "
                    f"expected uint8 {expected}"
                )
            if "psnr" in want:
                score.psnr = psnr(sr, hr, crop_border=config.border)
            if "ssim" in want:
                score.ssim = ssim(sr, hr, crop_border=config.border)
            if "niqe" in want:
                try:
                    score.niqe = niqe(sr, crop_border=config.niqe_crop_border)
                except RealesrError as err:
                    if want == {"niqe"}:
                        raise
                    # PSNR/SSIM of this image still count; only its NIQE is missing.
                    self.problem(f"{dataset}/{path.name}: {model.label}: {err}")
        except (RealesrError, RuntimeError, ValueError) as err:
            # RuntimeError: what torch raises for out-of-memory and shape problems inside a network.
            reason = str(err) if isinstance(err, RealesrError) else f"{type(err).__name__}: {err}"
            self.problem(f"{dataset}/{path.name}: {model.label}: {reason.splitlines()[0] if reason else ''}")
            return None
        self.per_image.append(score)
        if self.save_dir is not None:
            _save_output(saved_image_path(self.save_dir, dataset, model.label, path), sr, self.problem)
        if sample is not None:
            sample.panels[model.label] = _crop(sr, sample)
            sample.captions[model.label] = _fmt_caption(score)
        return score

    def _row(self, label: str, dataset: str, done: list[ImageScore], failed: int) -> SummaryRow:
        want = self.want
        return SummaryRow(
            model=label,
            dataset=dataset,
            n=len(done),
            psnr=_mean([s.psnr for s in done if s.psnr is not None]) if "psnr" in want else None,
            ssim=_mean([s.ssim for s in done if s.ssim is not None]) if "ssim" in want else None,
            niqe=_mean([s.niqe for s in done if s.niqe is not None]) if "niqe" in want else None,
            failed=failed,
            protocol=self.config.protocol,
            scale=self.config.scale,
        )


def _inputs(path: Path, config: EvalConfig):
    """(HR or None, LR) of one image under the protocol: no-ref scores the image itself; the others crop the HR
    to a multiple of the scale and make its LR (MATLAB bicubic, or the seeded degradation)."""
    image = to_uint8(read_rgb(path))
    if config.protocol == "no-ref":
        return None, image
    scale = config.scale
    hr = crop_to_multiple(image, scale)
    if hr.shape[0] < scale or hr.shape[1] < scale:
        raise UsageError(f"{path}: smaller than the scale factor")
    if config.protocol == "degrade":
        return hr, degraded_lr_image(hr, scale, config.seed, path.name)
    return hr, to_uint8(imresize(hr, scale=1.0 / scale), peak=255.0)


def unique_labels(models: Sequence[EvalModel]) -> list[EvalModel]:
    """The models with labels made unique (``x``, ``x-2``): two files named alike keep their rows apart."""
    labels: dict[str, int] = {}
    out = []
    for model in models:
        count = labels.get(model.label, 0) + 1
        labels[model.label] = count
        if count > 1:
            model = EvalModel(label=f"{model.label}-{count}", upscale=model.upscale, scale=model.scale)
        out.append(model)
    return out


def saved_image_path(save_dir: Path, dataset: str, label: str, image: Path) -> Path:
    """Where ``save_dir`` keeps a model's output of an image: SAVE_DIR/DATASET/MODEL/NAME.png."""
    return Path(save_dir) / dataset / _safe(label) / f"{Path(image).stem}.png"


def planned_outputs(
    models: Sequence[EvalModel], datasets: Sequence[Dataset], save_dir: Path | None, scale: int
) -> list[PlannedOutput]:
    """Every image :func:`evaluate` would save, for the output plan (checked before any model runs)."""
    if save_dir is None:
        return []
    return [
        PlannedOutput(
            saved_image_path(save_dir, dataset.name, model.label, path),
            f"the output of {model.label} for {path}",
            ("save_images",),
        )
        for dataset in datasets
        for model in unique_labels(models)
        if model.scale is None or model.scale == scale
        for path in dataset.paths
    ]


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in label) or "model"


def _crop(img: np.ndarray, sample: FigureSample) -> np.ndarray:
    y, x, size = sample.window
    return img[y : y + size, x : x + size].copy()


def _start_sample(dataset, path, hr, lr, scale, crop, bicubic: EvalModel, protocol: str) -> FigureSample:
    """The reference crop (HR, or the LR magnified by pixel repetition) and the bicubic panel."""
    if hr is not None:
        reference, label = hr, "HR (ground truth)"
    else:
        reference = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)
        label = f"input (x{scale} nearest)"
    size = min(crop, reference.shape[0], reference.shape[1])
    size -= size % scale
    y, x = detail_window(reference, size)
    y, x = y - y % scale, x - x % scale
    window = (y, x, size)
    sample = FigureSample(
        dataset=dataset,
        image=path.name,
        reference_label=label,
        reference=reference[y : y + size, x : x + size].copy(),
        window=window,
    )
    if hr is not None and protocol == "degrade":  # the degraded input is part of the story
        nearest = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)
        sample.panels[f"input (x{scale} nearest)"] = _crop(nearest, sample)
    up = bicubic.upscale(lr)
    sample.panels["bicubic"] = _crop(up, sample)
    if hr is not None and min(hr.shape[:2]) > 2 * scale:  # a caption only where the border leaves pixels
        sample.captions["bicubic"] = f"{psnr(up, hr, crop_border=scale):.2f} dB"
    return sample


def _save_output(path: Path, img: np.ndarray, problem: Callable[[str], None]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, img)
    except OSError as err:
        problem(f"cannot write {path}: {err}")
    except RealesrError as err:
        problem(str(err))
