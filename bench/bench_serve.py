"""The web server's overhead: time from upload to downloaded result against `realesr upscale` on the same file.

    python bench/bench_serve.py [--model realesr-animevideov3] [--image PATH] [--repeats 3] \\
        [--screenshot shot.png]

Both run in fresh processes: the CLI end to end (process start, model load, read, upscale, write), and the server
(started once; model loaded by its first job, which is not timed) from POST to the last byte of the result.
Prints the median of the repeats; with --screenshot also drives Debian's chromium through the page for a picture.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "real_lr" / "RealESRGAN_inputs" / "0014.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="realesr-animevideov3")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    work = Path(tempfile.mkdtemp())

    cli_times = []
    for i in range(args.repeats):
        out = work / f"cli{i}"
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "realesr",
                "upscale",
                str(args.image),
                "-m",
                args.model,
                "-o",
                str(out),
                "--no-progress",
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        cli_times.append(time.perf_counter() - started)

    proc = subprocess.Popen(
        [sys.executable, "-m", "realesr", "serve", "--port", "0", "--device", "cpu", "--no-download", "--no-keep"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = re.search(r"(http://\S+)", proc.stdout.readline()).group(1)
        base, token = url.split("/?token=")
        headers = {"Authorization": f"Bearer {token}"}
        server_times, job_times = [], []
        with httpx.Client(base_url=base, headers=headers, timeout=600) as c:
            for i in range(args.repeats + 1):
                started = time.perf_counter()
                with open(args.image, "rb") as f:
                    job = c.post("/api/jobs", files={"file": (args.image.name, f)}, data={"model": args.model}).json()
                while (state := c.get(f"/api/jobs/{job['id']}").json())["state"] in ("queued", "running"):
                    time.sleep(0.01)
                body = c.get(f"/api/jobs/{job['id']}/result").content
                elapsed = time.perf_counter() - started
                if i == 0:
                    expected = next((work / "cli0").iterdir()).read_bytes()
                    assert body == expected, "the server's result differs from the CLI's"
                    continue  # the first job loads the model
                server_times.append(elapsed)
                job_times.append(state["seconds"])
        if args.screenshot:
            screenshot(url, args.image, args.model, args.screenshot)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    cli, server, job = (statistics.median(t) for t in (cli_times, server_times, job_times))
    print(f"image {args.image.name}, model {args.model}, median of {args.repeats}")
    print(f"realesr upscale (whole process, model load included): {cli:.3f} s")
    print(
        f"realesr serve, upload -> result downloaded (model loaded): {server:.3f} s, "
        f"of which the job itself (read, upscale, write) {job:.3f} s"
    )
    print(f"server overhead (HTTP, polling every 10 ms, queue): {server - job:.3f} s")


def screenshot(url: str, image: Path, model: str, path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(url)
        page.wait_for_selector(f"#model option[value='{model}']", state="attached")
        page.select_option("#model", model)
        page.set_input_files("#files", str(image))
        page.wait_for_selector(".job.done", timeout=600_000)
        page.wait_for_function("() => document.querySelector('.layer.after img').naturalWidth > 0")
        page.fill(".slider", "45")
        page.dispatch_event(".slider", "input")
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(path), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
