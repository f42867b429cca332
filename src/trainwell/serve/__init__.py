"""Serve a model over HTTP: ``trainwell serve model.tw`` or ``create_app("model.tw")``.

``create_app(path)`` builds a FastAPI application for any ASGI server; ``run(path)`` serves it
with uvicorn (the ``trainwell serve`` command). Both need the ``serve`` extra
(``pip install 'trainwell[serve]'``); FastAPI and uvicorn load only when called.

Modules: ``inputs`` (request bodies → features, and the 4xx errors), ``batching`` (the
micro-batcher), ``model`` (the served model, its answers and metadata), ``app``
(``create_app``), ``server`` (``run``).

Example:
    >>> from trainwell.serve import create_app
    >>> app = create_app("model.tw")  # doctest: +SKIP
    $ trainwell serve model.tw --port 8000
    $ curl -s localhost:8000/predict -H 'Content-Type: application/json' -d '[{"age": 31, ...}]'
"""

from __future__ import annotations

from .app import (
    DEFAULT_BATCH_WAIT_MS,
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_ROWS,
    create_app,
)
from .inputs import RequestError
from .server import run

__all__ = ["create_app", "run", "RequestError", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_ROWS",
           "DEFAULT_MAX_BATCH_ROWS", "DEFAULT_BATCH_WAIT_MS", "DEFAULT_MAX_PENDING"]
