"""Several weighted training sources and area-proportional sampling (issue 13 §1): the config's forms and key-named
errors, the draw probabilities against their closed form, the sampler honouring them over many draws (and resuming
the same stream), and a short run on two real folders."""

from pathlib import Path

import numpy as np
import pytest

from realesr.data import (
    ImageRecord,
    ResumableSampler,
    draw_probabilities,
    list_images,
    scan_images,
)
from realesr.errors import ConfigError, DataError
from realesr.train import load_config, train
from realesr.train.config import (
    TrainSource,
    config_from_dict,
    config_to_dict,
    train_sources,
)

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


def test_train_takes_a_path_a_list_of_paths_or_weighted_sources():
    assert train_sources(config_from_dict({"data": {"train": "a"}}).data) == [TrainSource("a", None)]
    cfg = config_from_dict({"data": {"train": ["a", {"path": "b", "weight": 3}]}})
    assert train_sources(cfg.data) == [TrainSource("a", None), TrainSource("b", 3.0)]
    again = config_from_dict(config_to_dict(cfg))  # config.yaml of a run reads back the same
    assert train_sources(again.data) == train_sources(cfg.data)


@pytest.mark.parametrize(
    ("train", "key"),
    [
        ([{"path": "b", "wieght": 3}], "data.train[0].wieght"),
        (["a", {"path": "b", "weight": 0}], "data.train[1].weight"),
        ([{"weight": 2}], "data.train[0].path"),
        ([], "data.train"),
        ({"path": "x"}, "data.train"),
    ],
)
def test_bad_sources_name_their_key(train, key):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"data": {"train": train}})
    assert err.value.key == key
    assert key in str(err.value)


def records(*sizes):
    return [ImageRecord(f"{i}.png", w, h) for i, (w, h) in enumerate(sizes)]


def test_draw_probabilities_closed_forms():
    recs = records(*[(100, 100)] * 7)
    # no weights, no area: every image equally likely, kept as the plain per-epoch permutation
    assert draw_probabilities(recs, [0, 0, 1, 1, 1, 1, 1], [None, None]) is None
    # weights 3 and 1: the first source's 2 images share 3/4, the second's 5 images share 1/4
    p = draw_probabilities(recs, [0, 0, 1, 1, 1, 1, 1], [3.0, 1.0])
    np.testing.assert_allclose(p, [3 / 8] * 2 + [1 / 20] * 5, rtol=1e-12)
    # one weight given, the other counts 1
    p = draw_probabilities(recs, [0, 0, 1, 1, 1, 1, 1], [None, 4.0])
    np.testing.assert_allclose(p, [1 / 10] * 2 + [4 / 25] * 5, rtol=1e-12)
    # by area, one source: p proportional to w*h
    recs = records((500, 400), (4000, 3000), (1000, 1000))
    p = draw_probabilities(recs, [0, 0, 0], [None], by_area=True)
    np.testing.assert_allclose(p, np.array([2e5, 12e6, 1e6]) / 13.2e6, rtol=1e-12)
    # by area within weighted sources: each source keeps its share
    p = draw_probabilities(recs, [0, 0, 1], [1.0, 1.0], by_area=True)
    np.testing.assert_allclose(p, [0.5 * 2e5 / 12.2e6, 0.5 * 12e6 / 12.2e6, 0.5], rtol=1e-12)
    # by area without weights: the sources are one set, so the shares are the areas too
    p = draw_probabilities(recs, [0, 0, 1], [None, None], by_area=True)
    np.testing.assert_allclose(p, np.array([2e5, 12e6, 1e6]) / 13.2e6, rtol=1e-12)


def test_sampler_honours_source_weights_over_many_draws():
    n_a, n_b = 3, 17  # few images in the heavily weighted source
    source = [0] * n_a + [1] * n_b
    p = draw_probabilities(records(*[(64, 64)] * (n_a + n_b)), source, [4.0, 1.0])
    it = iter(ResumableSampler(n_a + n_b, 4, seed=1, probabilities=p))
    draws = np.array([next(it)[0] for _ in range(20_000)])
    from_a = np.mean(draws < n_a)
    # binomial: 0.8 expected, sd = sqrt(0.8*0.2/20000) ~ 0.0028; 5 sd
    assert abs(from_a - 0.8) < 0.015, from_a
    counts = np.bincount(draws, minlength=n_a + n_b)
    expected = p * len(draws)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 60, chi2  # 19 degrees of freedom: P(chi2 > 60) ~ 4e-6
    # an unweighted set is not what this sampler drew: the weighted source is ~5x over-represented
    assert from_a > 3 * n_a / (n_a + n_b)


