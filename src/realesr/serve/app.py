"""The ASGI app of `realesr serve`: what it serves (the models, the limits) and its state; the routes are in
:mod:`realesr.serve.routes`, the API is listed in docs/serve.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from realesr.errors import RealesrError, UsageError
from realesr.serve.jobs import JobOptions, JobQueue
from realesr.serve.routes import EXCEPTION_HANDLERS, ROUTES
from realesr.serve.security import Guard, allowed_host_names, check_token

log = logging.getLogger(__name__)


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
                denoise=entry.denoise_with is not None,
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


@dataclass
class AppState:
    """Everything the routes share: the models offered, the limits, the job queue, and the server's token."""

    choices: list[ModelChoice]
    default: str
    limits: Limits
    jobs: JobQueue
    upscalers: _Upscalers
    token: str
    port: int
    devices: tuple[str, ...]
    _measuring: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def by_name(self) -> dict[str, ModelChoice]:
        return {c.name: c for c in self.choices}


def model_choices(models: Sequence[ModelChoice] | None, allow_download: bool) -> list[ModelChoice]:
    """The models the page offers: those given (else the zoo and the user's models folder), less those that
    would need a download when downloads are off."""
    choices = list(models) if models is not None else available_models()
    if not allow_download:
        choices = [c for c in choices if c.available]
    return choices


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
    work_dir: str | os.PathLike | None = None,
    keep_seconds: float = 0.0,
) -> Any:
    """The app, guarded (token, Host, Origin, upload size). ``app.state.jobs`` is its JobQueue, kept in
    ``work_dir`` (None: a temporary folder deleted at shutdown); call ``app.state.jobs.close()`` (done at
    shutdown) to stop its workers."""
    check_token(token)
    choices = model_choices(models, allow_download)
    if not choices:
        raise UsageError("no model to serve: none is on this machine and downloads are off")
    default = default_model or next((c.name for c in choices if c.available), choices[0].name)
    upscalers = _Upscalers({c.name: c for c in choices}, precision, allow_download)
    jobs = JobQueue(
        upscalers, devices=devices, max_queued=limits.max_jobs, work_dir=work_dir, keep_seconds=keep_seconds
    )
    state = AppState(choices, default, limits, jobs, upscalers, token, port, tuple(devices))

    inner = Starlette(routes=ROUTES, lifespan=_lifespan, exception_handlers=EXCEPTION_HANDLERS)
    inner.state.serve = state
    inner.state.jobs = jobs
    guarded = Guard(inner, token, allowed_host_names(host, port), port, limits.max_upload_bytes)
    guarded.state = inner.state  # type: ignore[attr-defined]
    return guarded


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    try:
        yield
    finally:
        app.state.serve.jobs.close()  # stops the workers (a temporary folder goes with them)
