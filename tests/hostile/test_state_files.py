"""Issue 18 class 4: the files realesr reads back (a run's status.json, config.yaml, CSV logs, checkpoints, a video
work manifest), damaged as a crash, a full disk, a hand edit or a hostile user would leave them. Each is one line
naming the file and what to do, never a traceback; `realesr runs` still lists the other runs (exit 1), and a
resume from a damaged run is refused (exit 2) with every byte of the run folder unchanged."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from realesr.cli import main
from realesr.schema import Int, Name, Record, Seq
from realesr.statefiles import StateFileError, read_csv, read_json, read_yaml

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"

GOOD_STATUS = {
    "state": "finished",
    "pid": 1,
    "host": "elsewhere",
    "name": "good",
    "stage": "esrnet",
    "iteration": 20,
    "total_iters": 20,
    "best": {"metric": "degraded/psnr", "value": 23.5, "iteration": 20},
    "last_validation": {"iteration": 20, "metrics": {"degraded": {"psnr": 23.5, "ssim": 0.7}}},
    "updated": 1.0,
}
GOOD_VAL_LOG = "iteration,set,metric,value\n20,degraded,psnr,23.5\n20,degraded,ssim,0.7\n"


def _run(folder: Path, name: str, files: dict[str, str | bytes]) -> Path:
    run = folder / name
    run.mkdir(parents=True)
    for rel, content in files.items():
        path = run / rel
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return run


def _good_files() -> dict[str, str | bytes]:
    return {
        "status.json": json.dumps(GOOD_STATUS),
        "config.yaml": "name: good\nstage: esrnet\ntotal_iters: 20\n",
        "val_log.csv": GOOD_VAL_LOG,
    }


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# (file, damaged content): each a way the file has been seen or could be damaged
DAMAGED = {
    "status-list": ("status.json", "[1]"),
    "status-truncated": ("status.json", '{"state": "running", "iterat'),
    "status-empty": ("status.json", ""),
    "status-iteration-text": ("status.json", json.dumps({**GOOD_STATUS, "iteration": "12"})),
    "status-iteration-negative": ("status.json", json.dumps({**GOOD_STATUS, "iteration": -5})),
    "status-iteration-huge-float": ("status.json", '{"state": "finished", "iteration": 1e400}'),
    "status-iteration-nan": ("status.json", '{"state": "finished", "iteration": NaN}'),
    "status-pid-zero": ("status.json", json.dumps({**GOOD_STATUS, "state": "running", "pid": 0})),
    "status-pid-negative": ("status.json", json.dumps({**GOOD_STATUS, "state": "running", "pid": -1})),
    "status-pid-huge": ("status.json", json.dumps({**GOOD_STATUS, "state": "running", "pid": 2**70})),
    "status-pid-text": ("status.json", json.dumps({**GOOD_STATUS, "state": "running", "pid": "1234"})),
    "status-best-not-mapping": ("status.json", json.dumps({**GOOD_STATUS, "best": [1, 2]})),
    "status-best-no-value": ("status.json", json.dumps({**GOOD_STATUS, "best": {"metric": "a/psnr", "iteration": 1}})),
    "status-best-value-text": (
        "status.json",
        json.dumps({**GOOD_STATUS, "best": {"metric": "a/psnr", "value": "x", "iteration": 1}}),
    ),
    "status-best-metric-number": (
        "status.json",
        json.dumps({**GOOD_STATUS, "best": {"metric": 7, "value": 1.0, "iteration": 1}}),
    ),
    "status-total-zero": ("status.json", json.dumps({**GOOD_STATUS, "total_iters": 0})),
    "status-not-utf8": ("status.json", b'{"state": "\xff\xfe"}'),
    "status-binary": ("status.json", bytes(range(256)) * 4),
    "status-deep": ("status.json", _nested(100_000)),
    "status-nul": ("status.json", json.dumps({**GOOD_STATUS, "name": "a\x00b"})),
    "config-list": ("config.yaml", "- 1\n- 2\n"),
    "config-invalid": ("config.yaml", "stage: [esrnet\n"),
    "config-total-text": ("config.yaml", "stage: esrnet\ntotal_iters: many\n"),
    "config-total-inf": ("config.yaml", "stage: esrnet\ntotal_iters: .inf\n"),
    "config-stage-list": ("config.yaml", "stage: [1, 2]\n"),
    "config-python-tag": ("config.yaml", "stage: !!python/object/apply:os.system ['true']\n"),
    "config-bad-date": ("config.yaml", "stage: esrnet\nwhen: 2024-13-45\n"),
    "config-alias-bomb": (
        "config.yaml",
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
    ),
    "config-not-utf8": ("config.yaml", b"stage: \xe9sr\n"),
    "val-iteration-text": ("val_log.csv", "iteration,set,metric,value\nx,degraded,psnr,23.5\n"),
    "val-value-text": ("val_log.csv", "iteration,set,metric,value\n20,degraded,psnr,high\n"),
    "val-extra-fields": ("val_log.csv", "iteration,set,metric,value\n20,degraded,psnr,23.5,9,9\n"),
    "val-no-iteration-column": ("val_log.csv", "set,metric,value\ndegraded,psnr,23.5\n"),
    "val-short-row": ("val_log.csv", "iteration,set,metric,value\n\n20\n"),
    "val-huge-field": ("val_log.csv", 'iteration,set,metric,value\n20,"' + "x" * 200_000 + '",psnr,1\n'),
    "val-nul": ("val_log.csv", "iteration,set,metric,value\n20,deg\x00raded,psnr,23.5\n"),
    "val-iteration-negative": ("val_log.csv", "iteration,set,metric,value\n-3,degraded,psnr,23.5\n"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_runs_reports_a_damaged_file_and_lists_the_other_runs(tmp_path, capsys, case):
    name, content = DAMAGED[case]
    _run(tmp_path, "good", _good_files())
    bad = _run(tmp_path, "bad", {**_good_files(), name: content})
    before = {p: p.read_bytes() for p in bad.iterdir()}
    code = main(["runs", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 1, (case, out, err)
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows["good"].split()[1:5] == ["esrnet", "20", "/", "20"] and rows["good"].endswith("finished")
    assert rows["bad"].endswith("damaged")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(bad / name) in lines[0] and "damaged" in lines[0], lines[0]
    assert {p: p.read_bytes() for p in bad.iterdir()} == before


def test_runs_refuses_special_files_without_blocking(tmp_path, capsys):
    _run(tmp_path, "good", _good_files())
    fifo = _run(tmp_path, "fifo", {"config.yaml": "stage: esrnet\n"})
    os.mkfifo(fifo / "status.json")  # opening it for reading would wait for a writer forever
    folder = _run(tmp_path, "folder", {"config.yaml": "stage: esrnet\n"})
    (folder / "val_log.csv").mkdir()
    big = _run(tmp_path, "big", {"config.yaml": "stage: esrnet\n"})
    with open(big / "status.json", "wb") as f:  # sparse: 20 GB on paper, nothing on disk
        f.truncate(20 * 2**30)
    zero = _run(tmp_path, "zero", {"status.json": json.dumps(GOOD_STATUS)})
    (zero / "config.yaml").symlink_to("/dev/zero")  # endless: never read into memory
    loop = _run(tmp_path, "loop", {"status.json": json.dumps(GOOD_STATUS)})
    (loop / "val_log.csv").symlink_to(loop / "val_log.csv")
    assert main(["runs", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    states = [line.split()[-1] for line in out.splitlines()[1:]]
    assert states == ["damaged", "damaged", "damaged", "finished", "damaged", "damaged"], out
    lines = err.strip().splitlines()
    assert len(lines) == 5 and "Traceback" not in err
    assert "status.json" in lines[0] and "more than" in lines[0]  # big
    assert "status.json" in lines[1] and "not a regular file" in lines[1]  # fifo
    assert "val_log.csv" in lines[2]  # folder
    assert "val_log.csv" in lines[3] and "cannot read" in lines[3]  # loop
    assert "config.yaml" in lines[4] and "not a regular file" in lines[4]  # zero


def test_a_run_gone_without_a_word_is_failed_and_pid_never_names_a_group(tmp_path, capsys):
    status = {**GOOD_STATUS, "state": "running", "host": socket.gethostname(), "pid": 2**31 - 1}
    _run(tmp_path, "gone", {"status.json": json.dumps(status)})
    assert main(["runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("failed")


def test_a_run_name_with_control_characters_is_printed_escaped(tmp_path, capsys):
    _run(tmp_path, "a\x1b[2Jb\nc", _good_files())
    best = {**GOOD_STATUS["best"], "metric": "\x9b"}
    odd = {**GOOD_STATUS, "state": "\x1b]0;owned\x07", "stage": "x\ry", "best": best}
    _run(tmp_path, "odd", {"status.json": json.dumps(odd)})
    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\r\x9b") and len(out.splitlines()) == 3, out
    assert "a\\x1b[2Jb\\nc" in out and "\\x1b]0;owned\\x07" in out


# ------------------------------------------------------------------------------------------ the reader itself


def test_reader_names_the_place_inside_the_file(tmp_path):
    path = tmp_path / "m.json"
    shape = Record({"segments": Seq(Record({"file": Name(), "frames": Int(0)}))}, required=frozenset({"segments"}))
    path.write_text(json.dumps({"segments": [{"file": "a", "frames": 1}, {"file": "../../etc/passwd"}]}))
    with pytest.raises(StateFileError) as err:
        read_json(path, shape, what="a manifest", remedy="delete it")
    message = str(err.value)
    assert message.startswith(f"{path}: a manifest is damaged (segments[1].file: ") and message.endswith("delete it")
    assert err.value.exit_code == 2 and err.value.path == path
    path.write_text(json.dumps({"segments": [{"file": "a", "frames": 1.5}]}))
    with pytest.raises(StateFileError, match=r"segments\[0\]\.frames: must be an integer"):
        read_json(path, shape, what="a manifest", remedy="delete it")
    with pytest.raises(FileNotFoundError):  # "none yet" is the caller's to decide
        read_json(tmp_path / "none.json", shape, what="x", remedy="y")


def test_reader_round_trips_what_realesr_writes(tmp_path):
    import yaml

    from realesr.train.config import TrainConfig, config_to_dict
    from realesr.train.runs import RUN_CONFIG_SHAPE, STATUS_SHAPE, TRAIN_LOG_COLUMNS, VAL_LOG_COLUMNS

    (tmp_path / "status.json").write_text(
        json.dumps({**GOOD_STATUS, "last_validation": {"metrics": {"r": {"psnr": float("inf")}}}})
    )
    status = read_json(tmp_path / "status.json", STATUS_SHAPE, what="s", remedy="r", constants=True)
    assert status["last_validation"]["metrics"]["r"]["psnr"] == float("inf")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config_to_dict(TrainConfig()), sort_keys=False))
    assert read_yaml(tmp_path / "config.yaml", RUN_CONFIG_SHAPE, what="c", remedy="r")["stage"] == "esrnet"
    (tmp_path / "val_log.csv").write_text(GOOD_VAL_LOG + "30,real,niqe,nan\n")
    rows = read_csv(tmp_path / "val_log.csv", VAL_LOG_COLUMNS, what="v", remedy="r", required=("iteration",))
    assert [r["iteration"] for r in rows] == [20, 20, 30] and rows[0]["value"] == 23.5
    (tmp_path / "train_log.csv").write_text("iteration,l_g_pix,lr_g\n1,0.5,\n2,nan,0.0002\n")
    rows = read_csv(tmp_path / "train_log.csv", TRAIN_LOG_COLUMNS, what="t", remedy="r", required=("iteration",))
    assert [r["iteration"] for r in rows] == [1, 2] and rows[1]["l_g_pix"] == "nan"


# ------------------------------------------------------------------------------------------------ resume


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One finished two-iteration run (tiny networks, real photos), copied by each test before damaging it."""
    from realesr.train import load_config, train

    out = tmp_path_factory.mktemp("trained")
    cfg = load_config(SMOKE, [*_train_sets(out), "total_iters=2", "save_every=1"])
    train(cfg, show_progress=False)
    return out / "smoke"


