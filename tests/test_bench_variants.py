"""bench.variants: every variant really takes the path it is timed on, and its section of RESULTS.md."""

from __future__ import annotations

import dataclasses
import logging
import types

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("threadpoolctl")

from bench import report, variants  # noqa: E402
from bench.workloads import WORKLOADS, make_data  # noqa: E402

from trainwell import fastpath, training  # noqa: E402


@pytest.fixture
def restore_paths():
    yield
    training.FUSED_STEP = True
    fastpath.unsupported = variants._UNSUPPORTED


@pytest.mark.parametrize("name", ["wages", "titanic"])
@pytest.mark.parametrize("path, message", [("fused", "fused step"), ("plain", "plain autograd step"),
                                           ("torch_optim", "FUSED_STEP is False")])
def test_each_variant_trains_on_the_path_it_is_timed_on(caplog, restore_paths, name, path, message):
    spec = dataclasses.replace(WORKLOADS[name], epochs=1, n_samples=200)
    x, y = make_data(spec)
    for variant in variants.VARIANTS:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="trainwell.training"):
            variants.run_one(spec, variant, path, x, y)
        messages = [r.getMessage() for r in caplog.records if r.name == "trainwell.training"]
        assert messages and all(message in m for m in messages), (variant, messages)
    for variant in variants.VARIANTS:  # the peers run too
        variants.run_one(spec, variant, "lean", x, y)
        if variant in variants.SKLEARN_VARIANTS:
            variants.run_one(spec, variant, "sklearn", x, y)


def test_ratios_are_taken_within_a_block_of_back_to_back_fits(monkeypatch):
    """A machine that slows down 3x between rounds changes the seconds, not the ratios."""
    cost = {"fused": 1.0, "plain": 3.0, "torch_optim": 4.0, "lean": 2.0, "sklearn": 1.5}
    per_round = sum(len(variants.peers_of(v)) + (v != "plain") for v in variants.VARIANTS)
    runs = []

    def fake_run(spec, variant, peer, x, y):
        runs.append(peer)
        speed = 3.0 ** ((len(runs) - 1) // per_round)
        return cost[peer] * (2.0 if variant == "batchnorm" and peer == "fused" else 1.0) * speed

    monkeypatch.setattr(variants, "run_one", fake_run)
    times, ratios = variants.time_blocks(["wages"], {"wages": (None, None)}, rounds=3)
    assert len(runs) == 3 * per_round
    assert times[("wages", "l2", "fused")] == [1.0, 3.0, 9.0]
    assert len(times[("wages", "plain", "fused")]) == 3 * len(variants.VARIANTS)  # the references too
    assert ratios[("wages", "batchnorm", "vs plain model")] == [2.0, 2.0, 2.0]
    lines = variants.report(["wages"], times, ratios)
    row = next(line for line in lines if line.startswith("| batchnorm |"))
    assert "| 2.00 | 1.00 | n/a | 1.50 |" in row  # fused 2x the plain model, = lean; plain path 1.5x lean
    row = next(line for line in lines if line.startswith("| l2 |"))
    assert "| 1.00 | 0.50 | 0.67 | 1.50 |" in row


def test_results_section_is_replaced_and_kept_by_a_suite_run(tmp_path):
    times = {(n, v, p): [0.2, 0.1, 0.3] for n in ("wages",) for v in variants.VARIANTS for p in variants.PEERS
             if p != "sklearn" or v in variants.SKLEARN_VARIANTS}
    ratios = {(n, v, key): [1.0, 2.0, 1.0] for (n, v, p) in times
              for key in ("vs plain model", "vs lean", "plain path vs lean", "vs sklearn")
              if key != "vs sklearn" or v in variants.SKLEARN_VARIANTS}
    lines = variants.report(["wages"], times, ratios)
    assert "| l2 | 0.200 | 0.200 | 0.200 | 0.200 | 0.200 | 1.00 | 1.00 | 1.00 | 1.00 |" in lines
    assert any(line.startswith("| dropout |") and "n/a" in line for line in lines)
    path = tmp_path / "RESULTS.md"
    path.write_text("# suite\n\ntable\n")
    args = types.SimpleNamespace(rounds=3, workloads="wages")
    variants.write_section(str(path), "first", args)
    variants.write_section(str(path), "second", args)
    text = path.read_text()
    assert text.startswith("# suite\n\ntable\n\n" + report.VARIANTS_MARKER)
    assert "second" in text and "first" not in text and text.count(report.VARIANTS_MARKER) == 1
    assert report.kept_variants(text).strip().endswith("second")
    assert report.kept_variants("# suite only\n") == ""


def test_bench_optimizers_times_each_optimizer_on_the_fused_step_and_its_peers(caplog):
    from bench import optimizers as bench_optimizers

    spec = dataclasses.replace(WORKLOADS["wages"], epochs=1, n_samples=120)
    x, y = make_data(spec)
    for name in bench_optimizers.OPTIMIZERS:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="trainwell.training"):
            bench_optimizers.run_one(spec, name, "fused", x, y)
        messages = [r.getMessage() for r in caplog.records if r.name == "trainwell.training"]
        assert messages and all("fused step" in m for m in messages), (name, messages)
    times, ratios = bench_optimizers.time_blocks(spec, x, y, rounds=1)
    assert training.FUSED_STEP is True
    assert set(times) == {(n, p) for n in bench_optimizers.OPTIMIZERS for p in bench_optimizers.peers_of(n)}
    assert all(len(v) == 1 and v[0] > 0 for v in times.values())
    lines = bench_optimizers.report(times, ratios)
    assert len(lines) == 2 + len(bench_optimizers.OPTIMIZERS) and "| Lion |" in lines[2 + 7]
