"""Training data: image listing and checks, deterministic resumable sampling, patch loading."""

from realesr.data.dataset import (
    ImageRecord,
    ResumableSampler,
    TrainPatchDataset,
    draw_probabilities,
    list_images,
    read_rgb,
    samples_per_epoch,
    scan_images,
)

__all__ = [
    "ImageRecord",
    "ResumableSampler",
    "TrainPatchDataset",
    "draw_probabilities",
    "list_images",
    "read_rgb",
    "samples_per_epoch",
    "scan_images",
]
