"""Tables (markdown, JSON, CSV), the per-image CSV and the comparison figure of an evaluation."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from realesr.atomic import atomic_write_bytes
from realesr.errors import ImageWriteError, UsageError
from realesr.evaluate.protocol import FigureSample, ImageScore, SummaryRow
from realesr.imagefiles import format_for_path, write_image

FORMATS = ("md", "json", "csv")
SUMMARY_FIELDS = ("model", "dataset", "n", "psnr", "ssim", "niqe", "failed", "protocol", "scale")
DECIMALS = {"psnr": 3, "ssim": 4, "niqe": 4}


def _cell(value, key: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.{DECIMALS.get(key, 4)}f}"
    return str(value)


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else "inf"
    return value


def format_table(rows: Sequence[SummaryRow], fmt: str = "md", metrics: Sequence[str] = ("psnr", "ssim", "niqe")) -> str:
    """The summary as a markdown table, a JSON list of objects or CSV (metrics not computed are null/empty)."""
    if fmt not in FORMATS:
        raise UsageError(f"table format: expected one of {', '.join(FORMATS)}, got {fmt!r}", params=("fmt",))
    if fmt == "json":
        return json.dumps([{k: _json_value(v) for k, v in row.as_dict().items()} for row in rows], indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(SUMMARY_FIELDS)
        for row in rows:
            d = row.as_dict()
            writer.writerow(["" if d[k] is None else d[k] for k in SUMMARY_FIELDS])
        return buffer.getvalue()
    shown = [m for m in ("psnr", "ssim", "niqe") if m in metrics]
    titles = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "niqe": "NIQE ↓"}
    header = ["model", "dataset", "n"] + [titles[m] for m in shown]
    any_failed = any(row.failed for row in rows)
    if any_failed:
        header.append("failed")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for row in rows:
        d = row.as_dict()
        cells = [row.model, row.dataset, str(row.n)] + [_cell(d[m], m) for m in shown]
        if any_failed:
            cells.append(str(row.failed))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_per_image_csv(path: Path, scores: Sequence[ImageScore]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "dataset", "image", "psnr", "ssim", "niqe", "seconds"])
    for s in scores:
        writer.writerow(
            [s.model, s.dataset, s.image]
            + ["" if v is None else f"{v:.6f}" for v in (s.psnr, s.ssim, s.niqe)]
            + [f"{s.seconds:.3f}"]
        )
    try:
        atomic_write_bytes(Path(path), buffer.getvalue().encode("utf-8"))
    except OSError as err:
        raise ImageWriteError(f"cannot write {path}: {err}") from err


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _wrap(text: str, font, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """``text`` in lines no wider than ``width``, broken after '_', '-' or spaces (model names are long)."""
    import re

    pieces = [p for p in re.split(r"(?<=[_\- ])", text) if p]
    lines: list[str] = []
    for piece in pieces:
        if lines and draw.textlength(lines[-1] + piece, font=font) <= width:
            lines[-1] += piece
        else:
            lines.append(piece)
    return lines or [""]


def render_figure(samples: Sequence[FigureSample], zoom: int = 1, footer: str | None = None) -> Image.Image:
    """Rows of aligned crops (reference, bicubic, each model), each labelled with its name and scores.

    Crops are shown pixel for pixel, magnified by the integer ``zoom`` (pixel repetition, no smoothing).
    """
    if not samples:
        raise UsageError("no image could be evaluated, so there is nothing to draw")
    if zoom < 1:
        raise UsageError(f"zoom must be >= 1, got {zoom}")
    panel_size = max(sample.window[2] for sample in samples) * zoom
    labels = ["__reference__"] + [label for label in samples[0].panels]
    for sample in samples[1:]:
        labels += [label for label in sample.panels if label not in labels]
    title_font, caption_font = _font(15), _font(13)
    pad, caption_h, row_title_h = 8, 20, 20
    measure_titles = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    titles = [
        _wrap(samples[0].reference_label if label == "__reference__" else label, title_font, panel_size, measure_titles)
        for label in labels
    ]
    title_h = 4 + 18 * max(len(lines) for lines in titles)
    cols = len(labels)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    texts = [footer or ""] + [
        f"{s.dataset}/{s.image}  (crop {s.window[2]}x{s.window[2]} at x={s.window[1]}, y={s.window[0]})"
        for s in samples
    ]
    widest = int(max(measure.textlength(t, font=caption_font) for t in texts))
    width = max(pad + cols * (panel_size + pad), 2 * pad + widest)
    row_h = row_title_h + panel_size + caption_h + pad
    height = title_h + pad + len(samples) * row_h + (22 if footer else 0)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, lines in enumerate(titles):
        for i, line in enumerate(lines):
            draw.text((pad + c * (panel_size + pad), 4 + 18 * i), line, fill="black", font=title_font)
    for r, sample in enumerate(samples):
        top = title_h + pad + r * row_h
        _draw_row(canvas, draw, sample, labels, top, (pad, panel_size, row_title_h), zoom, caption_font)
    if footer:
        draw.text((pad, height - 20), footer, fill=(90, 90, 90), font=caption_font)
    return canvas


def _draw_row(canvas, draw, sample: FigureSample, labels: list[str], top: int, layout, zoom: int, font) -> None:
    """One image's row: its name and crop window, then each panel with its caption ("failed" where none)."""
    pad, panel_size, row_title_h = layout
    y, x, size = sample.window
    draw.text(
        (pad, top + 2),
        f"{sample.dataset}/{sample.image}  (crop {size}x{size} at x={x}, y={y})",
        fill=(90, 90, 90),
        font=font,
    )
    for c, label in enumerate(labels):
        crop = sample.reference if label == "__reference__" else sample.panels.get(label)
        left = pad + c * (panel_size + pad)
        if crop is None:
            draw.text((left, top + row_title_h + panel_size // 2), "failed", fill="red", font=font)
            continue
        panel = Image.fromarray(crop)
        if zoom > 1:
            panel = panel.resize((crop.shape[1] * zoom, crop.shape[0] * zoom), Image.Resampling.NEAREST)
        canvas.paste(panel, (left, top + row_title_h))
        caption = sample.captions.get(label, "")
        if caption:
            draw.text((left, top + row_title_h + panel_size + 3), caption, fill="black", font=font)


def save_figure(path: Path, samples: Sequence[FigureSample], zoom: int = 1, footer: str | None = None) -> None:
    path = Path(path)
    format_for_path(path)  # before the drawing: ImageWriteError for an extension we do not write
    figure = render_figure(samples, zoom=zoom, footer=footer)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.asarray(figure.convert("RGB")), quality=92)
