"""The ASGI app of `realesr serve`: the page (static files from the package) and the HTTP API.

API (docs/serve.md): ``POST /api/jobs`` (multipart ``file`` + optional ``model``, ``outscale`` or ``width``,
``ext``, ``denoise_strength``) -> ``{"id": ...}``; ``GET /api/jobs`` lists them; ``GET /api/jobs/{id}`` its state;
``GET /api/jobs/{id}/result`` the file; ``DELETE /api/jobs/{id}`` cancels or removes; ``GET /api/results.zip``
every result; ``GET /api/models``; ``GET /api/limits``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import threading
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from realesr.errors import RealesrError, UsageError
from realesr.serve.jobs import (
    JobOptions,
    JobQueue,
    QueueFull,
    clean_name,
    parse_options,
)
from realesr.serve.security import Guard, _UploadTooLarge, allowed_host_names

log = logging.getLogger(__name__)

STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 200_000_000
    max_pixels: int = 50_000_000  # of one input image
    max_jobs: int = 100  # queued or running at once


@dataclass
class ModelChoice:
    """A model the page offers: an official name, or a weights file the server was started with."""

    name: str
    source: str | os.PathLike | Any  # what Upscaler takes: a zoo name, a path, or (tests) a LoadedModel
    scale: int
    summary: str
    available: bool  # usable offline now
    where: str  # "cache", "package", "file", or what it needs
    denoise: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scale": self.scale,
            "summary": self.summary,
            "available": self.available,
            "where": self.where,
            "denoise": self.denoise,
        }


def official_models() -> list[ModelChoice]:
    """Every zoo model, the ones found on this machine first."""
    from realesr.weights.zoo import ZOO, find_model

    choices = []
    for name, entry in ZOO.items():
        found = find_model(name)
        base = ZOO[entry.weights_of] if entry.weights_of else entry
        if found.where:
            where = found.where
        elif base.url:
            where = "downloads on first use (run `realesr models --download NAME` to get it now)"
        else:
            where = "not available"
        choices.append(
            ModelChoice(
                name,
                name,
                entry.spec.scale,
                entry.summary,
                bool(found.where),
                where,
                denoise=name == "realesr-general-x4v3",
            )
        )
    return sorted(choices, key=lambda c: not c.available)


def file_model(path: str | os.PathLike, name: str | None = None) -> ModelChoice:
    """A weights file named on the server's command line or in the user's models folder (never by a client);
    realesr's own architectures or, with the models extra, spandrel's."""
    from realesr.weights.library import inspect_model

    card = inspect_model(path)
    return ModelChoice(
        name or Path(path).stem,
        Path(path),
        card.traits.scale,
        f"{card.description} (from {Path(path).name})",
        True,
        "file",
    )


def available_models() -> list[ModelChoice]:
    """The page's model picker: the zoo (the ones found on this machine first), then the user's models folder
    (`realesr models add`); a file there that does not load is left out with a warning in the log."""
    from realesr.weights.library import user_models

    choices = official_models()
    for name, path in user_models():
        try:
            choices.append(file_model(path, name))
        except RealesrError as err:
            log.warning("your model %s (%s) is not offered: %s", name, path, err)
    return choices


class _Upscalers:
    """Loaded networks are kept (one per model and device); an Upscaler per job is then cheap."""

    def __init__(self, models: Mapping[str, ModelChoice], precision: str, allow_download: bool) -> None:
        self.models = models
        self.precision = precision
        self.allow_download = allow_download
        self._loaded: dict[tuple[str, float | None], Any] = {}
        self._lock = threading.Lock()

    def __call__(self, options: JobOptions, device: str, outscale: float | None) -> Any:
        from realesr.infer.upscaler import Upscaler
        from realesr.weights.zoo import LoadedModel, load_model

        choice = self.models[options.model]
        key = (options.model, options.denoise_strength)
        with choice._lock:
            loaded = self._loaded.get(key)
            if loaded is None:
                source = choice.source
                if isinstance(source, LoadedModel):
                    loaded = source
                else:
                    loaded = load_model(
                        source,
                        denoise_strength=options.denoise_strength,
                        allow_download=self.allow_download,
                        progress=False,
                    )
                with self._lock:
                    self._loaded[key] = loaded
        # The same defaults as `realesr upscale` (automatic tiles, alpha through the network): same bytes.
        return Upscaler(loaded, device=device, precision=self.precision, outscale=outscale, progress=False)


def create_app(
    models: Sequence[ModelChoice] | None = None,
    *,
    token: str,
    host: str = "127.0.0.1",
    port: int = 7860,
    devices: Sequence[str] = ("cpu",),
    precision: str = "auto",
    limits: Limits = Limits(),
    allow_download: bool = True,
    default_model: str | None = None,
) -> Any:
    """The app, guarded (token, Host, Origin, upload size). ``app.state.jobs`` is its JobQueue; call
    ``app.state.jobs.close()`` (done at shutdown) to delete every upload and result."""
    choices = list(models) if models is not None else available_models()
    by_name = {c.name: c for c in choices}
    if not by_name:
        raise UsageError("no model to serve")
    default = default_model or next((c.name for c in choices if c.available), choices[0].name)
    jobs = JobQueue(_Upscalers(by_name, precision, allow_download), devices=devices, max_queued=limits.max_jobs)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def page(request: Request) -> Response:
        if "token" in request.query_params:
            # Keep the token in a cookie the page's scripts cannot read, and take it out of the address bar.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(
                f"realesr_token_{port}", request.query_params["token"], httponly=True, samesite="strict", path="/"
            )
            return response
        return _static("index.html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return error(404, f"no such file: {name}")
        return _static(name)

    async def list_models(request: Request) -> Response:
        return JSONResponse({"models": [c.to_json() for c in choices], "default": default})

    async def get_limits(request: Request) -> Response:
        return JSONResponse(
            {
                "max_upload_mb": limits.max_upload_bytes / 1e6,
                "max_pixels": limits.max_pixels,
                "max_jobs": limits.max_jobs,
            }
        )

    async def create_job(request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error(415, "send the image as multipart/form-data with a field named file")
        job_id, folder = jobs.new_upload()
        try:
            try:
                form = await request.form(max_files=1, max_fields=20)
            except _UploadTooLarge:
                return error(
                    413,
                    f"the upload is larger than the server's limit of "
                    f"{limits.max_upload_bytes / 1e6:g} MB (max_upload_mb)",
                )
            except Exception as err:  # noqa: BLE001 -- a malformed body or a client that went away: nothing is kept
                return error(400, f"could not read the upload: {err}")
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return error(400, "no file: send the image in a multipart field named file")
            try:
                options = parse_options({k: v for k, v in form.items() if isinstance(v, str)}, by_name, default)
            except UsageError as err:
                return error(400, str(err))
            name = clean_name(upload.filename)
            received = folder / "upload"
            # Disk work off the event loop: other clients are answered while a large upload is stored.
            size = await run_in_threadpool(_store, upload.file, received)
            await upload.close()
            if size == 0:
                return error(400, f"{name} is empty")
            refusal = await run_in_threadpool(_check_image, received, name, limits)
            if refusal is not None:
                return refusal
            name = _with_image_extension(name, received)
            (folder / "input").mkdir()
            path = folder / "input" / name
            received.rename(path)
            job = jobs.submit(job_id, folder, path, name, size, options)
        except QueueFull as err:
            return error(429, str(err))
        finally:
            if jobs.get(job_id) is None:
                jobs.discard_upload(folder)
        return JSONResponse({"id": job.id, **job.to_json()}, status_code=201)

    async def list_jobs(request: Request) -> Response:
        return JSONResponse({"jobs": [j.to_json() for j in jobs.jobs()]})

    async def get_job(request: Request) -> Response:
        job = jobs.get(request.path_params["job_id"])
        if job is None:
            return error(404, "no such job")
        return JSONResponse(job.to_json())

    async def get_result(request: Request) -> Response:
        job = jobs.get(request.path_params["job_id"])
        if job is None:
            return error(404, "no such job")
        if job.state != "done" or job.result is None:
            return error(409, f"the job is {job.state}: there is no result" + (f" ({job.error})" if job.error else ""))
        return FileResponse(
            job.result,
            filename=job.result.name,
            media_type=_media_type(job.result),
            headers={"cache-control": "no-store"},
        )

    async def delete_job(request: Request) -> Response:
        job = jobs.cancel_or_remove(request.path_params["job_id"])
        if job is None:
            return error(404, "no such job")
        return JSONResponse(job.to_json())

    async def results_zip(request: Request) -> Response:
        done = [j for j in jobs.jobs() if j.state == "done" and j.result is not None]
        if not done:
            return error(409, "no finished results yet")
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
        return Response(
            buffer.getvalue(),
            media_type="application/zip",
            headers={"content-disposition": 'attachment; filename="realesr-results.zip"', "cache-control": "no-store"},
        )

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/api/models", list_models, methods=["GET"]),
        Route("/api/limits", get_limits, methods=["GET"]),
        Route("/api/jobs", create_job, methods=["POST"]),
        Route("/api/jobs", list_jobs, methods=["GET"]),
        Route("/api/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/api/jobs/{job_id}", delete_job, methods=["DELETE"]),
        Route("/api/jobs/{job_id}/result", get_result, methods=["GET"]),
        Route("/api/results.zip", results_zip, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        try:
            yield
        finally:
            jobs.close()

    inner = Starlette(routes=routes, lifespan=lifespan)
    inner.state.jobs = jobs
    guarded = Guard(inner, token, allowed_host_names(host, port), port, limits.max_upload_bytes)
    guarded.state = inner.state  # type: ignore[attr-defined]
    return guarded


def _store(source: Any, path: Path) -> int:
    with open(path, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    return path.stat().st_size


def _check_image(path: Path, name: str, limits: Limits) -> JSONResponse | None:
    """None for an image or a video within the limits; else the refusal."""
    from realesr.imagefiles import read_header

    try:
        header = read_header(path)
        width, height = header.width, header.height
    except RealesrError as err:
        video = _probe_video(path)
        if video is None:
            return JSONResponse(
                {"error": f"{name}: not an image or video realesr can read ({str(err).replace(str(path), name)})"},
                status_code=415,
            )
        width, height = video.width, video.height
    pixels = width * height
    if pixels > limits.max_pixels:
        return JSONResponse(
            {
                "error": f"{name} is {width} x {height} = {pixels / 1e6:.1f} MP, more than "
                f"the server's limit of {limits.max_pixels / 1e6:g} MP (max_pixels)"
            },
            status_code=413,
        )
    return None


def _probe_video(path: Path):
    try:
        from realesr.infer.video import probe_video
    except ImportError:  # no video extra: images only
        return None
    try:
        return probe_video(path)
    except RealesrError:
        return None


def _with_image_extension(name: str, path: Path) -> str:
    """The name the upload is stored under: the client's, plus the extension of its format when the client's
    has none a reader knows. (A ``.txt`` name would otherwise read as a list of paths, and the server never
    reads a path a client names.)"""
    from realesr.imagefiles import READ_EXTENSIONS, VIDEO_EXTENSIONS, read_header

    if Path(name).suffix.lower() in READ_EXTENSIONS | VIDEO_EXTENSIONS:
        return name
    try:
        fmt = (read_header(path).format or "PNG").upper()
    except RealesrError:  # a video (checked before): Matroska holds any codec
        return name + ".mkv"
    return name + {"JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}.get(fmt, ".png")


def _static(name: str) -> Response:
    data = (resources.files("realesr.serve") / "static" / name).read_bytes()
    return Response(
        data,
        media_type=STATIC_FILES[name],
        headers={
            "cache-control": "no-store",
            "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; "
            "style-src 'self'; script-src 'self'; connect-src 'self'",
            "referrer-policy": "no-referrer",
        },
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
