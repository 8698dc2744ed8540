"""`realesr serve`'s HTTP API, in process and over a real socket: access rules, every endpoint and error path,
limits, cancel, hostile file names, concurrency, and results that are the CLI's very bytes."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

import httpx
from serve_helpers import AUTH, TOKEN, live_server, tiny_weights
from starlette.testclient import TestClient

from realesr.serve.app import Limits, create_app, file_model
from realesr.serve.jobs import Job, JobOptions, JobQueue

pytestmark = pytest.mark.usefixtures("single_torch_thread")
INPUTS = "real_lr/RealESRGAN_inputs"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def small_png(tmp_path_factory, shared_data) -> Path:
    """A 40x28 crop of a real photo (fast through the tiny network)."""
    path = tmp_path_factory.mktemp("img") / "crop.png"
    with Image.open(shared_data / INPUTS / "0014.jpg") as im:
        im.convert("RGB").crop((10, 10, 50, 38)).save(path)
    return path


def make_app(weights: Path, port: int = 7860, **kwargs):
    return create_app([file_model(weights)], token=TOKEN, port=port, allow_download=False, **kwargs)


@pytest.fixture
def client(weights):
    app = make_app(weights)
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        c.app_state = app.state
        yield c


def wait_done(c, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/api/jobs/{job_id}", headers=AUTH).json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end: {job}")


def post(c, path: Path, name: str | None = None, **fields):
    with open(path, "rb") as f:
        return c.post("/api/jobs", headers=AUTH, files={"file": (name or path.name, f)}, data=fields)


def cli_output(weights: Path, source: Path, out: Path, *extra: str) -> Path:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "realesr",
            "upscale",
            str(source),
            "-m",
            str(weights),
            "-o",
            str(out),
            "--no-progress",
            *extra,
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    (result,) = [p for p in out.iterdir() if "_out" in p.name]
    return result


# ------------------------------------------------------------------------------------------ access


def test_requests_without_the_token_get_401(client, small_png):
    assert client.get("/api/models").status_code == 401
    assert client.get("/api/models", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    with open(small_png, "rb") as f:
        r = client.post("/api/jobs", files={"file": ("a.png", f)})
    assert r.status_code == 401 and "token" in r.json()["error"]
    assert client.get("/api/jobs").status_code == 401
    page = client.get("/")
    assert page.status_code == 401 and "realesr serve" in page.text
    assert client.get("/api/models", headers=AUTH).status_code == 200


def test_the_printed_url_sets_a_private_cookie_and_strips_the_token(client):
    r = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    page = client.get("/")  # the client keeps the cookie, as the browser does
    assert page.status_code == 200 and "<title>realesr" in page.text
    assert client.get("/api/models").status_code == 200
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "api/jobs" in js.text
    assert "http" not in client.get("/static/style.css").text  # nothing loaded from elsewhere
    assert client.get("/static/../app.py").status_code == 404


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7860", "127.0.0.1:9999", "localhost.evil.example:7860"])
def test_a_foreign_host_header_gets_403(client, host):
    r = client.get("/api/models", headers={**AUTH, "Host": host})
    assert r.status_code == 403 and "Host" in r.json()["error"]


@pytest.mark.parametrize("host", ["127.0.0.1:7860", "localhost:7860", "[::1]:7860"])
def test_loopback_names_are_accepted(client, host):
    assert client.get("/api/models", headers={**AUTH, "Host": host}).status_code == 200


def test_another_sites_origin_gets_403(client, small_png):
    with open(small_png, "rb") as f:
        r = client.post("/api/jobs", headers={**AUTH, "Origin": "http://evil.example"}, files={"file": ("a.png", f)})
    assert r.status_code == 403 and "Origin" in r.json()["error"]
    assert client.get("/api/jobs", headers={**AUTH, "Origin": "http://127.0.0.1:8000"}).status_code == 403
    assert client.get("/api/jobs", headers={**AUTH, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.get("/api/jobs", headers={**AUTH, "Origin": "http://127.0.0.1:7860"}).status_code == 200


# ------------------------------------------------------------------------------------------ endpoints


def test_models_lists_the_served_models(client):
    body = client.get("/api/models", headers=AUTH).json()
    assert body["default"] == "tiny"
    assert [m["name"] for m in body["models"]] == ["tiny"]
    assert body["models"][0]["scale"] == 2 and body["models"][0]["available"] is True


def test_official_models_list_offline_ones_first(weights):
    from realesr.serve.app import official_models

    models = official_models()
    flags = [m.available for m in models]
    assert flags == sorted(flags, reverse=True)  # every available one before every missing one
    assert any(m.name == "RealESRGAN_x4plus" and m.available for m in models)  # the data package holds it
    assert next(m for m in models if m.name == "realesr-general-x4v3").denoise


@pytest.mark.slow
@pytest.mark.parametrize("name", ["00003.png", "tree_alpha_16bit.png", "wolf_gray.jpg", "children-alpha.png"])
def test_a_result_is_the_very_file_the_cli_writes(weights, shared_data, tmp_path, name):
    source = shared_data / INPUTS / name
    # Smaller copies keep the test fast; the crop keeps mode, bit depth and metadata of the original.
    with Image.open(source) as im:
        info = dict(im.info)
        small = im.crop((0, 0, min(im.width, 64), min(im.height, 48)))
        path = tmp_path / name
        small.save(path, **{k: v for k, v in info.items() if k in ("icc_profile", "exif")})
    expected = cli_output(weights, path, tmp_path / "cli").read_bytes()
    app = make_app(weights)
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        job = post(c, path, name=f"C:\\Users\\me\\{name}").json()
        done = wait_done(c, job["id"])
        assert done["state"] == "done", done
        r = c.get(f"/api/jobs/{job['id']}/result", headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-disposition"] == f'attachment; filename="{Path(name).stem}_out{Path(name).suffix}"'
    assert r.content == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tree_alpha_16bit.png", "wolf_gray.jpg"])
def test_a_result_keeps_16_bit_alpha_icc_and_exif_as_the_cli(client, weights, shared_data, tmp_path, name):
    """The originals, uncropped (a Pillow crop would drop to 8 bits): facts read from the files themselves."""
    source = shared_data / INPUTS / name
    expected = cli_output(weights, source, tmp_path / "cli").read_bytes()
    job = post(client, source).json()
    assert wait_done(client, job["id"])["state"] == "done"
    got = client.get(f"/api/jobs/{job['id']}/result", headers=AUTH).content
    assert got == expected
    with Image.open(source) as src, Image.open(io.BytesIO(got)) as out:
        assert out.size == (src.width * 2, src.height * 2)
        assert out.info.get("icc_profile") == src.info["icc_profile"]  # both inputs carry a profile
        if "exif" in src.info:
            # DateTime survives (Software is realesr's mark, by the CLI's rule).
            assert out.getexif().get(0x0132) == src.getexif()[0x0132] == "2021:07:28 01:12:19"
    if name.endswith(".png"):
        assert got[24:26] == bytes([16, 6])  # IHDR: 16 bits per sample, RGBA, as the input
        assert source.read_bytes()[24:26] == bytes([16, 6])


@pytest.mark.slow
def test_format_and_scale_options_match_the_cli(weights, small_png, tmp_path):
    expected = cli_output(weights, small_png, tmp_path / "cli", "--ext", "jpg", "-s", "3").read_bytes()
    app = make_app(weights)
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        job = post(c, small_png, ext="jpg", outscale="3").json()
        done = wait_done(c, job["id"])
        assert done["result_name"] == "crop_out.jpg" and done["result_size"] == [120, 84]
        assert c.get(f"/api/jobs/{job['id']}/result", headers=AUTH).content == expected
        # A target width is the factor width / input width.
        job = post(c, small_png, width="100").json()
        assert wait_done(c, job["id"])["result_size"] == [100, 70]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"model": "RealESRGAN_x4plus"}, "unknown model"),
        ({"model": "/etc/passwd"}, "unknown model"),
        ({"outscale": "abc"}, "outscale"),
        ({"outscale": "0"}, "outscale"),
        ({"outscale": "-2"}, "outscale"),
        ({"outscale": "1e300"}, "outscale"),
        ({"width": "12.5"}, "width"),
        ({"width": "100", "outscale": "2"}, "either outscale or width"),
        ({"ext": "gif"}, "ext"),
        ({"denoise_strength": "0.5"}, "no denoise strength"),
    ],
)
def test_bad_options_get_400_naming_the_field(client, small_png, fields, fragment):
    r = post(client, small_png, **fields)
    assert r.status_code == 400 and fragment in r.json()["error"]
    assert client.get("/api/jobs", headers=AUTH).json()["jobs"] == []
    assert list(client.app_state.jobs.work_dir.iterdir()) == []  # nothing kept of a refused upload


def test_bad_uploads_get_clear_4xx(client, tmp_path):
    r = client.post("/api/jobs", headers=AUTH, data={"model": "tiny"})
    assert r.status_code == 415  # not multipart at all
    r = client.post("/api/jobs", headers=AUTH, files={"other": ("a.png", b"x")})
    assert r.status_code == 400 and "field named file" in r.json()["error"]
    r = client.post("/api/jobs", headers=AUTH, files={"file": ("a.png", b"")})
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = client.post("/api/jobs", headers=AUTH, files={"file": ("notes.png", b"this is text, not a picture")})
    words = r.json()["error"]
    assert r.status_code == 415 and words.startswith("notes.png is not a picture or video")
    assert "Pillow" not in words and words.count("notes.png") == 1  # plain words, the name said once
    assert client.get("/api/jobs/0123456789abcdef", headers=AUTH).status_code == 404
    assert client.get("/api/jobs/0123456789abcdef/result", headers=AUTH).status_code == 404
    assert client.delete("/api/jobs/0123456789abcdef", headers=AUTH).status_code == 404
    assert client.get("/api/results.zip", headers=AUTH).status_code == 409
    assert client.get("/static/nothing.js", headers=AUTH).status_code == 404
    # A .txt upload is never read as a list of paths (as `realesr upscale list.txt` would).
    r = client.post("/api/jobs", headers=AUTH, files={"file": ("list.txt", b"/etc/passwd\n")})
    assert r.status_code == 415


def test_a_broken_image_fails_its_job_in_words_and_the_next_job_runs(client, small_png, tmp_path):
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(small_png.read_bytes()[:300])
    bad = post(client, truncated).json()
    good = post(client, small_png).json()
    failed = wait_done(client, bad["id"])
    assert failed["state"] == "failed" and failed["error"].startswith("cut.png could not be read")
    assert failed["error"].count("cut.png") == 1 and "Pillow" not in failed["error"]
    assert str(client.app_state.jobs.work_dir) not in failed["error"]  # no server path leaks to the client
    assert wait_done(client, good["id"])["state"] == "done"
    r = client.get(f"/api/jobs/{bad['id']}/result", headers=AUTH)
    assert r.status_code == 409 and "failed" in r.json()["error"]


@pytest.mark.parametrize("name", ["../../x.png", "..\\..\\x.png", "/etc/x.png", "x.png\x00.txt", ".x.png", "x.txt"])
def test_path_like_names_only_name_the_result(client, small_png, tmp_path, name):
    before = set(tmp_path.parent.iterdir())
    job = post(client, small_png, name=name).json()
    done = wait_done(client, job["id"])
    assert done["state"] == "done"
    assert "/" not in done["result_name"] and "\\" not in done["result_name"] and ".." not in done["result_name"]
    assert done["result_name"].startswith("x")
    work = client.app_state.jobs.work_dir
    assert all(str(p.resolve()).startswith(str(work.resolve())) for p in work.rglob("*"))
    assert set(tmp_path.parent.iterdir()) == before  # nothing written beside the test's folder
    assert not Path("/etc/x.png").exists() and not Path("/etc/x_out.png").exists()


def test_delete_removes_a_finished_job_and_its_files(client, small_png):
    job = post(client, small_png).json()
    wait_done(client, job["id"])
    folder = client.app_state.jobs.work_dir / job["id"]
    assert folder.is_dir()
    assert client.delete(f"/api/jobs/{job['id']}", headers=AUTH).status_code == 200
    assert not folder.exists()
    assert client.get(f"/api/jobs/{job['id']}", headers=AUTH).status_code == 404


def test_results_zip_holds_every_result_byte_for_byte(client, small_png):
    ids = [post(client, small_png, name=f"{n}.png").json()["id"] for n in ("a", "b", "a")]
    for job_id in ids:
        assert wait_done(client, job_id)["state"] == "done"
    singles = [client.get(f"/api/jobs/{i}/result", headers=AUTH).content for i in ids]
    r = client.get("/api/results.zip", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        names = archive.namelist()
        assert names == ["a_out.png", "b_out.png", "a_out (2).png"]
        assert [archive.read(n) for n in names] == singles


# ------------------------------------------------------------------------------------------ limits, cancel


def test_upload_size_limit_gives_413_naming_it(weights, small_png):
    app = make_app(weights, limits=Limits(max_upload_bytes=1000))
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        r = post(c, small_png)
        assert r.status_code == 413 and "max_upload_mb" in r.json()["error"]
        # Without a Content-Length the body is counted as it arrives.
        body = small_png.read_bytes()
        r = c.post(
            "/api/jobs",
            headers={**AUTH, "Content-Type": "multipart/form-data; boundary=xyz"},
            content=iter([b"--xyz\r\n", body, body]),
        )
        assert r.status_code == 413
        assert list(app.state.jobs.work_dir.iterdir()) == []


def test_pixel_limit_is_read_from_the_header(weights, small_png):
    app = make_app(weights, limits=Limits(max_pixels=1000))
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        r = post(c, small_png)
        assert r.status_code == 413 and "40 × 28" in r.json()["error"] and "max_pixels" in r.json()["error"]


def test_queue_limit_gives_429_and_queued_jobs_cancel(weights, small_png):
    # No workers: jobs stay queued, so the limit and cancelling a queued job are exact.
    app = make_app(weights, devices=(), limits=Limits(max_jobs=2))
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        first, second = post(c, small_png).json(), post(c, small_png).json()
        r = post(c, small_png)
        assert r.status_code == 429 and "max_jobs" in r.json()["error"]
        assert c.delete(f"/api/jobs/{first['id']}", headers=AUTH).json()["state"] == "cancelled"
        assert not (app.state.jobs.work_dir / first["id"]).exists()
        assert post(c, small_png).status_code == 201  # a place is free again
        assert c.get(f"/api/jobs/{second['id']}", headers=AUTH).json()["state"] == "queued"


def test_a_running_job_stops_at_its_next_tile_when_cancelled(tmp_path, shared_data, weights):
    from realesr.infer.upscaler import Upscaler

    tiles = []
    release = threading.Event()

    class SlowUpscaler(Upscaler):
        def upscale_tensor(self, x, on_tile=None):
            def slow(done, total):
                tiles.append(done)
                if on_tile:
                    on_tile(done, total)
                if done == 1:
                    release.wait(10)

            return super().upscale_tensor(x, on_tile=slow)

    def factory(options, device, outscale):
        return SlowUpscaler(str(weights), device="cpu", tile=16, tile_pad=4, progress=False)

    queue = JobQueue(factory, devices=("cpu",), work_dir=tmp_path / "work")
    try:
        job_id, folder = queue.new_upload()
        image = folder / "in.png"
        with Image.open(shared_data / INPUTS / "0014.jpg") as im:
            im.convert("RGB").crop((0, 0, 64, 64)).save(image)
        queue.submit(Job(job_id, "in.png", JobOptions("tiny"), folder, image, image.stat().st_size, (64, 64)))
        while not tiles:
            time.sleep(0.01)
        assert queue.get(job_id).state == "running"
        assert 0 < queue.get(job_id).progress < 1
        queue.cancel_or_remove(job_id)
        release.set()
        job = queue.wait(job_id)
        assert job.state == "cancelled" and job.result is None
        assert len(tiles) < 16  # 64x64 in tiles of 16: it stopped long before the last
        assert not folder.exists()
    finally:
        release.set()
        queue.close()


# ------------------------------------------------------------------------------------------ real sockets


def test_twenty_jobs_from_five_clients_all_get_their_own_result(weights, shared_data, tmp_path):
    from realesr.infer.files import upscale_file
    from realesr.infer.upscaler import Upscaler

    sizes = [(24 + 2 * i, 16 + i) for i in range(20)]
    images = []
    with Image.open(shared_data / INPUTS / "ADE_val_00000114.jpg") as im:
        rgb = im.convert("RGB")
        for i, (w, h) in enumerate(sizes):
            path = tmp_path / f"img{i}.png"
            rgb.crop((i, i, i + w, i + h)).save(path)
            images.append(path)
    reference = Upscaler(str(weights), device="cpu", progress=False)
    expected = [upscale_file(reference, p, tmp_path / "ref").output.read_bytes() for p in images]

    app = make_app(weights, port=0, devices=("cpu", "cpu"))
    results: dict[int, bytes] = {}
    errors: list[str] = []
    with live_server(app) as (base, port):
        # The guard knows the port only now: rebuild its host list for the real port.
        from realesr.serve.security import allowed_host_names

        app.hosts = allowed_host_names("127.0.0.1", port)
        app.origins = {f"http://{h}" for h in app.hosts}

        def client_work(indices: list[int]) -> None:
            with httpx.Client(base_url=base, headers=AUTH, timeout=60) as c:
                ids = {}
                for i in indices:
                    with open(images[i], "rb") as f:
                        r = c.post("/api/jobs", files={"file": (images[i].name, f)})
                    if r.status_code != 201:
                        errors.append(r.text)
                        return
                    ids[i] = r.json()["id"]
                for i, job_id in ids.items():
                    for _ in range(1200):
                        state = c.get(f"/api/jobs/{job_id}").json()["state"]
                        if state != "queued" and state != "running":
                            break
                        time.sleep(0.05)
                    results[i] = c.get(f"/api/jobs/{job_id}/result").content

        threads = [threading.Thread(target=client_work, args=(list(range(k, 20, 5)),)) for k in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors
    assert sorted(results) == list(range(20))
    for i in range(20):
        assert results[i] == expected[i], f"job {i} got another job's result"
    assert not app.state.jobs.work_dir.exists()  # the server removed every upload and result at shutdown


def test_a_client_that_disconnects_mid_upload_leaves_nothing(weights, small_png):
    app = make_app(weights, port=0)
    with live_server(app) as (base, port):
        from realesr.serve.security import allowed_host_names

        app.hosts = allowed_host_names("127.0.0.1", port)
        body = small_png.read_bytes()
        with socket.create_connection(("127.0.0.1", port)) as s:
            head = (
                f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {len(body) * 10}\r\n\r\n"
            )
            s.sendall(
                head.encode() + b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
                b"Content-Type: image/png\r\n\r\n" + body[: len(body) // 2]
            )
        time.sleep(0.5)
        with httpx.Client(base_url=base, headers=AUTH, timeout=30) as c:
            assert c.get("/api/jobs").json()["jobs"] == []
            assert list(app.state.jobs.work_dir.iterdir()) == []
            with open(small_png, "rb") as f:  # and the server still works
                job = c.post("/api/jobs", files={"file": ("a.png", f)}).json()
            for _ in range(600):
                if c.get(f"/api/jobs/{job['id']}").json()["state"] == "done":
                    break
                time.sleep(0.05)
            assert c.get(f"/api/jobs/{job['id']}/result").status_code == 200


def test_result_pixels_are_the_networks(client, small_png, weights):
    """Independent of the writer: the decoded result equals the tiny network run by hand on the input."""
    import torch

    from realesr.weights import load_model

    job = post(client, small_png).json()
    wait_done(client, job["id"])
    got = np.asarray(Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/result", headers=AUTH).content)))
    net = load_model(str(weights)).net
    x = torch.from_numpy(np.asarray(Image.open(small_png)).astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        want = (net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert got.shape == (56, 80, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_no_download_hides_the_models_that_need_one(weights, small_png, tmp_path, monkeypatch):
    from realesr.serve.app import official_models

    monkeypatch.setenv("REALESR_CACHE_DIR", str(tmp_path / "empty-cache"))
    missing = next(m for m in official_models() if not m.available)
    offline = create_app([file_model(weights), missing], token=TOKEN, allow_download=False)
    with TestClient(offline, base_url="http://127.0.0.1:7860") as c:
        assert [m["name"] for m in c.get("/api/models", headers=AUTH).json()["models"]] == ["tiny"]
        r = post(c, small_png, model=missing.name)
        assert r.status_code == 400 and missing.name in r.json()["error"]
    online = create_app([file_model(weights), missing], token=TOKEN, allow_download=True)
    with TestClient(online, base_url="http://127.0.0.1:7860") as c:
        listed = {m["name"]: m for m in c.get("/api/models", headers=AUTH).json()["models"]}
        assert listed[missing.name]["available"] is False and "download" in listed[missing.name]["where"]


@pytest.mark.slow
def test_a_video_upload_gives_the_clis_video(weights, tmp_path):
    """A clip (recognised by content, even under a name without extension) comes back as `realesr upscale` makes it:
    same frame count, size and decoded frames (PyAV's decoder as the second implementation)."""
    av = pytest.importorskip("av")
    from fractions import Fraction

    clip = tmp_path / "clip.mp4"
    out = av.open(str(clip), "w")
    stream = out.add_stream("libx264", rate=12, options={"threads": "1", "crf": "12"})
    stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 12)
    for i in range(12):
        img = np.zeros((24, 32, 3), np.uint8)
        img[..., 0] = (np.arange(32) * 7 + i * 9) % 256
        img[..., 1] = (np.arange(24)[:, None] * 9) % 256
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()

    def frames_of(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]

    expected = cli_output(weights, clip, tmp_path / "cli")
    app = make_app(weights)
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        job = post(c, clip, name="holiday clip").json()
        done = wait_done(c, job["id"], timeout=120)
        assert done["state"] == "done", done
        assert done["result_size"] == [64, 48]
        r = c.get(f"/api/jobs/{job['id']}/result", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("video/")
    got = tmp_path / done["result_name"]
    got.write_bytes(r.content)
    mine, theirs = frames_of(got), frames_of(expected)
    assert len(mine) == len(theirs) == 12
    assert all(np.array_equal(a, b) for a, b in zip(mine, theirs))


# ------------------------------------------------------------------------------------------ issue 22: the server side


def test_progress_inside_one_tile_comes_from_the_network_stages(tmp_path, shared_data, weights):
    """An image that runs as one tile still reports progress strictly between 0 and 1 as the network's stages
    finish (the library's layer_progress), never backwards, then 1 when done."""
    from realesr.infer.upscaler import Upscaler

    values: list[float] = []

    class Watched(Upscaler):
        def upscale_tensor(self, x, on_tile=None):
            assert self.tile == 0  # one tile: the per-tile callback alone would say 0 % until the end
            return super().upscale_tensor(x, on_tile=on_tile)

    queue = JobQueue(lambda o, d, s: Watched(str(weights), device="cpu", tile=0), work_dir=tmp_path / "work")
    try:
        job_id, folder = queue.new_upload()
        image = folder / "in.png"
        with Image.open(shared_data / INPUTS / "0014.jpg") as im:
            im.convert("RGB").crop((0, 0, 48, 40)).save(image)
        job = Job(job_id, "in.png", JobOptions("tiny"), folder, image, image.stat().st_size, (48, 40))
        original = job.mark_progress

        def spy() -> None:
            values.append(job.progress)
            original()

        job.mark_progress = spy  # type: ignore[method-assign]
        queue.submit(job)
        assert queue.wait(job_id).state == "done"
    finally:
        queue.close()
    inside = [v for v in values if 0 < v < 1]
    # The tiny network has 4 stages (conv, PReLU, conv, pixel shuffle) counted in its body and upsampler.
    assert len(inside) >= 3 and inside == sorted(inside) and max(inside) <= 0.98
    assert job.progress == 1.0


def test_a_camera_jpeg_with_exif_orientation_comes_out_upright(client, weights, tmp_path):
    """The result is the network applied to the picture as it is seen: Pillow's own exif_transpose turns the
    sensor's pixels, and the server's result matches that, not the raw landscape pixels."""
    from PIL import ImageOps

    from realesr.infer.upscaler import Upscaler

    rng = np.random.default_rng(3)
    pixels = (rng.random((40, 64, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to view
    path = tmp_path / "IMG_0001.jpg"
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())
    job = wait_done(client, post(client, path).json()["id"])
    assert job["input_size"] == [40, 64] and job["result_size"] == [80, 128]  # portrait, as seen
    got = np.asarray(Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/result", headers=AUTH).content)))
    with Image.open(path) as im:
        upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    want = Upscaler(str(weights), device="cpu")(upright)
    assert got.shape == want.shape == (128, 80, 3)
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 3  # JPEG re-encoding apart, the same picture
    with Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/result", headers=AUTH).content)) as out:
        assert out.getexif().get(0x0112, 1) == 1  # no orientation left to apply twice


def test_jobs_survive_a_restart_and_a_cancelled_one_leaves_nothing(weights, small_png, tmp_path):
    work = tmp_path / "work"
    app = make_app(weights, work_dir=work)
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        done = wait_done(c, post(c, small_png, name="kept.png", outscale="3").json()["id"])
        result = c.get(f"/api/jobs/{done['id']}/result", headers=AUTH).content
    assert json.loads((work / "jobs.json").read_text())["jobs"][0]["id"] == done["id"]
    again = make_app(weights, work_dir=work, devices=())  # no worker: a queued job stays queued
    with TestClient(again, base_url="http://127.0.0.1:7860") as c:
        listed = c.get("/api/jobs", headers=AUTH).json()["jobs"]
        assert [(j["id"], j["state"], j["result_size"], j["outscale"]) for j in listed] == [
            (done["id"], "done", [120, 84], 3.0)
        ]
        assert c.get(f"/api/jobs/{done['id']}/result", headers=AUTH).content == result
        assert c.get(f"/api/jobs/{done['id']}/input", headers=AUTH).content == small_png.read_bytes()
        queued = post(c, small_png).json()
        assert c.delete(f"/api/jobs/{queued['id']}", headers=AUTH).json()["state"] == "cancelled"
        assert not (work / queued["id"]).exists()
        assert c.delete(f"/api/jobs/{done['id']}", headers=AUTH).status_code == 200
        assert not (work / done["id"]).exists()
    with TestClient(make_app(weights, work_dir=work, devices=()), base_url="http://127.0.0.1:7860") as c:
        assert [j["state"] for j in c.get("/api/jobs", headers=AUTH).json()["jobs"]] == ["cancelled"]


def test_a_job_queued_at_shutdown_runs_at_the_next_start(weights, small_png, tmp_path):
    work = tmp_path / "work"
    with TestClient(make_app(weights, work_dir=work, devices=()), base_url="http://127.0.0.1:7860") as c:
        job = post(c, small_png).json()
    with TestClient(make_app(weights, work_dir=work), base_url="http://127.0.0.1:7860") as c:
        assert wait_done(c, job["id"])["state"] == "done"


def test_finished_jobs_older_than_the_keep_age_are_deleted(weights, small_png, tmp_path):
    work = tmp_path / "work"
    with TestClient(make_app(weights, work_dir=work), base_url="http://127.0.0.1:7860") as c:
        old = wait_done(c, post(c, small_png).json()["id"])
    record = json.loads((work / "jobs.json").read_text())
    record["jobs"][0]["created"] -= 3 * 86400
    (work / "jobs.json").write_text(json.dumps(record))
    with TestClient(make_app(weights, work_dir=work, keep_seconds=2 * 86400), base_url="http://127.0.0.1:7860") as c:
        assert c.get("/api/jobs", headers=AUTH).json()["jobs"] == []
    assert not (work / old["id"]).exists()


def test_the_estimate_is_measured_then_learned_from_jobs(client, small_png):
    first = client.get("/api/estimate?model=tiny", headers=AUTH).json()
    assert first["model"] == "tiny" and first["seconds_per_megapixel"] > 0 and first["faster"] is None
    job = post(client, small_png).json()
    assert job["estimate_seconds"] == pytest.approx(first["seconds_per_megapixel"] * 40 * 28 / 1e6, rel=0.01, abs=0.1)
    wait_done(client, job["id"])
    later = client.get("/api/estimate?model=tiny", headers=AUTH).json()["seconds_per_megapixel"]
    assert later != first["seconds_per_megapixel"]  # the finished job's speed was folded in


def test_a_slow_model_points_to_a_faster_one(weights, tmp_path):
    import torch

    from realesr.archs import SRVGGNetCompact
    from realesr.weights import save_model

    torch.manual_seed(0)
    slow = tmp_path / "wide.safetensors"
    save_model(SRVGGNetCompact(3, 3, num_feat=64, num_conv=8, upscale=2), slow)
    app = create_app([file_model(slow), file_model(weights)], token=TOKEN, allow_download=False)
    app.state.jobs.speeds.set("wide", "cpu", 500.0)  # as if its last jobs took 500 s per megapixel
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        body = c.get("/api/estimate?model=wide", headers=AUTH).json()
    assert body["faster"]["model"] == "tiny" and body["faster"]["seconds_per_megapixel"] < 250


def test_eta_is_the_mean_speed_since_the_first_report(tmp_path):
    job = Job("0123456789abcdef", "x.mp4", JobOptions("tiny"), tmp_path, tmp_path / "x.mp4", 1, (8, 8), 100)
    job.state, job.started = "running", time.time() - 10
    job.progress = 0.1
    job._first_progress = (time.time() - 8, 0.1)
    job.progress = 0.5  # 0.4 in 8 s: 0.05 per second, 0.5 left
    assert job.eta_seconds() == pytest.approx(10.0, rel=0.02)
