"""`realesr serve` in a real browser: Playwright drives Debian's Chromium against the real command."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")
from serve_helpers import tiny_weights

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,  # a browser and a server per test
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]


def _wait_until(condition, timeout: float = 30.0) -> None:
    """Poll from Python: the page's CSP (no eval) forbids Playwright's in-page wait_for_function."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def server(tmp_path):
    weights = tiny_weights(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "realesr",
            "serve",
            "--port",
            "0",
            "--model",
            str(weights),
            "--only",
            "--no-download",
            "--device",
            "cpu",
            "--no-keep",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    assert match, f"no address printed: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
    yield match.group(1), weights
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow  # the CLI runs beside the server for the expected bytes: over 15 s on 2 cores
def test_drop_an_image_watch_it_slide_and_download_the_clis_bytes(server, shared_data, tmp_path):
    url, weights = server
    source = shared_data / "real_lr" / "RealESRGAN_inputs" / "children-alpha.png"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
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
            str(tmp_path / "cli"),
            "--no-progress",
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    expected = (tmp_path / "cli" / "children-alpha_out.png").read_bytes()

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
            outside: list[str] = []
            page.on(
                "request",
                lambda r: (
                    None
                    if r.url.startswith(url.split("/?")[0]) or r.url.startswith(("blob:", "data:"))
                    else outside.append(r.url)
                ),
            )
            page.goto(url)
            assert "token" not in page.url  # moved into the cookie
            page.wait_for_selector("#model option[value='tiny']", state="attached")
            # Drop the file the way a person does: a DataTransfer with the file's bytes on the drop zone.
            data = base64.b64encode(source.read_bytes()).decode()
            transfer = page.evaluate_handle(
                """([data, name]) => {
                    const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
                    const dt = new DataTransfer();
                    dt.items.add(new File([bytes], name, {type: 'image/png'}));
                    return dt;
                }""",
                [data, source.name],
            )
            page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
            page.wait_for_selector(".job.done", timeout=240_000)
            assert "children-alpha_out.png" in page.inner_text(".job-info")
            page.wait_for_function("() => document.querySelector('.layer.after img').naturalWidth > 0")
            page.wait_for_function("() => document.querySelector('.layer.before img').naturalWidth > 0")

            page.fill(".slider", "25")
            page.dispatch_event(".slider", "input")
            clip = page.eval_on_selector(".layer.before", "e => e.style.clipPath")
            assert clip == "inset(0px 75% 0px 0px)" or clip == "inset(0 75% 0 0)"
            page.click(".zoom-in")
            page.mouse.move(600, 400)
            box = page.locator(".stage").bounding_box()
            page.mouse.move(box["x"] + 200, box["y"] + 200)
            page.mouse.down()
            page.mouse.move(box["x"] + 150, box["y"] + 170)
            page.mouse.up()
            before, after = (
                page.eval_on_selector(sel, "e => [e.style.transform, e.style.width]")
                for sel in (".layer.before img", ".layer.after img")
            )
            assert before == after and "translate" in before[0]  # zoom and pan in step on both sides
            # Saved for a person to look at (REALESR_SERVE_SCREENSHOT=path keeps it).
            shot = Path(os.environ.get("REALESR_SERVE_SCREENSHOT") or tmp_path / "serve.png")
            page.screenshot(path=str(shot), full_page=True)

            with page.expect_download() as info:
                page.click(".viewer .download")
            download = info.value
            assert download.suggested_filename == "children-alpha_out.png"
            assert Path(download.path()).read_bytes() == expected
            assert outside == []  # nothing fetched from anywhere but the server
        finally:
            browser.close()


@pytest.mark.slow  # the CLI runs beside the server for the expected bytes: over 15 s on 2 cores
def test_choose_and_paste_several_files_errors_in_words_and_the_zip(server, shared_data, tmp_path):
    """The other ways in (the file chooser with several files, a paste), ×3 chosen on the page, a broken file
    failing in words while the others finish, and "Download all" holding the CLI's bytes."""
    import io
    import zipfile

    from PIL import Image

    url, weights = server
    with Image.open(shared_data / "real_lr" / "RealESRGAN_inputs" / "0014.jpg") as im:
        im.crop((20, 20, 68, 52)).save(tmp_path / "crop.png")
        im.crop((80, 60, 120, 100)).save(tmp_path / "pasted.png")
    (tmp_path / "broken.png").write_bytes(b"this is not a picture")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    expected = {}
    for name in ("crop.png", "pasted.png"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "realesr",
                "upscale",
                str(tmp_path / name),
                "-m",
                str(weights),
                "-o",
                str(tmp_path / "cli"),
                "-s",
                "3",
                "--no-progress",
            ],
            check=True,
            env=env,
            capture_output=True,
            timeout=300,
        )
        expected[name.replace(".png", "_out.png")] = (tmp_path / "cli" / name.replace(".png", "_out.png")).read_bytes()

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(accept_downloads=True)
            page.goto(url)
            page.wait_for_selector("#model option[value='tiny']", state="attached")
            page.select_option("#scale", "3")
            page.set_input_files("#files", [str(tmp_path / "crop.png"), str(tmp_path / "broken.png")])
            data = base64.b64encode((tmp_path / "pasted.png").read_bytes()).decode()
            page.evaluate(
                """(data) => {
                    const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
                    const dt = new DataTransfer();
                    dt.items.add(new File([bytes], 'pasted.png', {type: 'image/png'}));
                    document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt}));
                }""",
                data,
            )
            page.wait_for_selector(".job.failed", timeout=60_000)
            _wait_until(lambda: page.locator(".job.done").count() == 2, timeout=120)
            failed = page.locator(".job.failed")
            assert failed.locator(".job-name").inner_text() == "broken.png"
            assert "is not a picture or video" in failed.locator(".job-error").inner_text()
            with page.expect_download() as info:
                page.click("#download-all")
            with zipfile.ZipFile(io.BytesIO(Path(info.value.path()).read_bytes())) as archive:
                assert {n: archive.read(n) for n in archive.namelist()} == expected
        finally:
            browser.close()
