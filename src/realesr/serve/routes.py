"""The routes of `realesr serve`: module-level functions over the app's :class:`realesr.serve.app.AppState`
(``request.app.state.serve``). Every refusal is a 4xx with ``{"error": "..."}`` in words.

API (docs/serve.md): ``POST /api/jobs`` (multipart ``file`` + optional ``model``, ``outscale`` or ``width``,
``ext``, ``denoise_strength``) -> ``{"id": ...}``; ``GET /api/jobs`` lists them; ``GET /api/jobs/{id}`` its state;
``GET /api/jobs/{id}/result`` the file, ``/input`` the upload; ``DELETE /api/jobs/{id}`` cancels or removes;
``GET /api/results.zip`` every result; ``GET /api/models``; ``GET /api/limits``; ``GET /api/estimate?model=``.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import time
import traceback
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from realesr.errors import RealesrError, UsageError
from realesr.serve.jobs import Job, JobOptions, QueueFull, clean_name, parse_options
from realesr.serve.messages import damaged, not_readable
from realesr.serve.security import COOKIE_PREFIX, _UploadTooLarge

if TYPE_CHECKING:
    from realesr.serve.app import AppState

STATIC_FILES = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "index.html": "text/html",
    "favicon.svg": "image/svg+xml",
    "favicon.ico": "image/x-icon",
}
JOB_ID_CHARS = set("0123456789abcdef")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"cache-control": "no-store"})


def _state(request: Request) -> AppState:
    return request.app.state.serve


def _job(request: Request) -> Job | None:
    job_id = request.path_params["job_id"]
    if len(job_id) != 16 or not set(job_id) <= JOB_ID_CHARS:
        return None
    return _state(request).jobs.get(job_id)


# ------------------------------------------------------------------------------------------ the page


async def page(request: Request) -> Response:
    if "token" in request.query_params:
        # The Guard let the request in, so the address carried the server's one token: the cookie gets the
        # server's own value (never a client's), HttpOnly, and the address bar loses it.
        state = _state(request)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(f"{COOKIE_PREFIX}{state.port}", state.token, httponly=True, samesite="strict", path="/")
        return response
    return _static("index.html")


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        return error(404, f"no such file: {name}")
    return _static(name)


async def favicon(request: Request) -> Response:
    return _static("favicon.ico")


def _static(name: str) -> Response:
    data = (resources.files("realesr.serve") / "static" / name).read_bytes()
    return Response(
        data,
        media_type=STATIC_FILES[name],
        headers={
            "cache-control": "no-store",
            "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
            "style-src 'self'; script-src 'self'; connect-src 'self'",
            "referrer-policy": "no-referrer",
        },
    )


# ------------------------------------------------------------------------------------------ settings


async def list_models(request: Request) -> Response:
    state = _state(request)
    return JSONResponse({"models": [c.to_json() for c in state.choices], "default": state.default})


async def get_limits(request: Request) -> Response:
    limits = _state(request).limits
    return JSONResponse(
        {
            "max_upload_mb": limits.max_upload_bytes / 1e6,
            "max_pixels": limits.max_pixels,
            "max_jobs": limits.max_jobs,
        }
    )


async def estimate(request: Request) -> Response:
    """How long the model takes on this machine per megapixel (from the last jobs, else measured now on a small
    image), and the fastest model on this machine when this one is slow."""
    state = _state(request)
    name = request.query_params.get("model", state.default)
    if name not in state.by_name:
        return error(400, f"model: unknown model {name!r}; GET /api/models lists them")
    if not state.by_name[name].available:
        return JSONResponse({"model": name, "seconds_per_megapixel": None, "faster": None})
    try:
        rate = await run_in_threadpool(_speed, state, name)
    except RealesrError as err:
        return error(409, f"the model {name} could not be measured: {err}")
    faster = None
    if rate is not None and rate > SLOW_SECONDS_PER_MP:
        faster = await run_in_threadpool(_fastest, state, name, rate)
    return JSONResponse({"model": name, "seconds_per_megapixel": rate, "faster": faster})


# A model slower than this per megapixel (a phone photo is 12) is worth pointing to a faster one.
SLOW_SECONDS_PER_MP = 20.0


def _speed(state: AppState, name: str) -> float | None:
    known = state.jobs.speeds.rate(name)
    if known is not None:
        return known
    import numpy as np

    with state._measuring:
        known = state.jobs.speeds.rate(name)
        if known is not None:
            return known
        device = state.devices[0]
        upscaler = state.upscalers(JobOptions(name), device, None)
        sample = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
        upscaler.upscale_array(sample)  # warm-up: the first pass pays for allocation and kernel choice
        started = time.perf_counter()
        upscaler.upscale_array(sample)
        rate = (time.perf_counter() - started) / (sample.shape[0] * sample.shape[1] / 1e6)
        state.jobs.speeds.set(name, device, rate)
        return rate


def _fastest(state: AppState, name: str, rate: float) -> dict[str, Any] | None:
    best: tuple[float, str] | None = None
    for choice in state.choices:
        if choice.name == name or not choice.available:
            continue
        try:
            other = _speed(state, choice.name)
        except RealesrError:
            continue
        if other is not None and other * 2 < rate and (best is None or other < best[0]):
            best = (other, choice.name)
    return None if best is None else {"model": best[1], "seconds_per_megapixel": best[0]}


# ------------------------------------------------------------------------------------------ jobs


async def create_job(request: Request) -> Response:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return error(415, "send the image as multipart/form-data with a field named file")
    state = _state(request)
    job_id, folder = state.jobs.new_upload()
    try:
        result = await _receive(request, state, job_id, folder)
        if isinstance(result, Response):
            return result
        job = state.jobs.submit(result)
    except QueueFull as err:
        return error(429, str(err))
    finally:
        if state.jobs.get(job_id) is None:
            state.jobs.discard_upload(folder)
    return JSONResponse(job.to_json(), status_code=201)


async def _receive(request: Request, state: AppState, job_id: str, folder: Path) -> Job | Response:
    """The upload stored and checked, as a Job not yet queued; or the refusal."""
    try:
        form = await request.form(max_files=1, max_fields=20)
    except _UploadTooLarge:
        limit = state.limits.max_upload_bytes / 1e6
        return error(413, f"the upload is larger than the server's limit of {limit:g} MB (max_upload_mb)")
    except Exception as err:  # noqa: BLE001 -- a malformed body or a client that went away: nothing is kept
        detail = getattr(err, "detail", None) or str(err) or type(err).__name__
        return error(400, f"could not read the upload as a form: {detail}")
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        return error(400, "no file: send the image in a multipart field named file")
    try:
        options = parse_options({k: v for k, v in form.items() if isinstance(v, str)}, state.by_name, state.default)
    except UsageError as err:
        return error(400, str(err))
    name = clean_name(upload.filename)
    received = folder / "upload"
    # Disk work off the event loop: other clients are answered while a large upload is stored.
    size = await run_in_threadpool(_store, upload.file, received)
    await upload.close()
    if size == 0:
        return error(400, f"{name} is empty (0 bytes): choose the file again")
    seen = await run_in_threadpool(_inspect, received)
    if not isinstance(seen, _Seen):
        return error(415, not_readable(name) if seen is None else damaged(name))
    pixels = seen.width * seen.height
    if pixels > state.limits.max_pixels:
        return error(
            413,
            f"{name} is {seen.width} × {seen.height} = {pixels / 1e6:.1f} megapixels, more than this server "
            f"takes ({state.limits.max_pixels / 1e6:g} megapixels, max_pixels): scale it down first",
        )
    name = _with_extension(name, seen)
    (folder / "input").mkdir()
    path = folder / "input" / name
    received.rename(path)
    return Job(job_id, name, options, folder, path, size, (seen.width, seen.height), seen.frames)


async def list_jobs(request: Request) -> Response:
    return JSONResponse({"jobs": [j.to_json() for j in _state(request).jobs.jobs()]})


async def get_job(request: Request) -> Response:
    job = _job(request)
    if job is None:
        return error(404, "no such job (it was removed, or it is older than the server keeps)")
    return JSONResponse(job.to_json())


async def get_result(request: Request) -> Response:
    job = _job(request)
    if job is None:
        return error(404, "no such job (it was removed, or it is older than the server keeps)")
    if job.state != "done" or job.result is None:
        return error(409, f"{job.name} is {job.state}: there is no result yet")
    return _file(job.result)


async def get_input(request: Request) -> Response:
    """The upload as it came (for the "before" side after a reload, when the browser no longer has the file)."""
    job = _job(request)
    if job is None or not job.upload.is_file():
        return error(404, "no such job, or its upload is gone (cancelled or removed)")
    return _file(job.upload)


def _file(path: Path) -> Response:
    if not path.is_file():
        return error(410, f"{path.name} is no longer on the server")
    return FileResponse(path, filename=path.name, media_type=_media_type(path), headers={"cache-control": "no-store"})


async def delete_job(request: Request) -> Response:
    job = _job(request)
    if job is None:
        return error(404, "no such job (it was removed, or it is older than the server keeps)")
    job = _state(request).jobs.cancel_or_remove(job.id)
    if job is None:
        return error(404, "no such job (it was removed, or it is older than the server keeps)")
    return JSONResponse(job.to_json())


async def results_zip(request: Request) -> Response:
    """Every finished result this token's job list holds: the cards the page shows, no more."""
    done = [j for j in _state(request).jobs.jobs() if j.state == "done" and j.result is not None]
    if not done:
        return error(409, "no finished results yet")
    data = await run_in_threadpool(_zip, done)
    return Response(
        data,
        media_type="application/zip",
        headers={"content-disposition": 'attachment; filename="realesr-results.zip"', "cache-control": "no-store"},
    )


