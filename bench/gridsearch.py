"""GridSearchCV over 8 configurations of the course's wages model: trainwell's estimator against
scikit-learn's MLPRegressor, the same grid, data, folds and pipeline, one run each.

The wages data (534 rows, 9 raw features, hourly wage target) goes through the same pipeline for
both: ``StandardScaler`` on the features, then the network; both standardise the target (the
trainwell regressor by default, ``scale_target=True``; the MLP inside a
``TransformedTargetRegressor`` with a ``StandardScaler``). Grid (2 x 2 x 2 = 8): hidden layers
(50, 32) or (100,), learning rate 0.001 or 0.01, batch size 32 or 128. Each configuration trains
with Adam for ``--epochs`` epochs (the MLP with ``tol=0`` and no early stop, so it runs them all),
5-fold CV (the folds shuffled with a fixed seed), R² scoring, ``n_jobs=2``.

Reported: wall time of each search (``fit`` includes the refit of the best configuration), the
best mean CV R² and the configuration that won. The worker processes are started (and import
torch, trainwell and scikit-learn) before the clocks run, so neither search pays for that. The
machine may be shared: the two searches run one after the other, and the load average is printed
at start and end.

Usage:
    python -m bench.gridsearch
    python -m bench.gridsearch --epochs 100 --n-jobs 1
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

from joblib import Parallel, delayed
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from trainwell.datasets import load_wages
from trainwell.sklearn import TrainwellRegressor

LAYERS = [(50, 32), (100,)]
LEARNING_RATES = [0.001, 0.01]
BATCH_SIZES = [32, 128]


def searches(epochs: int, n_jobs: int, folds: int) -> dict[str, GridSearchCV]:
    """The two searches, unfitted: name -> GridSearchCV over the same 8 configurations."""
    trainwell = TrainwellRegressor(epochs=epochs, random_state=0)
    mlp = TransformedTargetRegressor(
        MLPRegressor(max_iter=epochs, tol=0.0, n_iter_no_change=10**9, alpha=0.0, epsilon=1e-7,
                     random_state=0),
        transformer=StandardScaler())
    grids = {
        "trainwell TrainwellRegressor": {"net__layers": LAYERS, "net__learning_rate": LEARNING_RATES,
                                         "net__batch_size": BATCH_SIZES},
        "scikit-learn MLPRegressor": {"net__regressor__hidden_layer_sizes": LAYERS,
                                      "net__regressor__learning_rate_init": LEARNING_RATES,
                                      "net__regressor__batch_size": BATCH_SIZES},
    }
    cv = KFold(folds, shuffle=True, random_state=0)
    return {name: GridSearchCV(Pipeline([("scale", StandardScaler()), ("net", estimator)]), grids[name],
                               cv=cv, n_jobs=n_jobs, scoring="r2")
            for name, estimator in zip(grids, (trainwell, mlp))}


def _import_both() -> None:
    import sklearn.neural_network  # noqa: F401
    import torch  # noqa: F401

    import trainwell.sklearn  # noqa: F401


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    X, y = load_wages()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs); wages {X.shape}, "
          f"8 configurations x {args.folds} folds, {args.epochs} epochs, n_jobs={args.n_jobs}")
    # Start the worker processes and import both libraries in them before any clock runs, so that
    # neither search pays for the process start-up (the first would, the second reuses the pool).
    Parallel(n_jobs=args.n_jobs)(delayed(_import_both)() for _ in range(args.n_jobs))
    lines = ["| estimator | wall time (s) | best mean CV R² | best configuration |", "|---|---|---|---|"]
    for name, search in searches(args.epochs, args.n_jobs, args.folds).items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached on purpose
            search.fit(X, y)
        seconds = time.perf_counter() - start
        best = {key.rsplit("__", 1)[-1]: value for key, value in search.best_params_.items()}
        lines.append(f"| {name} | {seconds:.1f} | {search.best_score_:.4f} | {best} |")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
