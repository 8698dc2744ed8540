"""Training data on real photos: listing, broken and small images, deterministic resumable sharded sampling."""

import logging

import numpy as np
import pytest
from PIL import Image

from realesr.data import ResumableSampler, TrainPatchDataset, list_images, samples_per_epoch, scan_images
from realesr.errors import DataError


@pytest.fixture()
def photo_folder(tmp_path, shared_data):
    """Three real photos (one in a sub-folder), a broken file, a truncated PNG and a small image."""
    photos = sorted((shared_data / "train" / "photos").glob("*.png"))[:3]
    root = tmp_path / "train"
    (root / "sub").mkdir(parents=True)
    for i, p in enumerate(photos):
        dest = root / ("sub" if i == 2 else ".") / f"p{i}.png"
        Image.open(p).crop((0, 0, 200, 160)).save(dest)
    (root / "broken.png").write_bytes(b"not an image at all")
    data = (root / "p0.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.open(photos[0]).crop((0, 0, 40, 30)).save(root / "small.png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_list_images_recursive_and_txt(photo_folder):
    paths = list_images(photo_folder)
    assert {p.name for p in paths} == {"p0.png", "p1.png", "p2.png", "broken.png", "truncated.png", "small.png"}
    lst = photo_folder / "list.txt"
    lst.write_text("# a comment\np0.png\nsub/p2.png\n\n")
    assert [p.name for p in list_images(lst)] == ["p0.png", "p2.png"]
    with pytest.raises(DataError):
        list_images(photo_folder / "missing")
    empty = photo_folder / "empty"
    empty.mkdir()
    with pytest.raises(DataError):
        list_images(empty)


def test_broken_image_is_reported_and_skipped(photo_folder):
    records, notes = scan_images(list_images(photo_folder), min_size=64, small_images="pad")
    names = {r.path.split("/")[-1] for r in records}
    assert "broken.png" not in names and "p1.png" in names
    assert any("broken.png" in n and "unreadable" in n for n in notes)
    assert any("reflect-padded" in n for n in notes)  # small.png


def test_small_images_skipped_on_request(photo_folder):
    records, notes = scan_images(list_images(photo_folder), min_size=64, small_images="skip")
    assert "small.png" not in {r.path.split("/")[-1] for r in records}
    assert any("small.png" in n and "skipped" in n for n in notes)


def test_truncated_image_fails_at_decode_and_is_replaced(photo_folder, caplog):
    records, _ = scan_images(list_images(photo_folder), min_size=64)
    idx = [r.path.split("/")[-1] for r in records].index("truncated.png")
    ds = TrainPatchDataset(records, load_size=64, seed=0)
    with caplog.at_level(logging.WARNING, logger="realesr.train"):
        sample = ds[(idx, 0, 0)]
    assert sample["gt"].shape == (3, 64, 64)
    assert "truncated.png" in caplog.text and "skipped" in caplog.text


def test_patches_padded_deterministic_and_drawn_params(photo_folder):
    records, _ = scan_images(list_images(photo_folder), min_size=64)
    small = [r.path.split("/")[-1] for r in records].index("small.png")
    ds = TrainPatchDataset(records, load_size=64, seed=3, params_fn=lambda rng: {"u": float(rng.random())})
    a, b = ds[(small, 1, 7)], ds[(small, 1, 7)]
    assert a["gt"].shape == (3, 64, 64) and a["gt"].dtype.is_floating_point
    assert np.array_equal(a["gt"].numpy(), b["gt"].numpy()) and a["params"] == b["params"]
    assert 0.0 <= float(a["gt"].min()) and float(a["gt"].max()) <= 1.0
    c = ds[(small, 1, 8)]
    assert c["params"] != a["params"]


def test_sampler_shards_cover_each_epoch_once_and_resume_exactly():
    n, batch, world = 10, 2, 2
    per_epoch = samples_per_epoch(n, batch * world)
    assert per_epoch == 8
    streams = []
    for rank in range(world):
        it = iter(ResumableSampler(n, batch * world, seed=5, rank=rank, world_size=world))
        streams.append([next(it) for _ in range(per_epoch // world * 2)])
    for epoch in (0, 1):
        positions = sorted(pos for s in streams for (_, e, pos) in s if e == epoch)
        assert positions == list(range(per_epoch))  # disjoint shards, together the whole epoch
        images = [i for s in streams for (i, e, _) in s if e == epoch]
        assert len(set(images)) == per_epoch  # a permutation: no image twice in an epoch
    assert [i for i, e, _ in streams[0] if e == 0] != [i for i, e, _ in streams[0] if e == 1]
    # resuming at (epoch 0, position 4) continues the same stream
    full = streams[0]
    resumed = iter(ResumableSampler(n, batch * world, seed=5, rank=0, world_size=world, start_position=4))
    assert [next(resumed) for _ in range(len(full) - 2)] == full[2:]


def test_tiny_dataset_repeats_images_to_fill_a_batch():
    sampler = iter(ResumableSampler(3, 8, seed=0))
    first_epoch = [next(sampler) for _ in range(8)]
    assert {e for _, e, _ in first_epoch} == {0} and sorted({i for i, _, _ in first_epoch}) == [0, 1, 2]


def test_reflect_padding_of_an_image_smaller_than_the_patch(tmp_path, shared_data):
    photo = sorted((shared_data / "train" / "photos").glob("*.png"))[0]
    Image.open(photo).convert("RGB").crop((0, 0, 60, 50)).save(tmp_path / "s.png")
    records, _ = scan_images([tmp_path / "s.png"], min_size=64)
    patch = TrainPatchDataset(records, load_size=64, seed=0, use_hflip=False)[(0, 0, 0)]["gt"].numpy()
    original = np.asarray(Image.open(tmp_path / "s.png"), dtype=np.float32).transpose(2, 0, 1) / 255
    assert np.allclose(patch[:, :50, :60], original)
    assert np.allclose(patch[:, 50:64, :60], original[:, 48:34:-1])  # rows mirrored about the last one
    assert np.allclose(patch[:, :50, 60:64], original[:, :, 58:54:-1])