def _zip(done: list[Job]) -> bytes:
    buffer = io.BytesIO()
    used: set[str] = set()
    # Stored, not deflated: the images are compressed already, and the bytes stay those of the results.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for job in done:
            assert job.result is not None
            name, stem, ext, n = job.result.name, job.result.stem, job.result.suffix, 1
            while name.casefold() in used:
                n += 1
                name = f"{stem} ({n}){ext}"
            used.add(name.casefold())
            with contextlib.suppress(FileNotFoundError):
                archive.write(job.result, name)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ uploads


@dataclass(frozen=True)
class _Seen:
    width: int
    height: int
    frames: int | None  # None: a still image
    format: str


def _store(source: Any, path: Path) -> int:
    with open(path, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    return path.stat().st_size


def _inspect(path: Path) -> _Seen | RealesrError | None:
    """What the upload is, from its content: an image (size as seen, EXIF orientation applied), a video or an
    animation (size and frame count); the error of an image that is damaged; None for neither."""
    from realesr.imagefiles import read_header

    try:
        header = read_header(path)
    except RealesrError as err:
        video = _probe_video(path)
        if video is not None:
            return _Seen(video.width, video.height, video.frames or 1, "video")
        return None if "not an image file" in str(err) else err
    frames = getattr(header, "frames", 1) or 1
    return _Seen(header.width, header.height, frames if frames > 1 else None, (header.format or "PNG").upper())


def _probe_video(path: Path):
    try:
        from realesr.infer.video import probe_video
    except ImportError:  # no video extra: images only
        return None
    try:
        return probe_video(path)
    except RealesrError:
        return None


def _with_extension(name: str, seen: _Seen) -> str:
    """The name the upload is stored under: the client's, plus the extension of its format when the client's
    has none a reader knows. (A ``.txt`` name would otherwise read as a list of paths, and the server never
    reads a path a client names.)"""
    from realesr.imagefiles import READ_EXTENSIONS, VIDEO_EXTENSIONS

    if Path(name).suffix.lower() in READ_EXTENSIONS | VIDEO_EXTENSIONS:
        return name
    if seen.format == "video":  # Matroska holds any codec
        return name + ".mkv"
    return name + {"JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}.get(
        seen.format, ".png"
    )


def _media_type(path: Path) -> str:
    return {
        ".png": "image/png",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".webp": "image/webp",
        ".tif": "image/tiff",
        ".tiff": "image/tiff",
        ".bmp": "image/bmp",
        ".gif": "image/gif",
        ".apng": "image/apng",
        ".mp4": "video/mp4",
        ".m4v": "video/mp4",
        ".mov": "video/quicktime",
        ".mkv": "video/x-matroska",
        ".webm": "video/webm",
    }.get(path.suffix.lower(), "application/octet-stream")


# ------------------------------------------------------------------------------------------ the table


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 400)
    words = {404: "no such page or API route", 405: f"{request.method} is not allowed on {request.url.path}"}
    return error(status, words.get(status, str(getattr(exc, "detail", "")) or "bad request"))


async def _internal_error(request: Request, exc: Exception) -> Response:
    # The safety net, not the fix: every refusal above is a 4xx of its own; this says so when one was missed.
    traceback.print_exception(exc, file=sys.stderr)
    return error(500, "internal error, please report it (the server's terminal shows the details)")


EXCEPTION_HANDLERS: dict[Any, Any] = {HTTPException: _http_error, Exception: _internal_error}

ROUTES = [
    Route("/", page, methods=["GET"]),
    Route("/favicon.ico", favicon, methods=["GET"]),
    Route("/static/{name}", static, methods=["GET"]),
    Route("/api/models", list_models, methods=["GET"]),
    Route("/api/limits", get_limits, methods=["GET"]),
    Route("/api/estimate", estimate, methods=["GET"]),
    Route("/api/jobs", create_job, methods=["POST"]),
    Route("/api/jobs", list_jobs, methods=["GET"]),
    Route("/api/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/api/jobs/{job_id}", delete_job, methods=["DELETE"]),
    Route("/api/jobs/{job_id}/result", get_result, methods=["GET"]),
    Route("/api/jobs/{job_id}/input", get_input, methods=["GET"]),
    Route("/api/results.zip", results_zip, methods=["GET"]),
]
