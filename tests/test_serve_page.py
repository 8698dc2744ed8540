"""The page as a person uses it, in Debian's Chromium driven by Playwright: the keyboard alone, a phone's screen and
touch, an accessibility audit (axe-core), honest progress, cards that survive a reload and a restart, cancel.

Screenshots at 1280 and 390 px go to $REALESR_SCREENSHOTS (docs/screenshots for the README) or the test's folder.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from PIL import Image

playwright = pytest.importorskip("playwright.sync_api")
from serve_helpers import tiny_weights

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,  # a browser and a server per test
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync", "--disable-background-networking"]
TOKEN = "page-test-token-0123"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


def _wait_until(condition, timeout: float = 30.0, every: float = 0.1):
    """Poll from Python: the page's CSP (no eval) forbids Playwright's in-page wait_for_function."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)
    return value


class Server:
    """`realesr serve` as a user starts it, with its jobs kept in ``results`` (so a restart can find them)."""

    def __init__(self, weights: list[Path], results: Path) -> None:
        self.args = [a for w in weights for a in ("--model", str(w))]
        self.results = results
        self.proc: subprocess.Popen | None = None
        self.base = ""

    def start(self) -> Server:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "REALESR_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "realesr", "serve", "--port", "0", "--only", "--no-download", "--device", "cpu"]
            + ["--results", str(self.results), *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self.proc.stdout.readline()
        match = re.search(r"(http://[^/\s]+)/\?token=", line)
        assert match, f"no address printed: {line!r} {self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        self.base = match.group(1)
        return self

    @property
    def url(self) -> str:
        return f"{self.base}/?token={TOKEN}"

    def api(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """The tests' tiny 2x network with its last layer turned down: its output is close to the picture enlarged
    (SRVGGNetCompact adds the nearest-neighbour upscale), so the screenshots show a photo, not noise."""
    import torch

    from realesr.weights import load_model, save_model

    path = tiny_weights(tmp_path_factory.mktemp("weights"))
    net = load_model(path).net
    with torch.no_grad():
        net.body[-1].weight.mul_(0.05)
        net.body[-1].bias.mul_(0.05)
    save_model(net, path)
    return path


@pytest.fixture(scope="module")
def slow_weights(tmp_path_factory) -> Path:
    """A wider network (64 features, 16 convolutions): seconds per image on one CPU thread, so that progress
    can be watched and a running job cancelled."""
    import torch

    from realesr.archs import SRVGGNetCompact
    from realesr.weights import save_model

    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("slow") / "slow.safetensors"
    save_model(SRVGGNetCompact(3, 3, num_feat=64, num_conv=16, upscale=2), path)
    return path


@pytest.fixture
def server(tmp_path, weights, slow_weights):
    s = Server([weights, slow_weights], tmp_path / "results").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_data) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    with Image.open(shared_data / "real_lr" / "RealESRGAN_inputs" / "0014.jpg") as im:
        rgb = im.convert("RGB")
    rgb.crop((0, 30, 160, 150)).save(folder / "small.png")
    rgb.crop((0, 0, 48, 40)).save(folder / "second.png")
    rgb.resize((320, 320)).save(folder / "big.png")
    # progress watched: several seconds on a quiet 2-core machine too (320 px finished between two polls there)
    rgb.resize((560, 560)).save(folder / "large.png")
    rgb.resize((720, 720)).save(folder / "huge.png")  # about 25 s through the wide network: cancelled long before
    # A phone camera's JPEG: the sensor's landscape pixels, with EXIF orientation 6 (turn 90° clockwise to view).
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb.crop((0, 0, 96, 64)).save(folder / "camera.jpg", quality=95, exif=exif.tobytes())
    return {p.stem: p for p in folder.iterdir()}


def shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("REALESR_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def axe_serious(page) -> list[str]:
    """The serious and critical violations axe-core finds (WCAG 2.x A/AA and best practices)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes: {v['nodes'][0]['target']})"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def open_page(browser, server: Server, **context):
    ctx = browser.new_context(accept_downloads=True, **context)
    page = ctx.new_page()
    page.goto(server.url)
    page.wait_for_selector("#model option[value='tiny']", state="attached")
    page.select_option("#model", "tiny")
    return page


def focused(page) -> dict:
    return page.evaluate(
        """() => { const e = document.activeElement; const s = getComputedStyle(e);
        return {tag: e.tagName, cls: e.className, text: (e.getAttribute('aria-label') || e.textContent || '').trim(),
                outline: s.outlineStyle, width: parseFloat(s.outlineWidth)}; }"""
    )


def tab_to(page, predicate, limit: int = 60) -> dict:
    """Press Tab until the focused element satisfies ``predicate``; each stop must show a focus ring."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if now["tag"] == "BODY":  # past the last control: the browser's own stop before it wraps
            continue
        assert now["outline"] != "none" and now["width"] >= 2, f"no visible focus on {now}"
        if predicate(now):
            return now
    raise AssertionError("not reachable with Tab")


def test_keyboard_alone_from_upload_to_download(server, browser, photos, tmp_path):
    page = open_page(browser, server, viewport={"width": 1280, "height": 900})
    assert axe_serious(page) == []
    with page.expect_file_chooser() as chooser:
        tab_to(page, lambda f: f["text"] == "Choose photos or videos")
        page.keyboard.press("Enter")
    chooser.value.set_files(str(photos["small"]))
    page.wait_for_selector(".job.done .viewer:not([hidden])", timeout=60_000)
    assert page.inner_text("#announce") == "small.png is done."  # the live region says it
    info = page.inner_text(".job-info")
    assert "160 × 120 → 320 × 240 px" in info and "tiny" in info and "×2" in info and "PNG" in info and "took" in info

    tab_to(page, lambda f: "split" in f["text"])
    page.keyboard.press("ArrowLeft")
    assert page.eval_on_selector(".slider", "e => e.value") == "49"
    tab_to(page, lambda f: f["text"].startswith("Zoom in"))
    level = page.inner_text(".zoom-level")
    page.keyboard.press("Enter")
    assert page.inner_text(".zoom-level") != level
    with page.expect_download() as download:
        tab_to(page, lambda f: f["text"] == "Download small_out.png")
        page.keyboard.press("Enter")
    assert download.value.suggested_filename == "small_out.png"
    with Image.open(download.value.path()) as got:
        assert got.size == (320, 240)
    shot = shots_dir(tmp_path) / "page-1280.png"
    page.screenshot(path=str(shot), full_page=True)
    assert axe_serious(page) == []

    with page.expect_download() as everything:
        tab_to(page, lambda f: f["text"] == "Download all (zip)")
        page.keyboard.press("Enter")
    with zipfile.ZipFile(io.BytesIO(Path(everything.value.path()).read_bytes())) as archive:
        assert archive.namelist() == ["small_out.png"]
    tab_to(page, lambda f: f["text"] == "Remove small.png")
    page.keyboard.press("Enter")
    _wait_until(lambda: page.locator(".job").count() == 0)
    assert server.api("/api/jobs").json()["jobs"] == []
    page.context.close()


def test_a_phone_390_wide(server, browser, photos, tmp_path):
    page = open_page(browser, server, **PHONE)
    width = lambda: page.evaluate("() => document.documentElement.scrollWidth")  # noqa: E731
    assert width() <= 390
    choose = page.locator("#choose").bounding_box()
    assert choose["y"] + choose["height"] <= 844 and choose["height"] >= 44  # visible on load, no scrolling
    assert "On a phone: tap the button" in page.inner_text("#how")
    assert axe_serious(page) == []

    page.set_input_files("#files", str(photos["camera"]))
    page.wait_for_selector(".job.done .viewer:not([hidden])", timeout=60_000)
    page.wait_for_function("() => document.querySelector('.layer.after img').naturalWidth > 0")
    assert width() <= 390
    job = server.api("/api/jobs").json()["jobs"][0]
    assert job["input_size"] == [64, 96] and job["result_size"] == [128, 192]  # upright: portrait, as seen
    small = [
        (el["sel"], el["h"], el["w"])
        for el in page.evaluate(
            """() => [...document.querySelectorAll('button, a, select, input')].filter(e => e.offsetParent)
                .map(e => { const r = e.getBoundingClientRect();
                            return {sel: e.className || e.id, h: r.height, w: r.width}; })"""
        )
        if el["h"] < 44 or el["w"] < 44
    ]
    assert small == []  # every touch target at least 44 px
    stage = page.locator(".stage").bounding_box()
    shown = page.locator(".layer.after img").bounding_box()
    assert stage["width"] <= 390 and stage["x"] >= 0
    assert shown["x"] >= stage["x"] - 1 and shown["x"] + shown["width"] <= stage["x"] + stage["width"] + 1
    assert shown["y"] >= stage["y"] - 1 and shown["y"] + shown["height"] <= stage["y"] + stage["height"] + 1
    assert max(shown["width"] / stage["width"], shown["height"] / stage["height"]) > 0.98  # fitted, not a corner

    page.locator(".slider").tap(position={"x": 10, "y": 20})  # touch moves the split
    assert int(page.eval_on_selector(".slider", "e => e.value")) < 20
    before = int(page.inner_text(".zoom-level").rstrip("%"))
    page.locator(".stage").scroll_into_view_if_needed()
    _pinch(page, page.locator(".stage").bounding_box())
    assert int(page.inner_text(".zoom-level").rstrip("%")) > before * 1.3
    page.locator(".zoom-reset").tap()
    assert int(page.inner_text(".zoom-level").rstrip("%")) == before
    assert width() <= 390
    assert axe_serious(page) == []
    page.screenshot(path=str(shots_dir(tmp_path) / "page-390.png"), full_page=True)
    page.context.close()


def _pinch(page, box) -> None:
    """Two fingers spreading apart, as Chromium gets them from a touch screen."""
    cdp = page.context.new_cdp_session(page)
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def points(d):
        return [{"x": cx - d, "y": cy, "id": 1}, {"x": cx + d, "y": cy, "id": 2}]

    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": points(20)})
    for d in range(25, 70, 5):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": points(d)})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


@pytest.mark.slow  # two runs of the wide network, watched: about 10 s on 2 cores
def test_progress_title_resize_and_cancel(server, browser, photos):
    page = open_page(browser, server, viewport={"width": 1280, "height": 900})
    page.select_option("#model", "slow")
    page.set_input_files("#files", str(photos["large"]))
    page.wait_for_selector(".job.running", timeout=30_000)
    seen, titles = [], set()
    while page.locator(".job.done").count() == 0:
        seen.append(float(page.get_attribute(".bar", "aria-valuenow") or 0))
        titles.add(page.title())
        time.sleep(0.05)
    inside = [v for v in seen if 0 < v < 100]
    assert len(set(inside)) >= 3, seen  # several values strictly between 0 and 100 before done
    assert seen == sorted(seen)  # never backwards
    assert "0 of 1 done — realesr" in titles and page.title() == "realesr — upscale"

    stage_before = page.locator(".stage").bounding_box()["width"]
    level_before = page.inner_text(".zoom-level")
    page.set_viewport_size({"width": 500, "height": 900})
    _wait_until(lambda: page.inner_text(".zoom-level") != level_before)  # refitted to the narrower window
    stage = page.locator(".stage").bounding_box()
    shown = page.locator(".layer.after img").bounding_box()
    assert stage["width"] < stage_before and shown["x"] + shown["width"] <= stage["x"] + stage["width"] + 1

    page.set_input_files("#files", str(photos["huge"]))  # cancel while it runs
    _wait_until(
        lambda: (
            page.locator(".job.running").count() == 1
            and page.get_attribute(".job.running .bar", "aria-valuenow") != "0"
        )
    )
    job_id = page.get_attribute(".job.running", "data-id") or server.api("/api/jobs").json()["jobs"][-1]["id"]
    started = time.monotonic()
    page.locator(".job.running .job-cancel").click()
    page.wait_for_selector(".job.cancelled")
    folder = next(server.results.glob(f"jobs-*/{job_id}"), None)
    _wait_until(lambda: folder is None or not folder.exists(), timeout=10)
    assert time.monotonic() - started < 10
    assert server.api(f"/api/jobs/{job_id}").json()["state"] == "cancelled"
    page.context.close()


@pytest.mark.slow  # a second server start: about 12 s on 2 cores
def test_reload_second_tab_and_restart_keep_the_cards(server, browser, photos):
    page = open_page(browser, server, viewport={"width": 1280, "height": 900})
    page.set_input_files("#files", [str(photos["small"]), str(photos["second"])])
    _wait_until(lambda: page.locator(".job.done").count() == 2, timeout=60)
    names = lambda p: sorted(p.locator(".job-name").all_inner_texts())  # noqa: E731
    page.reload()
    _wait_until(lambda: page.locator(".job.done .viewer:not([hidden])").count() == 2)
    assert names(page) == ["second.png", "small.png"]
    other = page.context.new_page()
    other.goto(server.base + "/")
    _wait_until(lambda: other.locator(".job.done").count() == 2)
    other.close()

    server.stop()
    server.start()
    page.goto(server.url)
    _wait_until(lambda: page.locator(".job.done .viewer:not([hidden])").count() == 2)
    assert names(page) == ["second.png", "small.png"]
    page.wait_for_function("() => [...document.querySelectorAll('.layer img')].every(i => i.naturalWidth > 0)")

    page.locator(".job", has_text="second.png").locator(".job-cancel").click()  # remove: files go too
    _wait_until(lambda: page.locator(".job").count() == 1)
    assert len(list(server.results.glob("jobs-*/[0-9a-f]*"))) == 1
    with page.expect_download() as download:
        page.click("#download-all")
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
        assert archive.namelist() == ["small_out.png"]  # exactly what the cards show
    page.context.close()


def _clip(path: Path, seconds: float = 2.0, fps: int = 12) -> Path:
    av = pytest.importorskip("av")
    from fractions import Fraction

    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"threads": "1", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(int(seconds * fps)):
            img = np.zeros((48, 64, 3), np.uint8)
            img[..., 0] = (np.arange(64) * 4 + i * 9) % 256
            img[..., 2] = (np.arange(48)[:, None] * 5) % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_a_video_plays_before_and_after_in_one_view_in_sync(server, browser, tmp_path):
    clip = _clip(tmp_path / "clip.mp4")
    page = open_page(browser, server, viewport={"width": 1280, "height": 900})
    page.set_input_files("#files", str(clip))
    page.wait_for_selector(".job.done .viewer:not([hidden])", timeout=90_000)
    assert page.locator(".layer.after video").count() == 1 and page.locator(".layer.before video").count() == 1
    ready = "e => e.readyState >= 2 && e.duration > 1"
    _wait_until(lambda: all(page.eval_on_selector(f".layer.{s} video", ready) for s in ("before", "after")))
    page.click(".viewer .play")
    _wait_until(lambda: page.eval_on_selector(".layer.after video", "e => e.currentTime") > 0.6, timeout=20)
    times = page.evaluate("() => ['before', 'after'].map(s => document.querySelector(`.layer.${s} video`).currentTime)")
    assert abs(times[0] - times[1]) < 0.25, times  # the original follows the result's clock
    page.click(".viewer .play")  # pause: the original stops on the same frame
    page.eval_on_selector(".layer.after video", "e => { e.currentTime = 0.25; }")
    _wait_until(lambda: abs(page.eval_on_selector(".layer.before video", "e => e.currentTime") - 0.25) < 0.05)
    page.fill(".slider", "30")
    page.dispatch_event(".slider", "input")
    assert page.eval_on_selector(".layer.before", "e => e.style.clipPath") in (
        "inset(0px 70% 0px 0px)",
        "inset(0 70% 0 0)",
    )
    page.click(".viewer .toggle")  # only the original
    assert page.eval_on_selector(".viewer", "e => e.classList.contains('original')")
    assert "64 × 48 → 128 × 96 px · 24 frames" in page.inner_text(".job-info")
    page.context.close()
