"""``create_app(path)``: the FastAPI application that serves one model file.

Endpoints: ``POST /predict`` (JSON rows, ``{"columns", "data"}``, ``{"inputs"}`` or text/csv),
``GET /health``, ``GET /metadata``, and FastAPI's OpenAPI page (``/docs``, ``/openapi.json``).

Every client mistake is a 4xx with a JSON body ``{"error": code, "message": ..., "problems":
[{"row", "column", "message"}, ...]}``; a bug or a failing model is a 500 with the same shape,
never a traceback. The body is read with its size checked as it arrives; small bodies are
parsed and checked on the event loop, large ones in a worker thread; preprocessing, the model
and the answer's JSON run in a worker thread, one micro-batch at a time.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time.

import logging
import time
from contextlib import asynccontextmanager

from .._errors import ConfigError, check_positive_int
from .batching import MicroBatcher
from .inputs import RequestError
from .model import ServedModel

__all__ = ["create_app", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_ROWS", "DEFAULT_MAX_BATCH_ROWS",
           "DEFAULT_BATCH_WAIT_MS", "DEFAULT_MAX_PENDING"]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BATCH_ROWS = 1024
DEFAULT_BATCH_WAIT_MS = 2.0
DEFAULT_MAX_PENDING = 1024
# Bodies up to this size are parsed and checked on the event loop (well under a millisecond);
# larger ones in a worker thread, so that they never hold up the other connections.
INLINE_BODY_BYTES = 32 * 1024
_log = logging.getLogger("trainwell.serve")

ERROR_RESPONSES = {
    400: {"description": "Malformed body: empty, not UTF-8, not JSON/CSV, or the wrong layout"},
    413: {"description": "Body over the size limit, or more rows than the limit"},
    415: {"description": "Unsupported Content-Type"},
    422: {"description": "Missing or unknown columns, wrong types, non-finite numbers (row, column named)"},
    503: {"description": "Too many requests waiting, or shutting down; retry"},
}


def require_extra():
    """Import FastAPI, or say how to install the ``serve`` extra."""
    try:
        import fastapi
        import uvicorn  # noqa: F401  (checked here so `trainwell serve` fails before loading the model)
    except ImportError as exc:
        raise ConfigError(f"serving needs the `serve` extra ({exc.name} is not installed): "
                          f"pip install 'trainwell[serve]'.") from None
    return fastapi


def create_app(path, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_rows: int = DEFAULT_MAX_ROWS,
               max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS, batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
               max_pending: int = DEFAULT_MAX_PENDING, extra_columns: str = "error"):
    """A FastAPI app serving the model in ``path``, for ``uvicorn`` or any ASGI server.

    The model is loaded here, so a bad file fails now rather than at the first request.

    Args:
        path: a ``.tw`` model file.
        max_body_bytes: larger request bodies get a 413 (checked while they arrive).
        max_rows: requests with more rows get a 413.
        max_batch_rows: rows of concurrent requests run together at most.
        batch_wait_ms: how long a batch waits at most for requests still being read (0: never).
        max_pending: requests waiting for the model at most; more get a 503.
        extra_columns: ``"error"`` (422 for a column the model does not know) or ``"ignore"``
            (dropped with a warning in the answer, as ``trainwell predict`` does).

    Returns:
        A ``fastapi.FastAPI`` application.

    Raises:
        ConfigError: a bad setting, or the ``serve`` extra is missing.
        ModelFileNotFoundError, ModelFileError: the model file cannot be loaded.

    Example:
        >>> app = create_app("model.tw")  # doctest: +SKIP
        >>> # uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    fastapi = require_extra()
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    limits = {"max_body_bytes": check_positive_int(max_body_bytes, "max_body_bytes", "create_app"),
              "max_rows": check_positive_int(max_rows, "max_rows", "create_app"),
              "max_batch_rows": check_positive_int(max_batch_rows, "max_batch_rows", "create_app"),
              "batch_wait_ms": _check_wait(batch_wait_ms),
              "max_pending": check_positive_int(max_pending, "max_pending", "create_app"),
              "extra_columns": _check_choice(extra_columns)}
    served = ServedModel(path, max_rows=max_rows, extra_columns=extra_columns)
    batcher = MicroBatcher(served.run_batch, max_batch_rows, batch_wait_ms / 1000, max_pending)
    metadata = served.metadata(limits)
    started = time.time()

    @asynccontextmanager
    async def lifespan(app):
        yield
        await batcher.stop()  # uvicorn has answered the requests in flight by now

    app = fastapi.FastAPI(title=f"trainwell: {metadata['model']['file']}", lifespan=lifespan,
                          version=metadata["versions"]["trainwell"],
                          description=f"Predictions of the trainwell model `{metadata['model']['file']}` "
                                      f"({metadata['model']['kind']} input). See GET /metadata.")
    app.state.served, app.state.batcher = served, batcher

    def error(status: int, body: dict, headers=None):
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestError)
    async def request_error(request, exc: RequestError):
        return error(exc.status, exc.to_json(), {"Retry-After": "1"} if exc.status == 503 else None)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):  # 404, 405: the same JSON shape as ours
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error(exc.status_code, {"error": code, "message": str(exc.detail)}, exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request, exc: Exception):
        _log.exception("internal error on %s %s", request.method, request.url.path)
        return error(500, {"error": "internal", "message": f"{type(exc).__name__}: {exc}"})

    @app.post("/predict", openapi_extra={"requestBody": served.openapi_body()}, responses=ERROR_RESPONSES,
              summary="Predict rows", response_description="predictions in request order")
    async def predict(request: fastapi.Request):
        """Predictions for the rows of the body, in order (labels and probabilities for classifiers)."""
        with batcher.incoming():
            body = await _read_body(request, max_body_bytes)
            content_type = request.headers.get("content-type")
            if len(body) <= INLINE_BODY_BYTES:  # parsed here: cheaper than a thread hop
                rows = served.prepare(body, content_type)
            else:
                rows = await run_in_threadpool(served.prepare, body, content_type)
        return Response(await batcher.submit(rows), media_type="application/json")

    @app.get("/health", summary="Liveness")
    async def health():
        return {"status": "ok", "model": metadata["model"]["file"], "batches": batcher.batches,
                "rows": batcher.rows, "uptime_s": round(time.time() - started, 3)}

    @app.get("/metadata", summary="Input schema, outputs, summary, versions")
    async def get_metadata():
        return metadata

    return app


async def _read_body(request, limit: int) -> bytes:
    """The body, refused with a 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit, at_least=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int, at_least: bool = False) -> RequestError:
    has = f"more than {limit}" if at_least else str(size)
    return RequestError(413, "body_too_large", f"The request body has {has} bytes; this server takes at most "
                                               f"{limit} (--max-body-bytes). Send fewer rows per request.")


def _check_wait(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1000:
        raise ConfigError(f"create_app: `batch_wait_ms` expects milliseconds in [0, 1000], received "
                          f"{value!r}. For example batch_wait_ms=1.")
    return float(value)


def _check_choice(value) -> str:
    if value not in ("error", "ignore"):
        raise ConfigError(f"create_app: `extra_columns` expects 'error' or 'ignore', received {value!r}.")
    return value
