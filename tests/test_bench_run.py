"""The benchmark driver's pooling of rounds (bench/run.py); the suite itself runs by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
run = pytest.importorskip("bench.run")


def _result(warm, cold, predict1, bulk_s, rss, rows=1000):
    fit = sorted(warm)[len(warm) // 2]
    return {"peer": "trainwell", "workload": "wages", "warm_fit_s": warm, "warm_fit_cpu_s": warm,
            "fit_s": fit, "epoch_s": fit / 10, "samples_per_s": 5000 / fit, "gflops_per_s": 1.0 / fit,
            "cold_fit_s": cold, "predict1_s": predict1, "import_s": 2.0, "bulk_predict_s": bulk_s,
            "bulk_rows_per_s": rows / bulk_s, "peak_rss_mib": rss, "train_loss": 0.5}


def test_pool_rounds_takes_the_median_of_all_warm_fits_and_recomputes_the_rates():
    first = _result([0.10, 0.11, 0.12], cold=0.2, predict1=4e-5, bulk_s=1e-3, rss=200)
    second = _result([0.20, 0.21, 0.22], cold=0.4, predict1=6e-5, bulk_s=3e-3, rss=250)
    pooled = run.pool_rounds([first, second])
    assert pooled["fit_s"] == pytest.approx((0.12 + 0.20) / 2)
    assert pooled["warm_fit_s"] == [0.10, 0.11, 0.12, 0.20, 0.21, 0.22]
    assert pooled["epoch_s"] == pytest.approx(pooled["fit_s"] / 10)
    assert pooled["samples_per_s"] == pytest.approx(5000 / pooled["fit_s"])
    assert pooled["cold_fit_s"] == pytest.approx(0.3) and pooled["predict1_s"] == pytest.approx(5e-5)
    assert pooled["bulk_rows_per_s"] == pytest.approx(1000 / 2e-3)
    assert pooled["peak_rss_mib"] == 250 and pooled["rounds"] == 2 and pooled["train_loss"] == 0.5


def test_pool_rounds_leaves_out_failed_rounds():
    good = _result([0.1], cold=0.2, predict1=4e-5, bulk_s=1e-3, rss=200)
    failed = {"peer": "trainwell", "workload": "wages", "error": "TimeoutExpired: 300 s"}
    assert run.pool_rounds([failed, good]) is good
    assert run.pool_rounds([failed]) is failed