def test_area_proportional_sampling_on_real_photo_sizes(shared_data):
    # ~1 Mpx photos and 480x320 BSD100 crops: by area a photo is drawn ~7x as often as a crop
    photos, _ = scan_images(list_images(shared_data / "train" / "photos"), 64)
    crops, _ = scan_images(list_images(shared_data / "test" / "BSD100"), 64)
    recs, source = photos + crops, [0] * len(photos) + [1] * len(crops)
    areas = np.array([r.width * r.height for r in recs], dtype=float)
    p = draw_probabilities(recs, source, [None, None], by_area=True)
    it = iter(ResumableSampler(len(recs), 8, seed=3, probabilities=p))
    draws = np.array([next(it)[0] for _ in range(30_000)])
    photo_share = np.mean(draws < len(photos))
    expected = areas[: len(photos)].sum() / areas.sum()  # ~0.78; uniform drawing would give 49/149 ~ 0.33
    assert photo_share == pytest.approx(expected, abs=0.015)
    assert abs(photo_share - len(photos) / len(recs)) > 0.3
    # within the photos too, the draws follow the area (a correlation over 49 images of ~600 draws each)
    counts = np.bincount(draws, minlength=len(recs))[: len(photos)]
    assert np.corrcoef(counts, areas[: len(photos)])[0, 1] > 0.5


def test_weighted_sampler_resumes_the_same_stream():
    p = draw_probabilities(records(*[(64, 64)] * 10), [0] * 4 + [1] * 6, [1.0, 2.0])
    full = iter(ResumableSampler(10, 4, seed=9, rank=1, world_size=2, probabilities=p))
    stream = [next(full) for _ in range(12)]
    # 8 samples per epoch, rank 1 of 2 takes positions 1, 3, 5, 7; after 10 samples consumed in all (epoch 1,
    # global position 2) it continues with its 6th sample, position 3 of epoch 1
    resumed = iter(
        ResumableSampler(10, 4, seed=9, rank=1, world_size=2, start_epoch=1, start_position=2, probabilities=p)
    )
    assert [next(resumed) for _ in range(7)] == stream[5:]
    assert stream[5][1:] == (1, 3)


@pytest.mark.slow
@pytest.mark.usefixtures("single_torch_thread")
def test_a_run_on_two_weighted_sources(tmp_path, shared_data):
    photos, set14 = shared_data / "train" / "photos", shared_data / "test" / "Set14"
    cfg = load_config(
        SMOKE,
        [
            f"output_dir={tmp_path}",
            "val.folder=",
            "stage=esrnet",
            "total_iters=2",
            "save_every=100",
            "data.sample_by_area=true",
            f"data.train=[{photos}, {{path: {set14}, weight: 2}}]",
        ],
    )
    result = train(cfg, show_progress=False)
    assert result.iteration == 2
    text = (result.run_dir / "train.log").read_text()
    assert f"49 usable image(s) from {photos}" in text
    assert f"14 usable image(s) from {set14}, weight 2" in text
    assert "in proportion to their area" in text


def test_a_source_without_usable_images_is_named(tmp_path, shared_data):
    empty = tmp_path / "tiny"
    empty.mkdir()
    from PIL import Image

    Image.new("RGB", (16, 16)).save(empty / "a.png")
    cfg = load_config(
        SMOKE,
        [
            f"output_dir={tmp_path}",
            "val.folder=",
            "stage=esrnet",
            "data.small_images=skip",
            f"data.train=[{shared_data / 'train' / 'photos'}, {empty}]",
        ],
    )
    with pytest.raises(DataError) as err:
        train(cfg, show_progress=False)
    assert "data.train[1]" in str(err.value) and str(empty) in str(err.value)
