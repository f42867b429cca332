"""``run(path)``: serve a model file with uvicorn, as ``trainwell serve`` does.

The model is loaded before the socket opens, so a bad file stops the command with one line.
The socket is bound here too (a taken port is one line as well) and handed to uvicorn: to one
server in this process, or to ``workers`` processes that each load the model. On SIGTERM or
Ctrl+C uvicorn stops accepting connections, answers the requests in flight (for at most
``graceful_timeout`` seconds), then the app stops its batcher.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading

from .._errors import ConfigError
from .app import create_app, require_extra

__all__ = ["run", "app_from_environment"]

ENV_SETTINGS = "TRAINWELL_SERVE_SETTINGS"


def run(path, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, threads: int = 1,
        log_level: str = "info", access_log: bool = True, graceful_timeout: float = 30.0,
        **app_options) -> None:
    """Serve ``path`` over HTTP until interrupted (SIGINT or SIGTERM).

    Args:
        path: a ``.tw`` model file.
        host, port: where to listen (port 0 picks a free port; the line printed says which).
        workers: server processes, each with its own copy of the model.
        threads: torch threads per worker. One by default: a micro-batch is a few small matrix
            products, which more threads slow down as soon as the cores are busy with parsing,
            other workers or other programs (on a loaded 2-core machine a one-row MNIST predict
            took 6 ms with 2 threads, 0.13 ms with 1). Raise it for large requests on idle cores.
        log_level, access_log: uvicorn's logging.
        graceful_timeout: seconds to finish the requests in flight at shutdown.
        **app_options: ``create_app``'s limits (``max_body_bytes``, ``max_rows``, ...).

    Raises:
        ConfigError: the port cannot be opened, or the ``serve`` extra is missing.
        ModelFileError: the model file cannot be loaded.
    """
    require_extra()
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    path = os.path.abspath(os.fspath(path))
    app = create_app(path, **app_options)  # a bad file stops here, before anything listens
    sock = _bind(host, port)
    config_options = dict(log_level=log_level, access_log=access_log, lifespan="on",
                          timeout_graceful_shutdown=graceful_timeout)
    bound = sock.getsockname()[1]
    print(f"trainwell: serving {os.path.basename(path)} on http://{host}:{bound} with {workers} worker(s) "
          f"(docs: http://{host}:{bound}/docs); Ctrl+C to stop", file=sys.stderr, flush=True)
    with _stopping_is_success():
        if workers == 1:
            _set_threads(threads)
            uvicorn.Server(uvicorn.Config(app, **config_options)).run(sockets=[sock])
            return
        os.environ[ENV_SETTINGS] = json.dumps({"path": path, "threads": threads, "options": app_options})
        config = uvicorn.Config("trainwell.serve.server:app_from_environment", factory=True, workers=workers,
                                **config_options)
        Multiprocess(config, sockets=[sock]).run()


@contextlib.contextmanager
def _stopping_is_success():
    """After its graceful shutdown uvicorn raises the signal again for the previous handler; with a
    handler that does nothing, a server stopped by SIGTERM or Ctrl+C returns normally (exit status 0)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def app_from_environment():
    """The app of one worker process, built from the settings ``run`` put in the environment."""
    settings = json.loads(os.environ[ENV_SETTINGS])
    _set_threads(settings["threads"])
    return create_app(settings["path"], **settings["options"])


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP given, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it a response written in two parts waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Pick another --port "
                          f"(0 picks a free one) or stop the program using it.") from None
    sock.set_inheritable(True)
    return sock
