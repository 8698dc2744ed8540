"""Paired training data (issue 13 §1): real LR/HR folders matched by name, aligned crops with the same flips
(checked against a known relation LR = 4x4 block mean of HR, and shown to catch a one-pixel shift), the synthetic
chain off for paired samples, paired and synthetic sources mixed in one batch and in a short run."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realesr.data import (
    TrainPatchDataset,
    check_pairs,
    collate_mixed,
    list_images,
    read_pair_list,
    scan_pairs,
)
from realesr.errors import ConfigError, DataError
from realesr.train import load_config, train
from realesr.train.synth import PairSynthesizer, degradation_config, params_sampler

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
S = 4


def block_mean(hr: np.ndarray) -> np.ndarray:
    h, w, c = hr.shape
    return np.round(hr.astype(np.float64).reshape(h // S, S, w // S, S, c).mean(axis=(1, 3))).astype(np.uint8)


def make_pairs(shared_data: Path, folder: Path, shift: int = 0, n: int = 3) -> tuple[Path, Path]:
    """HR: 192x128 crops of real photos; LR: their 4x4 block means (shifted by ``shift`` LR pixels)."""
    hr_dir, lr_dir = folder / "hr", folder / "lr"
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir()
    for path in list_images(shared_data / "train" / "photos")[:n]:
        photo = np.asarray(Image.open(path).convert("RGB"))
        hr = photo[100 : 100 + 128 + S * shift, 200 : 200 + 192 + S * shift]
        lr = block_mean(hr)[shift:, shift:]
        Image.fromarray(np.ascontiguousarray(hr[:128, :192])).save(hr_dir / f"{path.stem}.png")
        Image.fromarray(lr).save(lr_dir / f"{path.stem}.png")
    return hr_dir, lr_dir


def dataset(hr_dir: Path, lr_dir: Path) -> TrainPatchDataset:
    records, notes = scan_pairs(list_images(hr_dir), list_images(lr_dir), S, 64 // S)
    assert notes == [] and len(records) == 3
    return TrainPatchDataset(records, 64, seed=7, use_hflip=True, use_rot=True, scale=S, gt_size=64)


def mismatch(sample: dict) -> float:
    gt = np.round(sample["gt"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    lq = np.round(sample["lq"].numpy().transpose(1, 2, 0) * 255).astype(np.int16)
    return float(np.abs(block_mean(gt).astype(np.int16) - lq).mean())


def test_paired_crops_are_aligned_with_the_same_flips(tmp_path, shared_data):
    data = dataset(*make_pairs(shared_data, tmp_path))
    samples = [data[(i % 3, 0, i)] for i in range(24)]
    for sample in samples:
        assert sample["gt"].shape == (3, 64, 64) and sample["lq"].shape == (3, 16, 16)
        assert "params" not in sample  # the synthetic chain is off for paired sources
        assert mismatch(sample) == 0.0  # exactly the LR of this HR crop, flipped and rotated alike
    # the crops move and the flips happen (otherwise the alignment check says little)
    assert len({sample["gt"].numpy().tobytes() for sample in samples}) == 24


def test_a_one_pixel_shift_is_caught(tmp_path, shared_data):
    data = dataset(*make_pairs(shared_data, tmp_path, shift=1))
    assert np.mean([mismatch(data[(i % 3, 0, i)]) for i in range(12)]) > 2.0


def test_unmatched_and_wrong_size_pairs_are_skipped_with_a_note(tmp_path, shared_data):
    hr_dir, lr_dir = make_pairs(shared_data, tmp_path)
    names = sorted(p.name for p in hr_dir.iterdir())
    (lr_dir / names[0]).unlink()  # an HR without LR
    Image.new("RGB", (40, 32)).save(lr_dir / names[1])  # 160x128 would be x4; the HR is 192x128
    Image.new("RGB", (48, 32)).save(lr_dir / "orphan.png")  # an LR without HR
    records, notes = scan_pairs(list_images(hr_dir), list_images(lr_dir), S, 16)
    assert [Path(r.path).name for r in records] == [names[2]]
    assert Path(records[0].lr_path) == lr_dir / names[2]
    text = "\n".join(notes)
    assert f"no LR image named {Path(names[0]).stem}" in text
    assert "192x128" in text and "40x32" in text and "not x4" in text
    assert "orphan.png: no HR image" in text


@pytest.mark.slow
def test_a_mixed_batch_degrades_only_the_synthetic_samples(tmp_path, shared_data):
    hr_dir, lr_dir = make_pairs(shared_data, tmp_path)
    paired_records, _ = scan_pairs(list_images(hr_dir), list_images(lr_dir), S, 16)
    from realesr.data import scan_images

    synthetic_records, _ = scan_images(list_images(shared_data / "train" / "photos")[:2], 96)
    deg = degradation_config(S, {})
    data = TrainPatchDataset(
        synthetic_records + paired_records, 96, seed=1, params_fn=params_sampler(deg), scale=S, gt_size=64
    )
    batch = collate_mixed([data[(i, 0, i)] for i in (0, 2, 1, 3)])
    assert batch["gt"].shape == (2, 3, 96, 96) and batch["paired_gt"].shape == (2, 3, 64, 64)
    synth = PairSynthesizer(deg, S, 64, pool_size=0, batch_size=4)
    params = {k: v for k, v in batch["params"].items()}
    lq, gt, gt_usm = synth(
        batch["gt"], params, torch.Generator().manual_seed(0), paired=(batch["paired_lq"], batch["paired_gt"])
    )
    assert lq.shape == (4, 3, 16, 16) and gt.shape == gt_usm.shape == (4, 3, 64, 64)
    torch.testing.assert_close(lq[2:], batch["paired_lq"], rtol=0, atol=0)  # the real LR, untouched
    torch.testing.assert_close(gt[2:], batch["paired_gt"], rtol=0, atol=0)
    # the synthetic half went through the chain: its LR is not a plain block mean of its GT
    block = torch.nn.functional.avg_pool2d(gt[:2], S)
    assert (lq[:2] - block).abs().mean() > 0.01


@pytest.mark.slow
@pytest.mark.usefixtures("single_torch_thread")
def test_a_run_mixing_paired_and_synthetic_sources(tmp_path, shared_data):
    hr_dir, lr_dir = make_pairs(shared_data, tmp_path / "pairs")
    photos = shared_data / "train" / "photos"
    cfg = load_config(
        SMOKE,
        [
            f"output_dir={tmp_path}",
            "val.folder=",
            "stage=esrnet",
            "total_iters=2",
            "save_every=100",
            f"data.train=[{photos}, {{path: {hr_dir}, lr: {lr_dir}, weight: 1}}]",
        ],
    )
    result = train(cfg, show_progress=False)
    assert result.iteration == 2
    text = (result.run_dir / "train.log").read_text()
    assert f"3 real LR/HR pair(s) from {hr_dir} and {lr_dir} (no synthetic degradation), weight 1" in text
    assert f"49 usable image(s) from {photos}" in text


def test_a_txt_list_of_pairs(tmp_path, shared_data):
    hr_dir, _lr_dir = make_pairs(shared_data, tmp_path)
    names = sorted(p.name for p in hr_dir.iterdir())
    listing = tmp_path / "pairs.txt"
    # relative to the list; the LR of the second line is deliberately another image's (a wrong pairing is a
    # wrong pairing: it is taken as given, and the alignment check sees it)
    listing.write_text(f"# hr lr\nhr/{names[0]} lr/{names[0]}\n\nhr/{names[1]}   lr/{names[2]}\n")
    records, notes = check_pairs(read_pair_list(listing), S, 16)
    assert notes == []
    assert [(Path(r.path).name, Path(r.lr_path).name) for r in records] == [(names[0], names[0]), (names[1], names[2])]
    data = TrainPatchDataset(records, 64, seed=3, scale=S, gt_size=64)
    assert mismatch(data[(0, 0, 0)]) == 0.0
    assert mismatch(data[(1, 0, 0)]) > 2.0
    listing.write_text(f"hr/{names[0]}\n")
    with pytest.raises(DataError, match="line 1: expected 'hr_path lr_path'"):
        read_pair_list(listing)
    with pytest.raises(ConfigError) as err:
        load_config(SMOKE, [f"data.train=[{{pairs: {listing}, path: {hr_dir}}}]"])
    assert err.value.key == "data.train[0].pairs"


@pytest.mark.usefixtures("single_torch_thread")
def test_a_run_on_paired_data_only(tmp_path, shared_data):
    hr_dir, _ = make_pairs(shared_data, tmp_path / "pairs")
    names = sorted(p.name for p in hr_dir.iterdir())
    listing = tmp_path / "pairs" / "pairs.txt"
    listing.write_text("".join(f"hr/{n} lr/{n}\n" for n in names))
    cfg = load_config(
        SMOKE,
        [
            f"output_dir={tmp_path}",
            "val.folder=",
            "stage=esrnet",
            "total_iters=2",
            "save_every=100",
            f"data.train=[{{pairs: {listing}}}]",
        ],
    )
    result = train(cfg, show_progress=False)
    assert result.iteration == 2
    text = (result.run_dir / "train.log").read_text()
    assert f"3 real LR/HR pair(s) listed in {listing} (no synthetic degradation)" in text