def _train_sets(output_dir: Path) -> list[str]:
    data = ROOT.parent / "shared" / "data" / "train" / "photos"
    return [f"output_dir={output_dir}", f"data.train={data}", "val.folder=", "stage=esrnet", "runtime.num_threads=1"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _torch_state(edit):
    def damage(path: Path) -> None:
        import torch

        state = torch.load(path, weights_only=True)
        edit(state)
        torch.save(state, path)

    return damage


RESUME_DAMAGE = {
    "status-list": ("status.json", lambda p: p.write_text("[1]")),
    "status-pid": ("status.json", lambda p: p.write_text(json.dumps({**GOOD_STATUS, "pid": -1}))),
    "config-garbage": ("config.yaml", lambda p: p.write_bytes(b"\x00\xff" * 64)),
    "config-list": ("config.yaml", lambda p: p.write_text("[1]\n")),
    "val-log": ("val_log.csv", lambda p: p.write_text("iteration,set,metric,value\nx,a,psnr,1\n")),
    "train-log-iteration": ("train_log.csv", lambda p: p.write_text("iteration,l_g_pix\n1,0.5\ntwo,0.4\n")),
    "train-log-short-row": ("train_log.csv", lambda p: p.write_bytes(p.read_bytes() + b"3\n")),
    "state-garbage": ("checkpoints/iter_00000002/state.pt", lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 64)),
    "state-iteration-text": (
        "checkpoints/iter_00000002/state.pt",
        _torch_state(lambda s: s.update(iteration="2")),
    ),
    "state-iteration-negative": (
        "checkpoints/iter_00000002/state.pt",
        _torch_state(lambda s: s.update(iteration=-2)),
    ),
    "state-best-nan-text": (
        "checkpoints/iter_00000002/state.pt",
        _torch_state(lambda s: s.update(best_iteration="best")),
    ),
    "state-no-rng": ("checkpoints/iter_00000002/state.pt", _torch_state(lambda s: s.update(rng=[]))),
    "state-pool-text": (
        "checkpoints/iter_00000002/state.pt",
        _torch_state(lambda s: s.update(synth=[{"pool": {"pool_size": "4", "batch_size": 2, "ptr": 0}}])),
    ),
    "state-list": ("checkpoints/iter_00000002/state.pt", lambda p: __import__("torch").save([1], p)),
    "weights-truncated": (
        "checkpoints/iter_00000002/net_g.safetensors",
        lambda p: p.write_bytes(p.read_bytes()[:100]),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(RESUME_DAMAGE))
def test_a_resume_from_a_damaged_run_is_refused_and_touches_nothing(trained_run, tmp_path, capsys, case):
    name, damage = RESUME_DAMAGE[case]
    out = tmp_path / "out"
    shutil.copytree(trained_run, out / "smoke")
    damage(out / "smoke" / name)
    before = _snapshot(out / "smoke")
    argv = ["train", str(SMOKE), "--resume", "auto", "--no-progress"]
    for item in [*_train_sets(out), "total_iters=4"]:
        argv += ["--set", item]
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if "error" in line]
    assert code == 2, (case, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert name.rpartition("/")[2] in lines[0], lines[0]
    assert _snapshot(out / "smoke") == before
    assert sorted(p.name for p in out.iterdir()) == ["smoke"]


# ------------------------------------------------------------------------------------------ video work folder


def _clip(path: Path, frames: int = 12) -> Path:
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as oc:
        stream = oc.add_stream("libx264", rate=12, options={"threads": "1", "crf": "10"})
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for i in range(frames):
            img = np.zeros((24, 32, 3), np.uint8)
            img[..., 0], img[..., 1] = (np.arange(32) * 7 + i * 20) % 256, i * 19 % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                oc.mux(packet)
        for packet in stream.encode():
            oc.mux(packet)
    return path


def _frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def video_case(tmp_path_factory):
    """A clip, a tiny upscaler, the whole run's frames, and a work folder left by a run stopped after 2 segments."""
    pytest.importorskip("av")
    from serve_helpers import tiny_weights  # tests/ is on sys.path: it holds this package

    from realesr.infer.upscaler import Upscaler
    from realesr.infer.video import VideoOptions, upscale_video

    root = tmp_path_factory.mktemp("video")
    clip = _clip(root / "c.mp4")
    up = Upscaler(str(tiny_weights(root)), device="cpu", tile=0)
    options = VideoOptions(segment_frames=4, threads=1)
    upscale_video(up, clip, root / "whole.mkv", options)

    work = root / ".part.mkv.realesr-work"

    def stop(done, total):
        if done >= 9:  # frames 0-7 are with the encoder: wait for it to close their two segments, then stop
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(json.loads((work / "manifest.json").read_text())["segments"]) < 2:
                time.sleep(0.05)
            raise _Stop

    with pytest.raises(_Stop):
        upscale_video(up, clip, root / "part.mkv", options, on_progress=stop)
    assert len(json.loads((work / "manifest.json").read_text())["segments"]) == 2
    return up, options, clip, _frames(root / "whole.mkv"), work


def _damage_manifest(edit):
    def damage(work: Path) -> None:
        data = json.loads((work / "manifest.json").read_text())
        edit(data)
        (work / "manifest.json").write_text(json.dumps(data))

    return damage


VIDEO_DAMAGE = {
    "manifest-list": lambda work: (work / "manifest.json").write_text("[1]"),
    "manifest-not-json": lambda work: (work / "manifest.json").write_bytes(b"\xff{"),
    "segment-escapes-folder": _damage_manifest(lambda d: d["segments"][0].update(file="../../outside.mkv")),
    "segment-frames-text": _damage_manifest(lambda d: d["segments"][1].update(frames="4")),
    "segment-frames-negative": _damage_manifest(lambda d: d["segments"][1].update(frames=-4)),
    "segments-not-list": _damage_manifest(lambda d: d.update(segments={"a": 1})),
    "pts-list": lambda work: (work / "seg_00001.mkv.pts.json").write_text("[1]"),
    "pts-short": lambda work: (work / "seg_00000.mkv.pts.json").write_text('{"pts": [0], "durations": [1]}'),
    "pts-text": lambda work: (work / "seg_00000.mkv.pts.json").write_text('{"pts": ["a"], "durations": [1]}'),
}


@pytest.mark.parametrize("case", sorted(VIDEO_DAMAGE))
def test_a_damaged_video_work_folder_is_refused_or_redone_never_trusted(video_case, tmp_path, case):
    """A damaged manifest is refused (one line naming it and what to do) with the work folder untouched; a damaged
    segment's timestamps make that segment encoded again, and the output is the uninterrupted run's frame for
    frame. Nothing outside the work folder is read or written."""
    from realesr.infer.video import upscale_video
    from realesr.statefiles import StateFileError

    up, options, clip, whole, work = video_case
    dest = tmp_path / "part.mkv"
    shutil.copytree(work, tmp_path / work.name)
    VIDEO_DAMAGE[case](tmp_path / work.name)
    (tmp_path / "outside.mkv").write_bytes(b"not yours")
    before = _snapshot(tmp_path)
    if case.startswith(("manifest", "segment")):
        with pytest.raises(StateFileError) as err:
            upscale_video(up, clip, dest, options)
        message = str(err.value)
        assert "\n" not in message and str(tmp_path / work.name / "manifest.json") in message
        assert "delete the folder" in message and err.value.exit_code == 2
        assert _snapshot(tmp_path) == before
        return
    upscale_video(up, clip, dest, options)
    frames = _frames(dest)
    assert len(frames) == len(whole) and all(np.array_equal(a, b) for a, b in zip(frames, whole))
    assert (tmp_path / "outside.mkv").read_bytes() == b"not yours" and not (tmp_path / work.name).exists()
