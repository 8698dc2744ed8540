"""Training data: image listing and checks, deterministic resumable sampling, patch loading."""

from realesr.data.dataset import (
    ImageRecord,
    ResumableSampler,
    TrainPatchDataset,
    check_pairs,
    collate_mixed,
    draw_probabilities,
    list_images,
    read_pair_list,
    read_rgb,
    samples_per_epoch,
    scan_images,
    scan_pairs,
)

__all__ = [
    "ImageRecord",
    "ResumableSampler",
    "TrainPatchDataset",
    "check_pairs",
    "collate_mixed",
    "draw_probabilities",
    "list_images",
    "read_pair_list",
    "read_rgb",
    "samples_per_epoch",
    "scan_images",
    "scan_pairs",
]
