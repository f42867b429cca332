"""The training doctor's parts: findings, probes (against autograd and numpy), each detector on
hand-made records, the monitor inside ``fit``, ``diagnose`` and the learning-rate finder.

The labelled end-to-end scenarios live in ``test_diagnostics_scenarios.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainwell import diagnostics
from trainwell._errors import ConfigError
from trainwell.callbacks import overrides
from trainwell.diagnostics import Finding, RunRecord, format_findings, probe_epochs, probes, run_detectors
from trainwell.diagnostics import detectors as det
from trainwell.diagnostics.lr_finder import suggest
from trainwell.diagnostics.record import LayerInfo, Probe
from trainwell.layers import Dense, Input, Normalization
from trainwell.models import Sequential
from trainwell.optimizers import SGD, Adam
from trainwell.utils import set_random_seed

# ----------------------------------------------------------------------------------------------
# helpers


def regression_data(n=200, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ rng.normal(size=(d, 1)) + 0.1 * rng.normal(size=(n, 1))).astype(np.float32)
    return x, y


def small_model(units=8, activation="relu", out=1, out_activation=None, optimizer="adam", loss="mse", d=4):
    model = Sequential(
        [Input(shape=(d,)), Dense(units, activation=activation), Dense(out, activation=out_activation)]
    )
    model.compile(optimizer=optimizer, loss=loss)
    return model


def record(**kwargs) -> RunRecord:
    """A record of a healthy regression run, with fields overridden by ``kwargs``."""
    base = dict(
        layers=[LayerInfo("dense", "Dense", "relu", 8), LayerInfo("dense_1", "Dense", "linear", 1, True)],
        loss_name="mean_squared_error",
        loss_kind="regression",
        optimizer="Adam",
        n_train=200,
        n_features=4,
        n_params=49,
        x_mean=[0.0] * 4,
        x_std=[1.0] * 4,
        y_min=-3.0,
        y_max=3.0,
        y_distinct=200,
        baseline_loss=1.0,
        learning_rates=[0.001] * 20,
        epochs=list(range(20)),
        logs=[{"loss": 1.0 / (1 + e), "val_loss": 1.1 / (1 + e)} for e in range(20)],
        probes=[Probe(-1, loss=1.0), Probe(19, loss=0.05)],
        update_ratios={0: {"dense": 1e-3, "dense_1": 1e-3}},
    )
    base.update(kwargs)
    return RunRecord(**base)


def codes(rec: RunRecord) -> set[str]:
    return {f.code for f in run_detectors(rec) if f.is_problem}


# ----------------------------------------------------------------------------------------------
# findings


def test_finding_rejects_unknown_severity():
    with pytest.raises(ConfigError, match="severity"):
        Finding("x", "fatal", None, {}, "m", "f")


def test_finding_text_and_dict():
    f = Finding("lr_too_high", "error", "dense", {"loss": math.nan}, "The loss became nan.", "Lower it.")
    assert str(f) == "[error] lr_too_high (layer 'dense'): The loss became nan. Fix: Lower it."
    assert f.to_dict()["evidence"] == {"loss": "nan"}
    assert f.is_problem and not Finding("x", "info", None, {}, "", "").is_problem


def test_format_findings_is_empty_for_healthy_runs_and_sorted_otherwise():
    info = Finding("stalled", "info", None, {}, "flat", "stop")
    warn = Finding("overfitting", "warning", None, {}, "rising", "EarlyStopping")
    err = Finding("lr_too_high", "error", None, {}, "nan", "lower")
    assert format_findings([]) == "" and format_findings([info]) == ""
    text = format_findings([info, warn, err])
    lines = text.splitlines()
    assert lines[0].startswith("Training doctor: 2 problems")
    assert lines[1].startswith("  ERROR lr_too_high") and lines[3].startswith("  WARNING overfitting")
    assert "stalled" not in text
    assert "1 more" in format_findings([warn, err], limit=1)


def test_probe_epochs():
    assert sorted(probe_epochs(0, 29)) == [0, 7, 29]
    assert sorted(probe_epochs(5, 7)) == [5, 7]
    assert sorted(probe_epochs(0, 499)) == [0, 7, 63, 499]
    assert probe_epochs(3, 2) == set()
    assert probe_epochs(0, 9, "full") == set(range(10))
    assert len(probe_epochs(0, 499, "full")) == 101


# ----------------------------------------------------------------------------------------------
# probes


def test_probe_gradients_match_autograd_in_float64():
    set_random_seed(1)
    model = small_model(units=5, activation="tanh", d=3)
    x = torch.randn(16, 3)
    y = torch.randn(16, 1)
    probe = probes.take_probe(model, x, y, epoch=-1)
    # The same loss in float64, by hand: mse of W2·tanh(W1 x + b1) + b2.
    w1, b1, w2, b2 = (p.detach().double().requires_grad_() for p in model.parameters())
    z1 = x.double() @ w1 + b1
    z2 = torch.tanh(z1) @ w2 + b2
    loss = ((z2 - y.double()) ** 2).mean()
    g_z1, g_z2, g_w1, g_w2 = torch.autograd.grad(loss, [z1, z2, w1, w2])
    names = [layer.name for layer in model.layers]
    assert [n for n, _ in probe.signal] == names
    assert probe.signal[0][1] == pytest.approx(float(g_z1.pow(2).mean().sqrt()), rel=1e-5)
    assert probe.signal[1][1] == pytest.approx(float(g_z2.pow(2).mean().sqrt()), rel=1e-5)
    assert probe.grad_norms[names[0]] == pytest.approx(float(g_w1.norm()), rel=1e-5)
    assert probe.grad_norms[names[1]] == pytest.approx(float(g_w2.norm()), rel=1e-5)
    assert probe.weight_norms[names[0]] == pytest.approx(float(w1.detach().norm()), rel=1e-6)
    assert probe.loss == pytest.approx(float(loss.detach()), rel=1e-6)


def test_probe_leaves_grads_training_mode_and_random_state_alone():
    model = small_model()
    model.train()
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    state = torch.get_rng_state()
    probes.take_probe(model, x, y, epoch=0)
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    assert torch.equal(torch.get_rng_state(), state)


def test_probe_finds_dead_and_saturated_units():
    model = Sequential(
        [Input(shape=(2,)), Dense(3, activation="relu"), Dense(2, activation="tanh"), Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse")
    relu, tanh = model.layers[0], model.layers[1]
    relu.set_weights([np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]), np.array([0.0, -10.0, -1.0])])
    tanh.set_weights([np.array([[100.0, 0.0], [0.0, 0.0], [0.0, 0.0]]), np.array([0.0, 0.0])])
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [0.5, 3.0]])
    probe = probes.take_probe(model, x, torch.zeros(4, 1), epoch=-1)
    # Unit 0 is positive for x0 > 0; unit 1 is -x0 - 10 < 0 always; unit 2 is -1 always.
    assert probe.dead[relu.name] == [False, True, True]
    # tanh unit 0 sees 100·relu(x0): |tanh| > 0.99 on the three rows with x0 > 0; unit 1 is tanh(0) = 0.
    assert probe.saturated[tanh.name] == pytest.approx(3 / 8)


def test_update_ratios_hand_worked():
    model = Sequential([Input(shape=(1,)), Dense(2)])
    layer = model.layers[0]
    layer.set_weights([np.array([[3.0, 4.0]]), np.zeros(2)])
    before = probes.kernel_snapshot(model)
    layer.set_weights([np.array([[3.3, 4.4]]), np.zeros(2)])
    # ‖ΔW‖ = ‖(0.3, 0.4)‖ = 0.5, ‖W‖ = 5: 0.1 over the epoch, 0.01 per step with 10 steps.
    assert probes.update_ratios(model, before, steps=10)[layer.name] == pytest.approx(0.01, rel=1e-5)


def test_input_stats_after_a_leading_normalization():
    x = np.array([[1.0, 100.0], [3.0, 300.0], [5.0, 500.0]], dtype=np.float32)
    raw = Sequential([Input(shape=(2,)), Dense(1)])
    means, stds, normalized = probes.input_stats(raw, torch.tensor(x))
    assert means == pytest.approx([3.0, 300.0]) and stds == pytest.approx(list(x.std(0)))
    assert not normalized
    norm = Normalization()
    norm.adapt(x)
    scaled = Sequential([Input(shape=(2,)), norm, Dense(1)])
    means, stds, _ = probes.input_stats(scaled, torch.tensor(x))
    assert means == pytest.approx([0.0, 0.0], abs=1e-6) and stds == pytest.approx([1.0, 1.0], rel=1e-5)


def test_baseline_losses_match_numpy():
    model = small_model()
    y = torch.tensor([[1.0], [2.0], [4.0], [5.0]])
    assert probes.baseline_loss(model, y, "regression") == pytest.approx(float(np.var([1, 2, 4, 5])))
    labels = torch.tensor([0, 0, 0, 1])
    p = np.array([0.75, 0.25])
    assert probes.baseline_loss(model, labels, "sparse") == pytest.approx(
        -np.mean(np.log(p[[0, 0, 0, 1]])), rel=1e-6
    )
    onehot = torch.eye(2)[labels]
    assert probes.baseline_loss(model, onehot, "categorical") == pytest.approx(
        -np.mean(np.log(p[[0, 0, 0, 1]])), rel=1e-6
    )
    binary = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    expected = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    assert probes.baseline_loss(model, binary, "binary") == pytest.approx(expected, rel=1e-6)


def test_target_stats():
    stats = probes.target_stats(torch.tensor([[0.0], [1.0], [1.0], [0.5]]))
    assert stats == pytest.approx(
        {"y_min": 0.0, "y_max": 1.0, "y_mean": 0.625, "y_std": 0.4145781, "y_distinct": 3, "y_integer": False,
         "y_columns": 1}
    )


# ----------------------------------------------------------------------------------------------
# detectors on hand-made records


def test_healthy_record_has_no_problem():
    assert codes(record()) == set()


@pytest.mark.parametrize(
    "activation, loss_kind, units, from_logits, severity",
    [
        ("softmax", "binary", 3, False, "error"),
        ("sigmoid", "categorical", 1, False, "error"),
        ("softmax", "sparse", 1, False, "error"),
        ("linear", "binary", 1, False, "error"),
        ("relu", "categorical", 3, False, "error"),
    ],
)
def test_loss_output_mismatch(activation, loss_kind, units, from_logits, severity):
    rec = record(
        layers=[LayerInfo("dense", "Dense", "relu", 8), LayerInfo("out", "Dense", activation, units, True)],
        loss_kind=loss_kind,
        loss_name=f"{loss_kind}_crossentropy",
        from_logits=from_logits,
        y_min=0.0,
        y_max=1.0,
        y_distinct=2,
        y_integer=True,
    )
    found = det.loss_output_mismatch(rec)
    assert [(f.code, f.severity, f.layer) for f in found] == [("loss_output_mismatch", severity, "out")]


def test_no_mismatch_for_matching_pairs_and_logits():
    for act, kind, logits in [
        ("sigmoid", "binary", False),
        ("softmax", "categorical", False),
        ("linear", "binary", True),
        ("linear", "regression", False),
    ]:
        rec = record(
            layers=[LayerInfo("out", "Dense", act, 2, True)],
            loss_kind=kind,
            from_logits=logits,
            y_min=0.0,
            y_max=1.0,
            y_distinct=2,
            y_integer=True,
        )
        assert det.loss_output_mismatch(rec) == [], (act, kind)


def test_mismatch_for_continuous_targets_and_unreachable_ranges():
    continuous = record(
        layers=[LayerInfo("out", "Dense", "sigmoid", 1, True)],
        loss_kind="binary",
        loss_name="binary_crossentropy",
        y_min=0.01,
        y_max=0.98,
        y_distinct=150,
        y_integer=False,
    )
    assert [f.severity for f in det.loss_output_mismatch(continuous)] == ["warning"]
    wages = record(layers=[LayerInfo("out", "Dense", "sigmoid", 1, True)], y_min=1.0, y_max=44.5)
    (finding,) = det.loss_output_mismatch(wages)
    assert "[0, 1]" in finding.message and "44.5" in finding.message
    negative = record(layers=[LayerInfo("out", "Dense", "relu", 1, True)], y_min=-2.0, y_max=2.0)
    assert det.loss_output_mismatch(negative)[0].evidence["activation"] == "relu"


def test_unscaled_inputs():
    assert det.unscaled_inputs(record(x_mean=[0, 0, 0, 0], x_std=[1, 1, 1, 1000.0]))[0].evidence[
        "columns"
    ] == [3]
    assert det.unscaled_inputs(record(x_mean=[0, 0, 2000.0, 0], x_std=[1, 1, 5, 1]))[0].evidence[
        "columns"
    ] == [2]
    assert det.unscaled_inputs(record(x_mean=[0, 0.5, 37, 13], x_std=[1, 0.5, 12, 2.6])) == []
    assert det.unscaled_inputs(record(x_std=[1, 1, 1, 1000.0], inputs_normalized_in_model=True)) == []


def dead_probe(epoch, dead):
    return Probe(epoch, loss=1.0, dead={"dense": [True] * dead + [False] * (10 - dead)})


def test_dead_units_counts_deaths_and_since_when():
    rec = record(probes=[dead_probe(-1, 0), dead_probe(0, 2), dead_probe(2, 9), dead_probe(4, 9)])
    (finding,) = det.dead_units(rec)
    assert finding.severity == "warning" and finding.layer == "dense"
    assert finding.evidence["dead"] == 9 and finding.evidence["died_during_training"] == 9
    assert finding.evidence["dead_by_epoch"] == 3  # 1-based: the probe after 0-based epoch 2
    assert "(9) output zero for every probe sample (dead by epoch 3;" in finding.message
    everything = record(probes=[dead_probe(-1, 10), dead_probe(4, 10)])
    assert det.dead_units(everything)[0].severity == "error"
    assert det.dead_units(record(probes=[dead_probe(-1, 0), dead_probe(4, 3)])) == []


def signal_probe(epoch, values, **kwargs):
    names = [f"dense_{i}" for i in range(len(values))]
    return Probe(epoch, loss=1.0, signal=list(zip(names, values)), **kwargs)


def test_vanishing_and_exploding_gradients_from_the_signal_ratio():
    vanish = record(probes=[signal_probe(-1, [1e-9, 1e-6, 1e-3]), signal_probe(9, [1e-8, 1e-5, 1e-3])])
    assert codes(vanish) == {"vanishing_gradients"}
    explode = record(probes=[signal_probe(-1, [1e4, 1e2, 1.0]), signal_probe(9, [1e3, 1e1, 1.0])])
    assert codes(explode) == {"exploding_gradients"}
    healthy = record(probes=[signal_probe(-1, [0.1, 0.3, 1.0]), signal_probe(9, [0.2, 0.5, 1.0])])
    assert codes(healthy) == set()


def test_saturation_and_non_finite_gradients():
    sat = record(probes=[Probe(-1, loss=1.0), Probe(9, loss=0.1, saturated={"dense": 0.8})])
    (finding,) = det.vanishing_gradients(sat)
    assert finding.layer == "dense" and finding.evidence["saturated_fraction"] == 0.8
    broken = record(probes=[Probe(-1, loss=1.0), Probe(3, loss=math.nan, grads_finite=False)])
    assert det.exploding_gradients(broken)[0].severity == "error"


def test_oversized_gradients():
    probe = Probe(-1, loss=1e6, grad_norms={"dense": 1e7}, weight_norms={"dense": 60.0})
    rec = record(probes=[probe, Probe(9, loss=1e5)])
    assert det.exploding_gradients(rec)[0].evidence["ratio"] == pytest.approx(1e7 / 60)


def test_lr_too_high_on_nan_divergence_oscillation_and_first_epoch_jump():
    nan = record(logs=[{"loss": 1.0}, {"loss": math.nan}], epochs=[0, 1])
    (finding,) = det.lr_too_high(nan)
    assert finding.severity == "error" and finding.evidence["nan_epoch"] == 2
    diverging = record(logs=[{"loss": v} for v in [1.0, 0.5, 0.8, 1.5]])
    assert "diverges" in det.lr_too_high(diverging)[0].message
    wobbly = record(logs=[{"loss": v} for v in [1.0, 0.5, 0.8, 0.4, 0.6, 0.3, 0.5, 0.3, 0.45, 0.3]])
    assert "oscillates" in det.lr_too_high(wobbly)[0].message
    jump = record(logs=[{"loss": v} for v in [500.0, 2.0, 1.0]])
    assert "jumped" in det.lr_too_high(jump)[0].message
    memorised = record(logs=[{"loss": v} for v in [1.0, 0.01] + [1e-5, 2e-5] * 10])
    assert det.lr_too_high(memorised) == []


def test_lr_too_high_fix_names_a_concrete_rate():
    sgd = record(optimizer="SGD", learning_rates=[10.0], logs=[{"loss": math.nan}])
    assert "learning_rate=0.01" in det.lr_too_high(sgd)[0].fix
    adam = record(learning_rates=[0.005], logs=[{"loss": math.nan}])
    assert "learning_rate=0.0005" in det.lr_too_high(adam)[0].fix


def test_lr_too_low():
    flat = dict(
        probes=[Probe(-1, loss=1.0), Probe(19, loss=0.999)],
        learning_rates=[1e-7],
        update_ratios={0: {"dense": 3e-7}},
    )
    (finding,) = det.lr_too_low(record(**flat))
    assert "learning_rate=0.001" in finding.fix
    assert finding.evidence["relative_change"] == pytest.approx(0.001)
    assert det.lr_too_low(record(**{**flat, "update_ratios": {0: {"dense": 1e-3}}})) == []
    assert (
        det.lr_too_low(record(**{**flat, "update_ratios": {0: {"dense": 0.0}}})) == []
    )  # no gradient at all


def test_overfitting_names_the_best_epoch():
    val = [1.0, 0.6, 0.4, 0.35, 0.36, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]
    train = [1.0 / (1 + e) for e in range(len(val))]
    rec = record(logs=[{"loss": t, "val_loss": v} for t, v in zip(train, val)], epochs=list(range(len(val))))
    (finding,) = det.overfitting(rec)
    assert finding.evidence["best_epoch"] == 4 and "EarlyStopping" in finding.fix


def test_underfitting_needs_a_small_model_and_a_high_flat_loss():
    flat = [{"loss": 0.9} for _ in range(10)]
    small = record(
        layers=[LayerInfo("out", "Dense", "linear", 1, True)],
        logs=flat,
        n_params=5,
        probes=[Probe(-1, loss=1.0), Probe(9, loss=0.9)],
    )
    assert codes(small) == {"underfitting"}
    big = record(logs=flat, n_params=5000, probes=[Probe(-1, loss=1.0), Probe(9, loss=0.9)])
    assert codes(big) == set()


def test_stalled_warns_when_both_curves_are_flat_and_informs_when_only_validation_is():
    # Both flat, the training loss bouncing 8% from epoch to epoch: an optimiser that cannot settle.
    flat = [{"loss": 0.5 + 0.04 * (e % 2), "val_loss": 0.6 + 0.01 * (e % 3)} for e in range(30)]
    (finding,) = det.stalled(record(logs=flat))
    assert finding.severity == "warning" and finding.evidence["window"] == 10
    # Both flat and smooth (1% moves): converged, an 'info' (issue 18).
    smooth = [{"loss": 0.5 + 0.005 * (e % 2), "val_loss": 0.6 + 0.01 * (e % 3)} for e in range(30)]
    assert det.stalled(record(logs=smooth))[0].severity == "info"
    learning = [{"loss": 1.0 / (1 + e), "val_loss": 0.6} for e in range(30)]
    assert det.stalled(record(logs=learning))[0].severity == "info"
    assert det.stalled(record(logs=flat[:15])) == []  # too short to tell


def test_stalled_stays_silent_when_another_finding_explains_it():
    flat = [{"loss": 0.5, "val_loss": 0.6} for _ in range(30)]
    rec = record(logs=flat, x_std=[1, 1, 1, 1000.0])
    assert codes(rec) == {"unscaled_inputs"}


def test_a_failing_detector_becomes_info_and_others_still_run():
    def broken(rec):
        raise RuntimeError("boom")

    def custom(rec):
        return [Finding("my_check", "warning", None, {"n": 1}, "custom", "fix it")]

    found = run_detectors(record(), [broken, custom])
    assert [(f.code, f.severity) for f in found] == [("my_check", "warning"), ("detector_failed", "info")]
    assert "boom" in found[1].evidence["error"]


def test_detector_registration():
    assert det.stalled in diagnostics.DETECTORS and det.DETECTORS[-1] is det.stalled
    names = [fn.__name__ for fn in diagnostics.DETECTORS]
    assert set(names) == set(diagnostics.CODES) - {"detector_failed"}


# ----------------------------------------------------------------------------------------------
# the monitor inside fit


def test_fit_records_a_diagnosis_and_the_monitor_has_no_batch_hooks():
    x, y = regression_data()
    model = small_model()
    history = model.fit(x, y, epochs=3, verbose=0, validation_split=0.2)
    assert isinstance(history.diagnosis, list)
    monitor = diagnostics.monitor_for_fit(model, "auto", None)
    assert not overrides(monitor, "on_train_batch_end") and not overrides(monitor, "on_train_batch_begin")


def test_diagnostics_do_not_change_the_training_result():
    x, y = regression_data()
    results = []
    for mode in ("off", "auto", "full"):
        set_random_seed(3)
        model = small_model()
        model.fit(x, y, epochs=4, batch_size=16, verbose=0, validation_split=0.2, diagnostics=mode)
        results.append(model.get_weights())
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_full_mode_probes_every_epoch(monkeypatch):
    x, y = regression_data()
    seen = []
    original = diagnostics.TrainingMonitor.findings

    def spy(self):
        seen.append(self.record)
        return original(self)

    monkeypatch.setattr(diagnostics.TrainingMonitor, "findings", spy)
    small_model().fit(x, y, epochs=6, verbose=0, diagnostics="full")
    small_model().fit(x, y, epochs=6, verbose=0)
    assert [p.epoch for p in seen[0].probes] == [-1, 0, 1, 2, 3, 4, 5]
    assert [p.epoch for p in seen[1].probes] == [-1, 5]  # auto: the first epoch gets update ratios only
    assert sorted(seen[1].update_ratios) == [0, 5]


def test_probes_follow_initial_epoch(monkeypatch):
    x, y = regression_data()
    seen = []
    original = diagnostics.TrainingMonitor.findings

    def spy(self):
        seen.append(self.record)
        return original(self)

    monkeypatch.setattr(diagnostics.TrainingMonitor, "findings", spy)
    small_model().fit(x, y, epochs=9, initial_epoch=5, verbose=0)
    assert [p.epoch for p in seen[0].probes] == [-1, 8]
    assert sorted(seen[0].update_ratios) == [5, 8] and seen[0].epochs_planned == 4


def test_verbose_fit_prints_the_doctor_only_for_a_sick_run(capsys):
    x, y = regression_data()
    small_model().fit(x, y, epochs=2, verbose=2)
    assert "Training doctor" not in capsys.readouterr().out
    sick = small_model(out_activation="sigmoid")  # targets run from about -4 to 4
    sick.fit(x, y, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "Training doctor: 1 problem found" in out and "loss_output_mismatch" in out and "Fix:" in out


def test_a_crashing_probe_never_stops_fit(monkeypatch):
    from trainwell.diagnostics import monitor as monitor_module

    def explode(*args, **kwargs):
        raise RuntimeError("probe failed")

    monkeypatch.setattr(monitor_module, "take_probe", explode)
    x, y = regression_data()
    history = small_model().fit(x, y, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    failures = [f for f in history.diagnosis if f.code == "detector_failed"]
    assert failures and all(f.severity == "info" for f in failures)
    assert "probe failed" in failures[0].evidence["error"]


def test_diagnostics_argument_is_checked():
    x, y = regression_data()
    with pytest.raises(ConfigError, match="diagnostics"):
        small_model().fit(x, y, epochs=1, verbose=0, diagnostics="sometimes")


# ----------------------------------------------------------------------------------------------
# model.diagnose


def test_diagnose_finds_a_mismatch_and_restores_everything(capsys):
    x, y = regression_data()
    labels = (y[:, 0] > 0).astype(int)
    onehot = np.eye(2, dtype=np.float32)[labels]
    model = small_model(out=2, out_activation="softmax", loss="binary_crossentropy")
    model.fit(x, onehot, epochs=1, verbose=0, diagnostics="off")
    weights, history = model.get_weights(), model.history
    state = {k: v.clone() for k, v in model.optimizer.torch_optimizer.state_dict()["state"][0].items()}
    iterations, epochs = model.optimizer.iterations, model.epochs_trained
    found = model.diagnose(x, onehot)
    assert "loss_output_mismatch" in {f.code for f in found}
    assert "Training doctor" in capsys.readouterr().out
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    after = model.optimizer.torch_optimizer.state_dict()["state"][0]
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert (model.optimizer.iterations, model.epochs_trained, model.history) == (iterations, epochs, history)


def test_diagnose_on_a_fresh_model_hands_back_an_unbuilt_optimizer():
    x, y = regression_data()
    model = Sequential([Dense(8, activation="relu"), Dense(1)])  # no input shape: built by the first fit
    model.compile(optimizer="adam", loss="mse")
    found = model.diagnose(x, y, epochs=2, verbose=0)
    assert not [f for f in found if f.is_problem]
    assert not model.optimizer.built and model.optimizer.iterations == 0 and model.epochs_trained == 0


# ----------------------------------------------------------------------------------------------
# the learning-rate finder


def test_suggest_hand_worked():
    # Smoothed losses fall fastest between 1e-2 and 1e-1 (slope -0.35 per decade at 1e-2 by central
    # differences), are lowest at 1e-1, then blow up.
    assert suggest([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.9, 0.3, 5.0]) == (0.01, 0.1, "steepest")
    assert suggest([1e-3, 1e-2, 1e-1], [0.5, 0.9, 2.0]) == (1e-4, 1e-3, "min_loss/10")


def test_find_learning_rate_restores_the_model_and_suggests_a_sensible_rate(tmp_path):
    set_random_seed(0)
    x, y = regression_data(n=512)
    model = small_model(units=16, optimizer=SGD(0.01))
    model.fit(x[:64], y[:64], epochs=1, verbose=0, diagnostics="off")
    weights = model.get_weights()
    momentum_state = dict(model.optimizer.torch_optimizer.state_dict()["state"])
    iterations, lr = model.optimizer.iterations, model.optimizer.learning_rate
    result = model.find_learning_rate(x, y, min_lr=1e-5, max_lr=10.0, steps=60)
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.torch_optimizer.state_dict()["state"].keys() == momentum_state.keys()
    assert (model.optimizer.iterations, model.optimizer.learning_rate) == (iterations, lr)
    rates = np.array(result.learning_rates)
    assert rates[0] == pytest.approx(1e-5) and np.allclose(rates[1:] / rates[:-1], rates[1] / rates[0])
    assert len(result.losses) == len(result.raw_losses) == len(rates) <= 60
    assert len(rates) < 60  # SGD at rates near 10 blows up and the test stops early
    assert 1e-3 <= result.suggestion <= 1.0
    fig = result.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 0 and fig.axes[0].get_xscale() == "log"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"min_lr": 0}, "min_lr"),
        ({"max_lr": -1.0}, "max_lr"),
        ({"min_lr": 1.0, "max_lr": 0.1}, "below"),
        ({"steps": 0}, "steps"),
    ],
)
def test_find_learning_rate_checks_its_arguments(kwargs, fragment):
    x, y = regression_data()
    with pytest.raises(ConfigError, match=fragment):
        small_model(optimizer=Adam()).find_learning_rate(x, y, **kwargs)


def test_stalled_info_is_silent_when_early_stopping_ended_the_run():
    # Regression: the demo's Titanic run advised adding EarlyStopping after EarlyStopping had stopped it.
    from trainwell.diagnostics.record import RunRecord
    from trainwell.diagnostics.training_checks import stalled

    val = [1.0 - 0.05 * i for i in range(10)] + [0.5] * 20
    train = [1.0 - 0.02 * i for i in range(30)]
    record = RunRecord(logs=[{"loss": t, "val_loss": v} for t, v in zip(train, val)],
                       learning_rates=[0.001] * 30)
    assert [f.severity for f in stalled(record)] == ["info"]
    record.stopped_early = True
    assert stalled(record) == []


# ----------------------------------------------------------------------------------------------
# issue 18: regression tests for the defects (each failed before its fix)


def test_unscaled_target_is_found_for_a_target_in_the_thousands():
    rec = record(y_mean=4200.0, y_std=800.0, y_min=2700.0, y_max=6300.0, probes=[Probe(-1, loss=1.8e7)])
    found = [f for f in run_detectors(rec) if f.code == "unscaled_target"]
    assert found and found[0].repairs == ("standardize_target",)
    assert "mean 4200" in found[0].message and "Standardise the target" in found[0].fix
    assert "unscaled_target" not in codes(record(y_mean=9.0, y_std=5.1))  # wages: fine as it is


def test_regularizer_penalty_is_not_a_first_epoch_jump():
    # Before: the probe loss before training (no penalty) was compared with epoch 1's loss (with it).
    logs = [{"loss": 18.0 - 0.5 * e} for e in range(10)]
    rec = record(logs=logs, epochs=list(range(10)), probes=[Probe(-1, loss=2.6), Probe(9, loss=1.0)],
                 penalty_start=16.0)
    assert "lr_too_high" not in codes(rec)
    assert "lr_too_high" in codes(record(logs=logs, epochs=list(range(10)),
                                         probes=[Probe(-1, loss=2.6), Probe(9, loss=1.0)]))


def _oversized(at: int, ratios: dict) -> Probe:
    return Probe(at, loss=1.0, grad_norms=dict(ratios), weight_norms=dict.fromkeys(ratios, 1.0))


def test_exploding_gradients_says_every_layer_when_every_layer_explodes():
    rec = record(probes=[_oversized(-1, {"dense": 5e4, "dense_1": 8e4}), Probe(19, loss=1.0)])
    [f] = [f for f in run_detectors(rec) if f.code == "exploding_gradients"]
    assert "every layer" in f.message and f.layer is None and f.evidence["at_start"] is True
    rec = record(probes=[Probe(-1, loss=1.0), _oversized(3, {"dense": 5e4, "dense_1": 2.0})])
    [f] = [f for f in run_detectors(rec) if f.code == "exploding_gradients"]
    assert "dense is" in f.message and f.layer == "dense" and f.evidence["at_start"] is False


def test_explosion_from_the_initialisation_is_the_root_of_a_nan_loss():
    logs = [{"loss": float("nan")}] * 3
    rec = record(logs=logs, epochs=[0, 1, 2], learning_rates=[0.01] * 3, optimizer="SGD",
                 layers=[LayerInfo("dense", "Dense", "relu", 8, initializer="RandomNormal"),
                         LayerInfo("dense_1", "Dense", "linear", 1, True)],
                 probes=[_oversized(-1, {"dense": 5e4, "dense_1": 8e4}), Probe(2, loss=math.nan)])
    found = [f for f in run_detectors(rec) if f.is_problem]
    assert [f.code for f in found] == ["exploding_gradients", "lr_too_high"]
    assert found[0].severity == "error" and found[1].caused_by == "exploding_gradients"
    assert found[0].fix.startswith("Use the default initializers (layers dense use another)")
    assert found[0].repairs == ("default_initializers", "clip_gradients")


def test_saturation_in_a_shallow_net_with_a_healthy_gradient_is_not_vanishing():
    layers = [LayerInfo("dense", "Dense", "tanh", 8), LayerInfo("dense_1", "Dense", "linear", 1, True)]
    shallow = [Probe(-1, loss=1.0, saturated={"dense": 0.7}, signal=[("dense", 0.9), ("dense_1", 1.0)]),
               Probe(19, loss=0.05, saturated={"dense": 0.7}, signal=[("dense", 0.8), ("dense_1", 1.0)])]
    assert "vanishing_gradients" not in codes(record(layers=layers, probes=shallow))
    shrinking = [
        Probe(p.epoch, loss=p.loss, saturated=p.saturated, signal=[("dense", 0.01), ("dense_1", 1.0)])
        for p in shallow
    ]
    assert "vanishing_gradients" in codes(record(layers=layers, probes=shrinking))


def test_units_dead_from_the_start_get_no_learning_rate_advice():
    dead = {"dense": [True] * 8}
    rec = record(probes=[Probe(-1, loss=1.0, dead=dead), Probe(19, loss=0.9, dead=dead)])
    [f] = [f for f in run_detectors(rec) if f.code == "dead_units"]
    assert f.evidence["died_during_training"] == 0 and "learning rate" not in f.fix.lower()
    assert f.repairs == ("default_initializers",)
    died = record(probes=[Probe(-1, loss=1.0, dead={"dense": [False] * 8}), Probe(19, loss=0.9, dead=dead)])
    [f] = [f for f in run_detectors(died) if f.code == "dead_units"]
    assert f.fix.startswith("Lower the learning rate") and f.repairs[0] == "lower_learning_rate"


def test_raw_pixels_get_the_divide_by_255_fix_not_adapt():
    pixels = record(n_features=784, x_mean=[0.0] * 700 + [120.0] * 84, x_std=[0.0] * 700 + [100.0] * 84,
                    x_min=0.0, x_max=255.0, x_integer=True)
    [f] = [f for f in run_detectors(pixels) if f.code == "unscaled_inputs"]
    assert "255" in f.fix and "Not Normalization().adapt" in f.fix and f.evidence["pixels"] is True
    tabular = record(x_mean=[0.0, 0.0, 0.0, 210.0], x_std=[1.0, 1.0, 1.0, 300.0], x_min=-3.0, x_max=512.0)
    [f] = [f for f in run_detectors(tabular) if f.code == "unscaled_inputs"]
    assert "norm.adapt(X_train)" in f.fix


def _overfit_logs(val_gap: float):
    train = [1.0 / (1 + e) for e in range(30)]
    val = [0.5 - 0.02 * e if e < 10 else 0.3 + 0.02 * (e - 10) for e in range(30)]
    return [{"loss": t, "val_loss": v * val_gap if e >= 10 else v}
            for e, (t, v) in enumerate(zip(train, val))]


def test_overfitting_needs_a_gap_and_no_restored_weights():
    epochs = list(range(30))
    sick = record(logs=_overfit_logs(1.0), epochs=epochs, probes=[Probe(-1, loss=1.0), Probe(29, loss=0.03)])
    assert "overfitting" in codes(sick)
    # The same rise, but the training loss is no lower than the validation loss: no gap.
    no_gap = [{"loss": log["val_loss"] * 1.05, "val_loss": log["val_loss"]} for log in _overfit_logs(1.0)]
    no_gap[-12:] = [{"loss": 0.9 * log["loss"], "val_loss": log["val_loss"]} for log in no_gap[-12:]]
    for log in no_gap[-12:]:
        log["loss"] = log["val_loss"] * 0.98
    assert "overfitting" not in codes(record(logs=no_gap, epochs=epochs))
    restored = record(logs=_overfit_logs(1.0), epochs=epochs, restored_epoch=9, stopped_early=True)
    assert "overfitting" not in codes(restored)


def test_a_converged_run_is_not_a_stalled_optimiser():
    flat = [{"loss": 0.5 + 0.0005 * ((-1) ** e), "val_loss": 0.55 + 0.0005 * ((-1) ** e)} for e in range(60)]
    flat[:5] = [{"loss": 2.0 - 0.3 * e, "val_loss": 2.0 - 0.29 * e} for e in range(5)]
    found = run_detectors(record(logs=flat, epochs=list(range(60))))
    [stall] = [f for f in found if f.code == "stalled"]
    assert stall.severity == "info" and stall.repairs == ("early_stopping",)
    assert "ReduceLROnPlateau" not in stall.fix
    bouncing = [{"loss": 0.5 * (1.1 if e % 2 else 1.0), "val_loss": 0.55 * (1.1 if e % 2 else 1.0)}
                for e in range(60)]
    [stall] = [f for f in run_detectors(record(logs=bouncing, epochs=list(range(60)))) if f.code == "stalled"]
    assert stall.severity == "warning" and stall.repairs[0] == "reduce_lr_on_plateau"


def test_a_noisy_plateau_is_stalled_though_its_window_means_differ_by_chance():
    # The 'plateau_at_high_rate' scenario's shape: the validation loss bounces by ~25% from epoch to
    # epoch around a flat level, so its last window's mean sits ~12% below the one before by chance;
    # the training loss bounces too while its mean still creeps down. Once a known miss.
    rng = np.random.default_rng(0)
    val = list(0.06 * (1 + 0.3 * rng.standard_normal(60)).clip(0.3))
    val[40:] = [v * 0.88 for v in val[40:]]
    train = [0.04 * (1 - 0.004 * e) * (1 + 0.3 * abs(rng.standard_normal())) for e in range(60)]
    rec = record(logs=[{"loss": t, "val_loss": v} for t, v in zip(train, val)], epochs=list(range(60)))
    [stall] = [f for f in run_detectors(rec) if f.code == "stalled"]
    assert stall.severity == "warning" and stall.repairs[0] == "reduce_lr_on_plateau"
    assert "bounces" in stall.message
    # A noisy run whose last epoch sets a new best is still progressing (the repaired 10-layer tanh
    # wages net once got a 'stalled' warning at its best epoch).
    rec = record(logs=[{"loss": t, "val_loss": v} for t, v in zip(train, val[:-1] + [0.5 * min(val)])],
                 epochs=list(range(60)))
    assert "stalled" not in {f.code for f in run_detectors(rec)}
    # The same 12% fall on a smooth curve is progress.
    smooth = [0.06] * 40 + [0.06 * 0.88] * 20
    rec = record(logs=[{"loss": 0.04, "val_loss": v} for v in smooth], epochs=list(range(60)))
    assert "stalled" not in {f.code for f in run_detectors(rec)}


def test_noisy_labels_are_not_underfitting():
    # A logistic regression on Titanic ends near 0.69 of the constant loss: the rest is label noise.
    logs = [{"loss": 0.46, "val_loss": 0.45}] * 30
    small = [LayerInfo("dense", "Dense", "sigmoid", 1, True)]
    rec = record(layers=small, loss_kind="binary", loss_name="binary_crossentropy", baseline_loss=0.669,
                 y_min=0.0, y_max=1.0, y_distinct=2, y_integer=True,
                 logs=logs, epochs=list(range(30)), probes=[Probe(-1, loss=0.7), Probe(29, loss=0.459)])
    assert "underfitting" not in codes(rec)
    rec.loss_kind, rec.loss_name = "regression", "mean_squared_error"
    assert "underfitting" in codes(rec)


def test_sparse_loss_with_one_sigmoid_unit_names_the_loss():
    from trainwell._errors import DataError

    x, _ = regression_data()
    model = small_model(out=1, out_activation="sigmoid", loss="sparse_categorical_crossentropy")
    with pytest.raises(DataError, match=r"sparse_categorical_crossentropy.*binary_crossentropy"):
        model.fit(x, (x[:, 0] > 0).astype(np.int64), epochs=1, verbose=0)


def test_every_repair_a_finding_names_exists():
    from trainwell.diagnostics import REPAIRS

    for fn in det.DETECTORS:
        assert fn.__module__.startswith("trainwell.diagnostics")
    for finding in run_detectors(record(y_mean=4200.0, y_std=800.0, x_mean=[500.0] * 4)):
        assert finding.repairs and set(finding.repairs) <= set(REPAIRS), finding


def test_monitor_records_the_regularizers_penalty_before_training():
    from trainwell.regularizers import l2

    x, y = regression_data()
    set_random_seed(0)
    hidden = Dense(64, activation="relu", kernel_regularizer=l2(0.05))
    model = Sequential([Input(shape=(4,)), hidden, Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, y, epochs=3, verbose=0)  # warnings are errors here: none may leak
    record = history.diagnosis.record
    assert record.penalty_start > 0.1  # 0.05 * sum(W²) of a fresh 4x64 glorot kernel
    assert not [f for f in history.diagnosis if f.code in ("detector_failed", "lr_too_high")]


# ----------------------------------------------------------------------------------------------
# convolutions: the probes take gradients at every Dense and convolution layer (issue 18, point 5)


def small_digits(n=1000):
    from trainwell.datasets import load_mnist

    x, y = load_mnist()
    return (x[:n].reshape(-1, 28, 28, 1) / np.float32(255.0)).astype("float32"), y[:n]


def convnet(activation="relu", depth=2, bias=0.0, seed=0):
    from trainwell.initializers import Constant
    from trainwell.layers import Conv2D, Flatten, MaxPooling2D

    set_random_seed(seed)
    layers = [Input(shape=(28, 28, 1))]
    for i in range(depth):
        layers.append(Conv2D(8, 3, padding="same", activation=activation, bias_initializer=Constant(bias),
                             name=f"conv{i}"))
        if i < 2:
            layers.append(MaxPooling2D(2))
    return Sequential(layers + [Flatten(), Dense(10, activation="softmax", name="out")])


def fit_convnet(model, optimizer, epochs=4):
    x, y = small_digits()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model.fit(x, y, epochs=epochs, batch_size=64, validation_split=0.2, verbose=0)


def test_a_healthy_convnet_gets_no_warning_and_its_convolutions_are_probed():
    history = fit_convnet(convnet(), Adam(1e-3))
    assert not [f for f in history.diagnosis if f.is_problem], [str(f) for f in history.diagnosis]
    assert history.history["val_accuracy"][-1] > 0.6
    signal = dict(history.diagnosis.record.last_probe.signal)
    assert list(signal) == ["conv0", "conv1", "out"] and all(v > 0 for v in signal.values())


def test_vanishing_gradients_through_a_deep_sigmoid_convnet_are_found_and_repaired():
    model = convnet("sigmoid", depth=8)
    history = fit_convnet(model, SGD(0.05))
    [finding] = [f for f in history.diagnosis if f.code == "vanishing_gradients"]
    assert finding.evidence["first_to_last_ratio"] < 1e-4 and "first weight layer" in finding.message
    assert list(finding.evidence["signal_rms_by_layer"])[:2] == ["conv0", "conv1"]
    result = model.repair(*small_digits(), epochs=4, batch_size=64, validation_split=0.2, verbose=0)
    [row] = [r for r in result.rows if r["finding"] == "vanishing_gradients"]
    assert row["gone"] and row["val_loss_after"] < 0.5 * row["val_loss_before"]


def test_dead_convolution_channels_are_named_as_channels():
    history = fit_convnet(convnet(bias=-3.0, depth=3), Adam(1e-3))
    dead = [f for f in history.diagnosis if f.code == "dead_units"]
    assert {f.layer for f in dead} == {"conv0", "conv1", "conv2"}
    assert all("ReLU channels" in f.message and f.evidence["units"] == 8 for f in dead)
