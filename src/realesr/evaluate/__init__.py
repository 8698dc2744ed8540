"""``realesr eval``: the SR benchmark protocol (PSNR/SSIM on Y), blind degradations and NIQE on real photos."""

from realesr.evaluate.data import Dataset, find_dataset, find_datasets
from realesr.evaluate.models import BICUBIC, EvalModel, bicubic_model, load_eval_model
from realesr.evaluate.protocol import (
    EvalConfig,
    EvalResult,
    FigureSample,
    ImageScore,
    SummaryRow,
    evaluate,
)
from realesr.evaluate.report import (
    format_table,
    render_figure,
    save_figure,
    write_per_image_csv,
)

__all__ = [
    "BICUBIC",
    "Dataset",
    "EvalConfig",
    "EvalModel",
    "EvalResult",
    "FigureSample",
    "ImageScore",
    "SummaryRow",
    "bicubic_model",
    "evaluate",
    "find_dataset",
    "find_datasets",
    "format_table",
    "load_eval_model",
    "render_figure",
    "save_figure",
    "write_per_image_csv",
]
