"""The `realesr serve` command itself: what it prints, its refusals, and how it stops."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("uvicorn")
from serve_helpers import tiny_weights

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "realesr", "serve", "--port", "0", "--device", "cpu", *args]
        + ([] if "--results" in args else ["--no-keep"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or ENV,
    )


@pytest.mark.slow
def test_prints_a_tokened_loopback_url_serves_it_and_stops_on_sigterm_deleting_uploads(tmp_path):
    weights = tiny_weights(tmp_path)
    proc = start("--model", str(weights), "--only", "--token", "my-own-token-123")
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=my-own-token-123", line)
        assert url, line
        # The folder it names (other servers on this machine may make theirs at the same time).
        named = re.search(r"uploads and results in (\S+),", proc.stdout.readline())
        assert named
        base = f"http://127.0.0.1:{url.group(1)}"
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.get("/api/models").status_code == 401
            models = c.get("/api/models", headers={"Authorization": "Bearer my-own-token-123"}).json()
            assert [m["name"] for m in models["models"]] == ["tiny"]
        work = {Path(named.group(1))}
        assert all(p.is_dir() and p.name.startswith("realesr-serve-") for p in work)  # it exists while it runs
        for folder in work:
            assert folder.stat().st_mode & 0o077 == 0  # and only its owner can read it
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 143
    assert not any(p.exists() for p in work)


@pytest.mark.slow
def test_a_busy_port_is_one_line_and_exit_2():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "realesr",
                "serve",
                "--port",
                str(port),
                "--device",
                "cpu",
                "--no-download",
                "--no-keep",
            ],
            check=False,
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot listen on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_missing_weights_file_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "realesr", "serve", "--model", str(tmp_path / "none.pth"), "--no-keep"],
        check=False,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert result.returncode == 2 and "none.pth" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_binding_beyond_loopback_warns_that_the_token_is_the_only_guard(tmp_path):
    weights = tiny_weights(tmp_path)
    private_tmp = tmp_path / "tmp"  # its own temporary folder: other servers on the machine do not count
    private_tmp.mkdir()
    proc = start("--host", "0.0.0.0", "--model", str(weights), "--only", env={**ENV, "TMPDIR": str(private_tmp)})
    try:
        warning = proc.stderr.readline()
        assert "token is the only guard" in warning
        assert "http://127.0.0.1:" in proc.stdout.readline()
    finally:
        proc.terminate()  # at once, maybe before the server has started: nothing may be left behind
        proc.wait(timeout=30)
    assert list(private_tmp.iterdir()) == []


@pytest.mark.slow
def test_jobs_and_the_token_are_kept_for_the_next_start(tmp_path, shared_data):
    """Without --token the first start makes one and keeps it (0600) beside the jobs; a restart prints the same
    address and lists the same finished job, whose result is still there."""
    weights = tiny_weights(tmp_path)
    env = {k: v for k, v in ENV.items() if k != "REALESR_TOKEN"}
    results = tmp_path / "results"
    image = tmp_path / "in.png"
    from PIL import Image

    with Image.open(shared_data / "real_lr" / "RealESRGAN_inputs" / "0014.jpg") as im:
        im.convert("RGB").crop((0, 0, 40, 30)).save(image)
    urls, listed = [], []
    for attempt in range(2):
        proc = start("--model", str(weights), "--only", "--results", str(results), env=env)
        try:
            url = re.search(r"(http://\S+)/\?token=(\S+)", proc.stdout.readline())
            assert url
            urls.append(url.group(2))
            auth = {"Authorization": f"Bearer {url.group(2)}"}
            with httpx.Client(base_url=url.group(1), headers=auth, timeout=30) as c:
                if attempt == 0:
                    job = c.post("/api/jobs", files={"file": ("in.png", image.read_bytes())}).json()
                    while c.get(f"/api/jobs/{job['id']}").json()["state"] != "done":
                        time.sleep(0.05)
                listed.append(c.get("/api/jobs").json()["jobs"])
                result = c.get(f"/api/jobs/{listed[-1][0]['id']}/result")
                assert result.status_code == 200 and result.content[:8] == b"\x89PNG\r\n\x1a\n"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 143
    assert urls[0] == urls[1]  # the same token (the port was 0: any free one)
    assert (results / "token").stat().st_mode & 0o777 == 0o600
    assert [(j["id"], j["state"], j["result_name"]) for j in listed[1]] == [(listed[0][0]["id"], "done", "in_out.png")]
