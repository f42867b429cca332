"""The peer of `trainwell serve` in `bench.serve_load`: a minimal hand-written FastAPI endpoint.

What one writes by hand to put a model behind HTTP: load it, parse the JSON body with FastAPI,
scale raw columns with the stored means and standard deviations (table models), call the torch
module, return lists. No checks beyond FastAPI's, no batching.

    python -m bench.serve_baseline model.tw --port 8001
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI

from trainwell.models import load_model


def build_app(path: str) -> FastAPI:
    model = load_model(path, compile=False)
    model.eval()
    pre = model.preprocessing
    columns = mean = std = None
    if pre:
        specs = [c for c in pre["columns"] if c["kind"] != "dropped"]
        if any(c["kind"] != "numeric" or c["missing_indicator"] for c in specs):
            raise SystemExit("the baseline scales numeric columns only")
        columns = [c["name"] for c in specs]
        mean = np.array([c["mean"] for c in specs], dtype=np.float64)
        std = np.array([c["std"] for c in specs], dtype=np.float64)
    app = FastAPI()

    @app.post("/predict")
    def predict(payload: dict):
        if columns is None:
            x = np.asarray(payload["inputs"], dtype=np.float32)
        else:
            order = [payload["columns"].index(name) for name in columns]
            x = ((np.asarray(payload["data"], dtype=np.float64)[:, order] - mean) / std).astype(np.float32)
        with torch.inference_mode():
            out = model(torch.from_numpy(x))
        return {"predictions": out.numpy().tolist()}

    return app


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's]")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    uvicorn.run(build_app(args.model), host="127.0.0.1", port=args.port, access_log=False,
                log_level="warning")


if __name__ == "__main__":
    main()
