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


def test_results_section_is_replaced_and_kept_by_a_suite_run(tmp_path):
    times = {(n, v, p): [0.2, 0.1, 0.3] for n in ("wages",) for v in variants.VARIANTS for p in variants.PEERS
             if p != "sklearn" or v in variants.SKLEARN_VARIANTS}
    lines = variants.report(["wages"], times)
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
