"""Tests for trainwell.optimizers and its schedules: Keras formulas written in numpy are the reference."""

import json
import math

import numpy as np
import pytest
import safetensors.torch
import torch

from trainwell import optimizers
from trainwell._errors import ConfigError, ConfigTypeError, ModelFileError
from trainwell.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop, schedules

# --------------------------------------------------------------------------------------------------
# Keras's update rules in numpy (float64). Each takes the slot dict `s`, the weights, the gradient,
# the learning rate of this step and the 1-based step number t, and returns the new weights.
# --------------------------------------------------------------------------------------------------


def keras_sgd(s, w, g, lr, t, momentum=0.0, nesterov=False):
    if momentum == 0:
        return w - lr * g
    m = s["m"] = momentum * s.get("m", 0.0) - lr * g
    return w + (momentum * m - lr * g if nesterov else m)


def keras_adam(s, w, g, lr, t, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False):
    m = s["m"] = s.get("m", 0.0) + (g - s.get("m", 0.0)) * (1 - beta_1)
    v = s["v"] = s.get("v", 0.0) + (g * g - s.get("v", 0.0)) * (1 - beta_2)
    if amsgrad:
        v = s["v_hat"] = np.maximum(s.get("v_hat", 0.0), v)
    alpha = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    return w - alpha * m / (np.sqrt(v) + epsilon)


def keras_rmsprop(s, w, g, lr, t, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    v = s["v"] = rho * s.get("v", 0.0) + (1 - rho) * g * g
    if centered:
        a = s["a"] = rho * s.get("a", 0.0) + (1 - rho) * g
        denominator = v - a * a + epsilon
    else:
        denominator = v + epsilon
    increment = lr * g / np.sqrt(denominator)
    if momentum > 0:
        increment = s["m"] = momentum * s.get("m", 0.0) + increment
    return w - increment


def keras_adagrad(s, w, g, lr, t, initial_accumulator_value=0.1, epsilon=1e-7):
    acc = s["acc"] = s.get("acc", initial_accumulator_value) + g * g
    return w - lr * g / np.sqrt(acc + epsilon)


def keras_run(update, w0, grads, lr, weight_decay=None, **hyper):
    """The Keras step loop: lr from the schedule at `iterations`, decoupled decay, then the update."""
    w, slots, trajectory = np.array(w0, dtype=np.float64), {}, []
    for iterations, g in enumerate(grads):
        lr_t = lr(iterations) if callable(lr) else lr
        if weight_decay:
            w = w - w * weight_decay * lr_t
        w = update(slots, w, g, lr_t, iterations + 1, **hyper)
        trajectory.append(w)
    return np.array(trajectory)


def trainwell_run(opt, w0, grads, dtype=torch.float64):
    """Run `opt` on one parameter starting at `w0`, feeding the scripted gradients."""
    w = torch.nn.Parameter(torch.tensor(w0, dtype=dtype))
    opt.build([w])
    trajectory = []
    for g in grads:
        opt.zero_grad()
        w.grad = torch.tensor(g, dtype=dtype)
        opt.step()
        trajectory.append(w.detach().numpy().copy())
    return np.array(trajectory)


def scripted_gradients(steps=8, seed=0):
    """Seeded weights and gradients whose scales span 1 to 1e-6, so epsilon placement shows."""
    rng = np.random.default_rng(seed)
    scales = np.array([1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    return rng.normal(size=scales.size), rng.normal(size=(steps, scales.size)) * scales


# --------------------------------------------------------------------------------------------------
# One step with round numbers (Keras test_single_step), in float64 so hand values are exact.
# --------------------------------------------------------------------------------------------------


def one_step(opt, w, g, steps=1):
    return trainwell_run(opt, w, [g] * steps)[-1]


def test_sgd_single_step():
    # w = [1, 2] - 0.5 * [0.2, -0.4] = [0.9, 2.2]
    np.testing.assert_allclose(
        one_step(SGD(learning_rate=0.5), [1.0, 2.0], [0.2, -0.4]), [0.9, 2.2], rtol=1e-12
    )


def test_sgd_momentum_two_steps():
    # lr 0.1, momentum 0.9, g = 1: m1 = -0.1, w1 = 0.9; m2 = 0.9 * -0.1 - 0.1 = -0.19, w2 = 0.71
    assert one_step(SGD(0.1, momentum=0.9), 1.0, 1.0, steps=2) == pytest.approx(0.71, rel=1e-12)
    # Nesterov: w1 = 1 + 0.9 * -0.1 - 0.1 = 0.81; w2 = 0.81 + 0.9 * -0.19 - 0.1 = 0.539
    assert one_step(SGD(0.1, momentum=0.9, nesterov=True), 1.0, 1.0, steps=2) == pytest.approx(
        0.539, rel=1e-12
    )


def test_adam_single_step():
    # m = 0.1 * 2 = 0.2, v = 0.001 * 4 = 0.004, sqrt(v) = 0.0632455532
    # alpha = 0.1 * sqrt(1 - 0.999) / (1 - 0.9) = 0.0316227766
    # w = 1 - 0.0316227766 * 0.2 / (0.0632455532 + 1e-7) = 0.9000001581 (not 0.9: that is eps)
    assert one_step(Adam(learning_rate=0.1), 1.0, 2.0) == pytest.approx(0.900000158113633, rel=1e-12)


def test_adamw_single_step():
    # decay first: w = 1 - 0.1 * 0.004 * 1 = 0.9996; then the Adam step above: 0.9996 - 0.0999998419
    assert one_step(AdamW(learning_rate=0.1), 1.0, 2.0) == pytest.approx(0.899600158113633, rel=1e-12)


def test_rmsprop_single_step_matches_keras_docstring():
    # Keras's example: w = 10, g = 10, lr = 0.1: v = 0.1 * 100 = 10
    # w = 10 - 0.1 * 10 / sqrt(10 + 1e-7) = 9.683772 (eps inside the square root)
    assert one_step(RMSprop(learning_rate=0.1), 10.0, 10.0) == pytest.approx(9.683772235564302, rel=1e-12)


def test_adagrad_single_step():
    # acc = 0.1 + 1 = 1.1; w = 1 - 0.1 * 1 / sqrt(1.1 + 1e-7) = 0.9046537454
    assert one_step(Adagrad(learning_rate=0.1), 1.0, 1.0) == pytest.approx(0.9046537454093613, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# Several steps against the numpy Keras formulas, including lr = 1.0 and tiny gradients.
# --------------------------------------------------------------------------------------------------

PARITY_CASES = [
    ("sgd", lambda: SGD(), keras_sgd, {"lr": 0.01}),
    ("sgd-lr1", lambda: SGD(1.0), keras_sgd, {"lr": 1.0}),
    ("sgd-momentum", lambda: SGD(0.1, momentum=0.9), keras_sgd, {"lr": 0.1, "momentum": 0.9}),
    (
        "sgd-nesterov",
        lambda: SGD(1.0, momentum=0.5, nesterov=True),
        keras_sgd,
        {"lr": 1.0, "momentum": 0.5, "nesterov": True},
    ),
    ("adam", lambda: Adam(), keras_adam, {"lr": 0.001}),
    ("adam-lr1", lambda: Adam(1.0), keras_adam, {"lr": 1.0}),
    ("adam-amsgrad", lambda: Adam(0.1, amsgrad=True), keras_adam, {"lr": 0.1, "amsgrad": True}),
    (
        "adam-betas",
        lambda: Adam(0.1, beta_1=0.5, beta_2=0.9),
        keras_adam,
        {"lr": 0.1, "beta_1": 0.5, "beta_2": 0.9},
    ),
    ("adamw", lambda: AdamW(), keras_adam, {"lr": 0.001, "weight_decay": 0.004}),
    ("adamw-lr1", lambda: AdamW(1.0, weight_decay=0.1), keras_adam, {"lr": 1.0, "weight_decay": 0.1}),
    ("rmsprop", lambda: RMSprop(), keras_rmsprop, {"lr": 0.001}),
    ("rmsprop-lr1", lambda: RMSprop(1.0), keras_rmsprop, {"lr": 1.0}),
    (
        "rmsprop-centered-momentum",
        lambda: RMSprop(0.1, momentum=0.9, centered=True),
        keras_rmsprop,
        {"lr": 0.1, "momentum": 0.9, "centered": True},
    ),
    ("adagrad", lambda: Adagrad(), keras_adagrad, {"lr": 0.001}),
    ("adagrad-lr1", lambda: Adagrad(1.0), keras_adagrad, {"lr": 1.0}),
    (
        "adagrad-zero-accumulator",
        lambda: Adagrad(0.1, initial_accumulator_value=0.0),
        keras_adagrad,
        {"lr": 0.1, "initial_accumulator_value": 0.0},
    ),
    # Keras's weight_decay is decoupled on every optimizer, not torch's L2-in-the-gradient.
    (
        "sgd-wd",
        lambda: SGD(0.1, momentum=0.9, weight_decay=0.1),
        keras_sgd,
        {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1},
    ),
    ("adam-wd", lambda: Adam(0.1, weight_decay=0.1), keras_adam, {"lr": 0.1, "weight_decay": 0.1}),
    ("rmsprop-wd", lambda: RMSprop(0.1, weight_decay=0.1), keras_rmsprop, {"lr": 0.1, "weight_decay": 0.1}),
    ("adagrad-wd", lambda: Adagrad(0.1, weight_decay=0.1), keras_adagrad, {"lr": 0.1, "weight_decay": 0.1}),
]


@pytest.mark.parametrize(
    "make, update, hyper", [c[1:] for c in PARITY_CASES], ids=[c[0] for c in PARITY_CASES]
)
def test_steps_match_keras_formula(make, update, hyper):
    w0, grads = scripted_gradients()
    expected = keras_run(update, w0, grads, **hyper)
    actual = trainwell_run(make(), w0, grads)
    # Compare displacements from w0: an error in a tiny update would hide inside the weights.
    np.testing.assert_allclose(actual - w0, expected - w0, rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize(
    "torch_optimizer, update, hyper",
    [
        (lambda p: torch.optim.Adam(p, lr=0.1, eps=1e-7), keras_adam, {"lr": 0.1}),
        (lambda p: torch.optim.RMSprop(p, lr=0.1, alpha=0.9, eps=1e-7), keras_rmsprop, {"lr": 0.1}),
        (
            lambda p: torch.optim.Adagrad(p, lr=0.1, initial_accumulator_value=0.0, eps=1e-7),
            keras_adagrad,
            {"lr": 0.1, "initial_accumulator_value": 0.0},
        ),
    ],
    ids=["adam", "rmsprop", "adagrad"],
)
def test_plain_torch_differs_so_the_mappings_matter(torch_optimizer, update, hyper):
    # Guard on the parity test's sensitivity: unmapped torch (same eps) fails it on small gradients.
    w0, grads = scripted_gradients()
    w = torch.nn.Parameter(torch.tensor(w0))
    opt = torch_optimizer([w])
    for g in grads:
        w.grad = torch.tensor(g)
        opt.step()
    expected = keras_run(update, w0, grads, **hyper)[-1]
    assert not np.allclose(w.detach().numpy() - w0, expected - w0, rtol=1e-3, atol=0)


def test_float32_parameters_follow_keras_formula():
    w0, grads = scripted_gradients(seed=3)
    actual = trainwell_run(Adam(0.01), w0, grads, dtype=torch.float32)
    np.testing.assert_allclose(actual, keras_run(keras_adam, w0, grads, lr=0.01), rtol=1e-6, atol=1e-7)


def test_decoupled_weight_decay_differs_from_l2():
    # Adam(lr=0.1, weight_decay=0.5), w = 2, g = 4. Keras: w = 2 - 0.1 * 0.5 * 2 = 1.9, then an Adam
    # step of about -lr: 1.9 - 0.0316227766 * 0.4 / (sqrt(0.016) + 1e-7) = 1.80000008.
    # torch's L2 would step on g + 0.5 * 2 = 5 from w = 2 and land near 1.9.
    assert one_step(Adam(0.1, weight_decay=0.5), 2.0, 4.0) == pytest.approx(1.8000000790568789, rel=1e-12)


def test_weight_decay_skips_parameters_without_gradient():
    a, b = torch.nn.Parameter(torch.tensor([2.0])), torch.nn.Parameter(torch.tensor([2.0]))
    opt = SGD(0.1, weight_decay=0.5)
    opt.build([a, b])
    a.grad = torch.tensor([0.0])
    opt.step()
    assert a.item() == pytest.approx(1.9) and b.item() == 2.0


# --------------------------------------------------------------------------------------------------
# Gradient clipping (SGD with lr 1 from w = 0, so the weights are minus the clipped gradients).
# --------------------------------------------------------------------------------------------------


def clipped(grads, **clip):
    params = [torch.nn.Parameter(torch.zeros(len(g), dtype=torch.float64)) for g in grads]
    opt = SGD(1.0, **clip)
    opt.build(params)
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()
    return [(-p.detach()).numpy() for p in params]


def test_clipvalue():
    (result,) = clipped([[2.0, -3.0, 0.1]], clipvalue=0.5)
    np.testing.assert_allclose(result, [0.5, -0.5, 0.1])


def test_clipnorm_is_per_tensor():
    # [3, 4] has norm 5 > 1: scaled by 1/5; [0.3, 0.4] has norm 0.5: unchanged.
    first, second = clipped([[3.0, 4.0], [0.3, 0.4]], clipnorm=1.0)
    np.testing.assert_allclose(first, [0.6, 0.8], rtol=1e-12)
    np.testing.assert_allclose(second, [0.3, 0.4], rtol=1e-12)


def test_global_clipnorm_scales_all_tensors_together():
    # joint norm sqrt(9 + 16 + 144) = 13: everything scaled by 1/13, exactly as Keras.
    first, second = clipped([[3.0, 4.0], [12.0]], global_clipnorm=1.0)
    np.testing.assert_allclose(first, [3 / 13, 4 / 13], rtol=1e-12)
    np.testing.assert_allclose(second, [12 / 13], rtol=1e-12)


def test_global_clipnorm_leaves_small_and_zero_gradients():
    first, second = clipped([[0.3, 0.4], [0.0]], global_clipnorm=1.0)
    np.testing.assert_allclose(first, [0.3, 0.4], rtol=1e-12)
    assert second[0] == 0.0


def test_only_one_clipping_argument():
    with pytest.raises(ConfigError, match="only one of `clipnorm`, `clipvalue` and `global_clipnorm`"):
        SGD(clipnorm=1.0, clipvalue=0.5)


# --------------------------------------------------------------------------------------------------
# Schedules.
# --------------------------------------------------------------------------------------------------

SCHEDULE_VALUES = [
    (
        schedules.ExponentialDecay(0.1, 10, 0.5),
        [(0, 0.1), (5, 0.1 * 0.5**0.5), (10, 0.05), (15, 0.1 * 0.5**1.5)],
    ),
    (
        schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True),
        [(9, 0.1), (10, 0.05), (15, 0.05), (20, 0.025)],
    ),
    (
        schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]),
        [(0, 1.0), (10, 1.0), (11, 0.5), (20, 0.5), (21, 0.1)],
    ),
    (schedules.InverseTimeDecay(0.1, 1, 0.5), [(0, 0.1), (2, 0.05), (6, 0.025)]),
    (schedules.InverseTimeDecay(0.1, 4, 1.0, staircase=True), [(3, 0.1), (4, 0.05), (7, 0.05)]),
    (
        schedules.PolynomialDecay(0.1, 10, end_learning_rate=0.01, power=0.5),
        [(0, 0.1), (5, 0.09 * 0.5**0.5 + 0.01), (10, 0.01), (50, 0.01)],
    ),
    # cycle: at step 15 the horizon becomes 20, so 1 - 15/20 = 0.25 is left.
    (
        schedules.PolynomialDecay(0.1, 10, end_learning_rate=0.01, power=0.5, cycle=True),
        [(0, 0.1), (10, 0.01), (15, 0.09 * 0.5 + 0.01)],
    ),
    (schedules.CosineDecay(0.1, 10), [(0, 0.1), (5, 0.05), (10, 0.0), (30, 0.0)]),
    (schedules.CosineDecay(0.1, 10, alpha=0.1), [(5, 0.1 * (0.9 * 0.5 + 0.1)), (10, 0.01)]),
    # warmup from 0 to 0.1 over 5 steps, then cosine over 10 steps.
    (
        schedules.CosineDecay(0.0, 10, warmup_target=0.1, warmup_steps=5),
        [(0, 0.0), (2, 0.04), (5, 0.1), (10, 0.05), (15, 0.0), (100, 0.0)],
    ),
]


@pytest.mark.parametrize("schedule, values", SCHEDULE_VALUES, ids=lambda x: type(x).__name__)
def test_schedule_values(schedule, values):
    for step, expected in values:
        assert schedule(step) == pytest.approx(expected, rel=1e-12, abs=1e-15), step
        assert isinstance(schedule(step), float)


@pytest.mark.parametrize("schedule", [s for s, _ in SCHEDULE_VALUES], ids=lambda x: type(x).__name__)
def test_schedule_config_round_trip(schedule):
    config = json.loads(json.dumps(schedules.serialize(schedule)))
    rebuilt = schedules.deserialize(config)
    assert type(rebuilt) is type(schedule)
    assert rebuilt.get_config() == schedule.get_config()
    assert [rebuilt(s) for s in range(0, 40, 3)] == [schedule(s) for s in range(0, 40, 3)]


@pytest.mark.parametrize(
    "make, update, hyper",
    [
        (lambda s: SGD(s), keras_sgd, {}),
        (lambda s: Adam(s), keras_adam, {}),
        (lambda s: RMSprop(s, momentum=0.9), keras_rmsprop, {"momentum": 0.9}),
        (lambda s: AdamW(s, weight_decay=0.05), keras_adam, {"weight_decay": 0.05}),
    ],
    ids=["sgd", "adam", "rmsprop-momentum", "adamw"],
)
def test_schedule_drives_the_steps(make, update, hyper):
    schedule = schedules.PiecewiseConstantDecay([2, 5], [1.0, 0.3, 0.01])
    w0, grads = scripted_gradients(steps=8, seed=1)
    expected = keras_run(update, w0, grads, lr=schedule, **hyper)
    actual = trainwell_run(make(schedule), w0, grads)
    np.testing.assert_allclose(actual - w0, expected - w0, rtol=1e-6, atol=1e-15)


def test_schedule_errors():
    with pytest.raises(ConfigError, match="`decay_steps` expects a positive number of steps, received 0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ConfigError, match="one element fewer"):
        schedules.PiecewiseConstantDecay([1, 2], [1.0, 0.5])
    with pytest.raises(ConfigError, match="strictly increasing"):
        schedules.PiecewiseConstantDecay([5, 2], [1.0, 0.5, 0.1])
    with pytest.raises(ConfigError, match="Did you mean 'CosineDecay'"):
        schedules.deserialize({"class_name": "CosineDeacy", "config": {}})


def test_schedules_reachable_by_keras_paths():
    from trainwell.optimizers.schedules import CosineDecay, LearningRateSchedule

    assert optimizers.schedules.CosineDecay is CosineDecay
    assert issubclass(CosineDecay, LearningRateSchedule)


# --------------------------------------------------------------------------------------------------
# learning_rate property.
# --------------------------------------------------------------------------------------------------


def test_learning_rate_setter_updates_param_groups_immediately():
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = SGD(0.1)
    opt.build([w])
    opt.learning_rate = 0.05
    assert opt.learning_rate == 0.05
    assert opt.torch_optimizer.param_groups[0]["lr"] == 0.05
    w.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()
    assert w.item() == pytest.approx(0.95, rel=1e-12)
    assert opt.get_config()["learning_rate"] == 0.05


def test_learning_rate_setter_before_build():
    opt = Adam()
    opt.learning_rate = 0.02
    opt.build([torch.nn.Parameter(torch.zeros(2))])
    assert opt.torch_optimizer.param_groups[0]["lr"] == 0.02


def test_learning_rate_from_schedule_follows_iterations():
    schedule = schedules.ExponentialDecay(0.1, 1, 0.5)
    w = torch.nn.Parameter(torch.zeros(1))
    opt = SGD(schedule)
    opt.build([w])
    for _ in range(3):
        w.grad = torch.ones(1)
        opt.step()
    assert opt.iterations == 3
    assert opt.learning_rate == schedule(3)
    assert opt.torch_optimizer.param_groups[0]["lr"] == schedule(2)  # the rate of the last step
    with pytest.raises(ConfigTypeError, match="ExponentialDecay schedule and cannot be set"):
        opt.learning_rate = 0.01


@pytest.mark.parametrize("bad", [-0.1, "0.1", None, float("nan"), True])
def test_learning_rate_setter_validates(bad):
    opt = SGD()
    with pytest.raises(ConfigError, match="`learning_rate` expects a number >= 0"):
        opt.learning_rate = bad
    assert opt.learning_rate == 0.01


# --------------------------------------------------------------------------------------------------
# export_state / import_state: 5 steps + reload + 5 steps == 10 steps, bit for bit.
# --------------------------------------------------------------------------------------------------

STATE_CASES = {
    "sgd-momentum": lambda: SGD(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: Adam(0.05, amsgrad=True, clipnorm=1.0),
    "adamw": lambda: AdamW(0.05),
    "rmsprop": lambda: RMSprop(0.01, momentum=0.5, centered=True),
    "adagrad": lambda: Adagrad(0.1, weight_decay=0.01),
    "adam-schedule": lambda: Adam(schedules.CosineDecay(0.05, 8, warmup_target=0.1, warmup_steps=2)),
}


def make_params():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(2))]


def run_steps(opt, params, start, stop):
    for step in range(start, stop):
        generator = torch.Generator().manual_seed(step)
        opt.zero_grad()
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator).to(p.device)
        opt.step()


@pytest.mark.parametrize("make", STATE_CASES.values(), ids=STATE_CASES.keys())
def test_export_import_continues_exactly(make):
    straight_params, straight = make_params(), make()
    straight.build(straight_params)
    run_steps(straight, straight_params, 0, 10)

    first_params, first = make_params(), make()
    first.build(first_params)
    run_steps(first, first_params, 0, 5)
    tensors, meta = first.export_state()
    # Through the model file's formats: safetensors bytes and JSON text, no pickle.
    tensors = safetensors.torch.load(safetensors.torch.save(tensors))
    meta = json.loads(json.dumps(meta))
    config = json.loads(json.dumps(optimizers.serialize(first)))

    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in first_params]
    resumed = optimizers.get(config)
    resumed.build(resumed_params)
    resumed.import_state(tensors, meta)
    assert resumed.iterations == 5
    run_steps(resumed, resumed_params, 5, 10)

    for got, want in zip(resumed_params, straight_params):
        assert torch.equal(got, want)


def test_export_state_names_and_copies():
    params, opt = make_params(), Adam()
    opt.build(params)
    run_steps(opt, params, 0, 1)
    tensors, meta = opt.export_state()
    assert {"param_0/exp_avg", "param_0/exp_avg_sq", "param_1/exp_avg", "param_0/step"} <= set(tensors)
    assert meta == {"class_name": "Adam", "iterations": 1, "learning_rate": 0.001, "values": {}}
    tensors["param_0/exp_avg"].zero_()  # a copy: the live state is untouched
    assert opt.torch_optimizer.state[params[0]]["exp_avg"].abs().sum() > 0


def test_import_state_restores_set_learning_rate():
    params, opt = make_params(), SGD(0.1)
    opt.build(params)
    opt.learning_rate = 0.003
    tensors, meta = opt.export_state()
    other = SGD(0.1)
    other.build(make_params())
    other.import_state(tensors, meta)
    assert other.learning_rate == 0.003


def test_import_state_rejects_other_class_and_shapes():
    params, opt = make_params(), Adam()
    opt.build(params)
    run_steps(opt, params, 0, 1)
    tensors, meta = opt.export_state()
    sgd = SGD()
    sgd.build(make_params())
    with pytest.raises(ModelFileError, match="saved state is for 'Adam', not 'SGD'"):
        sgd.import_state(tensors, meta)
    small = Adam()
    small.build([torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ModelFileError, match=r"'param_0/exp_avg' has shape \(3, 2\)"):
        small.import_state(tensors, meta)
    one = Adam()
    one.build([torch.nn.Parameter(torch.zeros(3, 2))])
    with pytest.raises(ModelFileError, match="'param_1/"):
        one.import_state(tensors, meta)


# --------------------------------------------------------------------------------------------------
# build / step life cycle.
# --------------------------------------------------------------------------------------------------


def test_build_twice_same_params_is_noop():
    params, opt = make_params(), RMSprop()
    opt.build(params)
    engine = opt.torch_optimizer
    opt.build(params)
    assert opt.built and opt.torch_optimizer is engine
    with pytest.raises(ConfigError, match="already built for 2 parameters"):
        opt.build(make_params())


def test_lifecycle_errors():
    with pytest.raises(ConfigError, match="not built yet"):
        SGD().step()
    with pytest.raises(ConfigError, match="empty parameter list"):
        SGD().build([])
    opt = SGD()
    opt.build(make_params())
    opt.zero_grad()
    with pytest.raises(ConfigError, match="no parameter has a gradient"):
        opt.step()


def test_trains_a_real_model():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    model = torch.nn.Linear(3, 1)
    opt = optimizers.get("adam")
    opt.learning_rate = 0.05
    opt.build(model.parameters())
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first / 100


# --------------------------------------------------------------------------------------------------
# get / serialize / config round trips / validation.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, cls, defaults",
    [
        ("sgd", SGD, {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False}),
        (
            "Adam",
            Adam,
            {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
        ),
        ("ADAMW", AdamW, {"learning_rate": 0.001, "weight_decay": 0.004, "epsilon": 1e-7}),
        (
            "RMSprop",
            RMSprop,
            {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False},
        ),
        ("adagrad", Adagrad, {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7}),
    ],
)
def test_get_by_name_has_keras_defaults(name, cls, defaults):
    opt = optimizers.get(name)
    assert type(opt) is cls
    config = opt.get_config()
    assert {key: config[key] for key in defaults} == defaults
    assert config["name"] == cls.__name__.lower()


@pytest.mark.parametrize(
    "opt",
    [
        SGD(0.2, momentum=0.5, nesterov=True, clipvalue=1.0, name="s"),
        Adam(0.01, beta_1=0.8, amsgrad=True, global_clipnorm=2.0),
        AdamW(weight_decay=0.01, clipnorm=1.0),
        RMSprop(0.01, rho=0.8, momentum=0.1, centered=True, weight_decay=0.001),
        Adagrad(0.5, initial_accumulator_value=0.2, epsilon=1e-6),
        Adam(schedules.InverseTimeDecay(0.1, 10, 0.5, staircase=True)),
    ],
    ids=lambda o: type(o).__name__,
)
def test_config_round_trip(opt):
    config = json.loads(json.dumps(opt.get_config()))
    assert type(opt).from_config(config).get_config() == opt.get_config()
    rebuilt = optimizers.get(json.loads(json.dumps(optimizers.serialize(opt))))
    assert type(rebuilt) is type(opt) and rebuilt.get_config() == opt.get_config()
    assert optimizers.deserialize(optimizers.serialize(opt)).get_config() == opt.get_config()


def test_get_returns_instances_as_is():
    opt = Adam()
    assert optimizers.get(opt) is opt


def test_unknown_name_suggests_closest():
    with pytest.raises(ConfigError, match="unknown optimizer 'adm'.*Did you mean 'adam'"):
        optimizers.get("adm")
    # The message stays short: the suggestion first, the full list behind optimizers.names().
    expected = r"unknown optimizer 'Momentum'\. trainwell\.optimizers\.names\(\) lists all 10\.$"
    with pytest.raises(ConfigError, match=expected):
        optimizers.get({"class_name": "Momentum", "config": {}})
    assert optimizers.names() == ["adadelta", "adagrad", "adam", "adamax", "adamw", "ftrl", "lion", "nadam",
                                  "rmsprop", "sgd"]


@pytest.mark.parametrize("bad", [3, None, torch.optim.SGD, {"config": {}}])
def test_get_rejects_other_types(bad):
    with pytest.raises(ConfigTypeError, match="expected a name such as 'adam'"):
        optimizers.get(bad)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: SGD(learning_rate=-1), "`learning_rate` expects a number >= 0 .* received -1 \\(int\\)"),
        (lambda: Adam(learning_rate=-1e-3), "received -0.001"),
        (lambda: Adam(learning_rate="0.1"), "received '0.1' \\(str\\)"),
        (lambda: Adam(learning_rate=None), "received None"),
        (lambda: Adam(learning_rate=float("nan")), "received nan"),
        (lambda: SGD(momentum=1.0), "`momentum` expects a number in \\[0, 1\\), received 1.0"),
        (lambda: SGD(momentum=-0.1), "`momentum` expects a number in \\[0, 1\\), received -0.1"),
        (lambda: RMSprop(momentum=1.5), "`momentum`.*received 1.5"),
        (lambda: Adam(beta_1=1.0), "`beta_1` expects a number in \\[0, 1\\), received 1.0"),
        (lambda: AdamW(beta_2=-0.5), "`beta_2`.*received -0.5"),
        (lambda: RMSprop(rho=1.0), "`rho`.*received 1.0"),
        (lambda: Adam(epsilon=0), "`epsilon` expects a positive number, received 0"),
        (lambda: Adagrad(epsilon=-1e-7), "`epsilon`.*received -1e-07"),
        (lambda: Adagrad(initial_accumulator_value=-1), "`initial_accumulator_value`.*received -1"),
        (lambda: SGD(weight_decay=-0.1), "`weight_decay` expects None or a number >= 0, received -0.1"),
        (lambda: AdamW(weight_decay=None), "AdamW: `weight_decay` expects a number >= 0, received None"),
        (lambda: SGD(clipnorm=0), "`clipnorm` expects a positive number, received 0"),
    ],
)
def test_invalid_arguments(make, fragment):
    with pytest.raises(ConfigError, match=fragment):
        make()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("make", STATE_CASES.values(), ids=STATE_CASES.keys())
def test_cuda_matches_cpu_and_resumes_from_cpu_state(make):
    cpu_params, cpu = make_params(), make()
    cpu.build(cpu_params)
    run_steps(cpu, cpu_params, 0, 6)
    cuda_params = [torch.nn.Parameter(p.detach().cuda()) for p in make_params()]
    cuda = make()
    cuda.build(cuda_params)
    run_steps(cuda, cuda_params, 0, 3)
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in cuda_params]
    resumed = make()
    resumed.build(resumed_params)
    resumed.import_state(*cuda.export_state())  # exported to the CPU, imported back onto the GPU
    run_steps(resumed, resumed_params, 3, 6)
    for got, want in zip(resumed_params, cpu_params):
        torch.testing.assert_close(got.detach().cpu(), want.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [optimizers.SGD, optimizers.Adam, optimizers.RMSprop, optimizers.Adagrad])
def test_keras2_lr_spelling_is_accepted_for_course_code(cls):
    # Regression: the course writes SGD(lr=lr); Keras 3 removed `lr`, which broke those scripts.
    opt = cls(lr=0.25)
    assert opt.learning_rate == 0.25
    assert "lr" not in opt.get_config()


# --------------------------------------------------------------------------------------------------
# One formula, three engines: torch.optim (Optimizer.step), the fused flat update of fastpath, and
# StackedOptimizer (batched training), over the same scripted gradients.
# --------------------------------------------------------------------------------------------------

ENGINE_CASES = {
    "sgd": (SGD, {}),
    "sgd_momentum": (SGD, {"momentum": 0.9}),
    "sgd_nesterov": (SGD, {"momentum": 0.9, "nesterov": True}),
    "adam": (Adam, {}),
    "adamw": (AdamW, {"weight_decay": 0.05}),
}


def fused_run(opt, w0, grads):
    """``fastpath.FusedUpdate`` on one float32 parameter (the single fused fit's update)."""
    from trainwell import fastpath

    w = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float32))
    opt.build([w])
    flat = fastpath.FlatParameters([w])
    update = fastpath.FusedUpdate(opt, flat)
    trajectory = []
    for g in grads:
        flat.grad.copy_(torch.tensor(g, dtype=torch.float32))
        update()
        trajectory.append(w.detach().numpy().copy())
    return np.array(trajectory)


def stacked_run(opts, w0, grads, flat: bool, active=None):
    """``StackedOptimizer`` on C copies of ``w0``: stacked (C, n), or one flat buffer with ``owner``."""
    count = len(opts)
    w = torch.tensor(np.stack([w0] * count), dtype=torch.float32)
    owner = torch.arange(count).repeat_interleave(w.shape[1]) if flat else None
    param = w.view(-1) if flat else w
    stacked = optimizers.StackedOptimizer(opts, [param], owner=owner)
    trajectory = []
    for g in grads:
        param.grad = torch.tensor(np.stack([g] * count), dtype=torch.float32).view(param.shape)
        stacked.step(active)
        trajectory.append(w.numpy().copy())
    return np.array(trajectory).transpose(1, 0, 2)  # (C, steps, n)


@pytest.mark.parametrize("flat", [False, True], ids=["stacked", "flat"])
@pytest.mark.parametrize("rates", [[0.1, 0.01, 0.003], [0.01, 0.01, 0.01]], ids=["per_candidate", "shared"])
@pytest.mark.parametrize("case", ENGINE_CASES)
def test_stacked_fused_and_torch_optim_updates_agree(case, rates, flat):
    make, hyper = ENGINE_CASES[case]
    w0, grads = scripted_gradients(steps=10)
    w0 = w0.astype(np.float32)
    stacked = stacked_run([make(learning_rate=lr, **hyper) for lr in rates], w0, grads, flat)
    for c, lr in enumerate(rates):
        reference = trainwell_run(make(learning_rate=lr, **hyper), w0, grads, dtype=torch.float32)
        np.testing.assert_allclose(stacked[c], reference, rtol=2e-6, atol=1e-7)
        if not hyper.get("weight_decay"):  # the fused flat update has no weight decay (fit falls back)
            np.testing.assert_allclose(fused_run(make(learning_rate=lr, **hyper), w0, grads), reference,
                                       rtol=2e-6, atol=1e-7)
        keras = keras_run(KERAS_UPDATES[make], w0, grads, lr, hyper.get("weight_decay"),
                          **{k: v for k, v in hyper.items() if k != "weight_decay"})
        np.testing.assert_allclose(stacked[c], keras, rtol=1e-4, atol=1e-6)  # float32 vs float64


def test_stacked_optimizer_freezes_inactive_candidates():
    w0, grads = scripted_gradients(steps=3)
    active = torch.tensor([True, False, True])
    for flat in (False, True):
        run = stacked_run([Adam(learning_rate=lr) for lr in (0.1, 0.2, 0.3)], w0.astype(np.float32), grads,
                          flat, active)
        np.testing.assert_array_equal(run[1], np.stack([w0.astype(np.float32)] * 3))
        assert not np.allclose(run[0][-1], w0) and not np.allclose(run[2][-1], w0)


KERAS_UPDATES = {SGD: keras_sgd, Adam: keras_adam, AdamW: keras_adam}
# Nadam, Adamax, Adadelta, Lion, Ftrl: Keras's update rules in numpy (float64), as above.
# --------------------------------------------------------------------------------------------------


def keras_nadam(s, w, g, lr, t, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    u_t, u_next = beta_1 * (1 - 0.5 * 0.96**t), beta_1 * (1 - 0.5 * 0.96 ** (t + 1))
    product = s["u"] = s.get("u", 1.0) * u_t
    m = s["m"] = beta_1 * s.get("m", 0.0) + (1 - beta_1) * g
    v = s["v"] = beta_2 * s.get("v", 0.0) + (1 - beta_2) * g * g
    m_hat = u_next * m / (1 - product * u_next) + (1 - u_t) * g / (1 - product)
    return w - lr * m_hat / (np.sqrt(v / (1 - beta_2**t)) + epsilon)


def keras_adamax(s, w, g, lr, t, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    m = s["m"] = beta_1 * s.get("m", 0.0) + (1 - beta_1) * g
    u = s["u"] = np.maximum(beta_2 * s.get("u", 0.0), np.abs(g))
    return w - lr * m / ((1 - beta_1**t) * (u + epsilon))


def keras_adadelta(s, w, g, lr, t, rho=0.95, epsilon=1e-7):
    a = s["a"] = rho * s.get("a", 0.0) + (1 - rho) * g * g
    delta = -np.sqrt(s.get("d", 0.0) + epsilon) / np.sqrt(a + epsilon) * g
    s["d"] = rho * s.get("d", 0.0) + (1 - rho) * delta * delta
    return w + lr * delta


def keras_lion(s, w, g, lr, t, beta_1=0.9, beta_2=0.99):
    w = w - lr * np.sign(beta_1 * s.get("m", 0.0) + (1 - beta_1) * g)
    s["m"] = beta_2 * s.get("m", 0.0) + (1 - beta_2) * g
    return w


def keras_ftrl(s, w, g, lr, t, learning_rate_power=-0.5, initial_accumulator_value=0.1,
               l1_regularization_strength=0.0, l2_regularization_strength=0.0,
               l2_shrinkage_regularization_strength=0.0, beta=0.0):
    n, p = s.get("n", initial_accumulator_value), -learning_rate_power
    n_new = n + g * g
    shrink = 2 * l2_shrinkage_regularization_strength * w
    z = s["z"] = s.get("z", 0.0) + g + shrink - (n_new**p - n**p) / lr * w
    s["n"] = n_new
    quadratic = n_new**p / lr + 2 * (l2_regularization_strength + beta / (2 * lr))
    l1 = l1_regularization_strength
    return (np.clip(z, -l1, l1) - z) / quadratic


Nadam, Adamax, Adadelta, Lion, Ftrl = (optimizers.Nadam, optimizers.Adamax, optimizers.Adadelta,
                                       optimizers.Lion, optimizers.Ftrl)
FTRL_ALL = {"learning_rate_power": -0.7, "initial_accumulator_value": 0.2, "l1_regularization_strength": 1e-3,
            "l2_regularization_strength": 0.1, "l2_shrinkage_regularization_strength": 0.05, "beta": 0.5}
MORE_CASES = [
    ("nadam", lambda: Nadam(), keras_nadam, {"lr": 0.001}),
    ("nadam-lr1-betas", lambda: Nadam(1.0, beta_1=0.5, beta_2=0.9), keras_nadam,
     {"lr": 1.0, "beta_1": 0.5, "beta_2": 0.9}),
    ("adamax", lambda: Adamax(), keras_adamax, {"lr": 0.001}),
    ("adamax-lr1", lambda: Adamax(1.0, beta_2=0.5), keras_adamax, {"lr": 1.0, "beta_2": 0.5}),
    ("adadelta", lambda: Adadelta(), keras_adadelta, {"lr": 0.001}),
    ("adadelta-lr1", lambda: Adadelta(1.0, rho=0.9), keras_adadelta, {"lr": 1.0, "rho": 0.9}),
    ("lion", lambda: Lion(), keras_lion, {"lr": 0.001}),
    ("lion-betas-wd", lambda: Lion(0.1, beta_1=0.5, beta_2=0.9, weight_decay=0.1), keras_lion,
     {"lr": 0.1, "beta_1": 0.5, "beta_2": 0.9, "weight_decay": 0.1}),
    ("ftrl", lambda: Ftrl(), keras_ftrl, {"lr": 0.001}),
    ("ftrl-all-terms", lambda: Ftrl(0.5, **FTRL_ALL), keras_ftrl, {"lr": 0.5, **FTRL_ALL}),
    ("nadam-schedule", lambda: Nadam(schedules.ExponentialDecay(0.1, 2, 0.5)), keras_nadam,
     {"lr": lambda step: 0.1 * 0.5 ** (step / 2)}),
]


@pytest.mark.parametrize("make, update, hyper", [c[1:] for c in MORE_CASES], ids=[c[0] for c in MORE_CASES])
def test_more_optimizers_match_keras_formula(make, update, hyper):
    w0, grads = scripted_gradients()
    expected = keras_run(update, w0, grads, **hyper)
    actual = trainwell_run(make(), w0, grads)
    np.testing.assert_allclose(actual - w0, expected - w0, rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize("make, update, rtol", [
    # torch's default momentum_decay=0.004 is another momentum schedule: far off.
    (lambda p: torch.optim.NAdam(p, lr=0.1, eps=1e-7), keras_nadam, 1e-3),
    # eps inside the maximum: off by (1 - beta_2) * eps in the norm, visible on 1e-6 gradients.
    (lambda p: torch.optim.Adamax(p, lr=0.1, eps=1e-7), keras_adamax, 1e-6),
], ids=["nadam", "adamax"])
def test_torch_adamax_and_default_nadam_differ_so_the_mappings_matter(make, update, rtol):
    w0, grads = scripted_gradients()
    w = torch.nn.Parameter(torch.tensor(w0))
    opt = make([w])
    for g in grads:
        w.grad = torch.tensor(g)
        opt.step()
    expected = keras_run(update, w0, grads, lr=0.1)[-1]
    assert not np.allclose(w.detach().numpy() - w0, expected - w0, rtol=rtol, atol=0)


MORE_STATE_CASES = {
    "nadam": lambda: Nadam(0.05, clipnorm=1.0),
    "adamax": lambda: Adamax(0.05),
    "adadelta": lambda: Adadelta(1.0),
    "lion": lambda: Lion(0.01, weight_decay=0.1),
    "ftrl": lambda: Ftrl(0.1, l1_regularization_strength=0.01),
    "legacy-sgd-decay": lambda: optimizers.legacy.SGD(lr=0.1, momentum=0.9, decay=0.01),
}


@pytest.mark.parametrize("make", MORE_STATE_CASES.values(), ids=MORE_STATE_CASES.keys())
def test_more_optimizers_export_import_continue_exactly(make):
    test_export_import_continues_exactly(make)


@pytest.mark.parametrize("name, cls, defaults", [
    ("nadam", Nadam, {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
    ("Adamax", Adamax, {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
    ("adadelta", Adadelta, {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7}),
    ("lion", Lion, {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.99}),
    ("ftrl", Ftrl, {"learning_rate": 0.001, "learning_rate_power": -0.5, "initial_accumulator_value": 0.1,
                    "l1_regularization_strength": 0.0, "l2_regularization_strength": 0.0,
                    "l2_shrinkage_regularization_strength": 0.0, "beta": 0.0}),
])
def test_more_optimizers_by_name_have_keras_defaults(name, cls, defaults):
    test_get_by_name_has_keras_defaults(name, cls, defaults)


@pytest.mark.parametrize("opt", [Nadam(0.01, beta_1=0.8), Adamax(epsilon=1e-6, clipvalue=1.0),
                                 Adadelta(rho=0.9),
                                 Lion(beta_1=1.0), Ftrl(0.1, **FTRL_ALL)], ids=lambda o: type(o).__name__)
def test_more_optimizers_config_round_trip(opt):
    test_config_round_trip(opt)


@pytest.mark.parametrize("make, fragment", [
    (lambda: Nadam(beta_1=1.0), "Nadam: `beta_1` expects a number in \\[0, 1\\), received 1.0"),
    (lambda: Adamax(epsilon=0), "Adamax: `epsilon` expects a positive number"),
    (lambda: Adadelta(rho=-0.1), "Adadelta: `rho`.*received -0.1"),
    (lambda: Lion(beta_1=0), "Lion: `beta_1` expects a number in \\(0, 1\\].*signSGD.*received 0"),
    (lambda: Ftrl(learning_rate_power=0.5), "`learning_rate_power` expects a number <= 0, received 0.5"),
    (lambda: Ftrl(l1_regularization_strength=-1), "Ftrl: `l1_regularization_strength` expects a number >= 0"),
    (lambda: optimizers.legacy.Adam(decay=-1.0), "Adam: `decay` expects a positive number, received -1.0"),
])
def test_more_optimizers_invalid_arguments(make, fragment):
    with pytest.raises(ConfigError, match=fragment):
        make()


def test_keras2_legacy_optimizers_importable_with_lr_and_decay():
    # Keras 2.11+ course code: `from keras.optimizers.legacy import SGD; SGD(lr=0.1, decay=0.5)`.
    from trainwell.optimizers.legacy import SGD as LegacySGD
    from trainwell.optimizers.legacy import Adam as LegacyAdam

    opt = LegacySGD(lr=0.1, decay=0.5)
    assert isinstance(opt, SGD) and opt.learning_rate == 0.1
    w0, grads = scripted_gradients(steps=4)
    expected = keras_run(keras_sgd, w0, grads, lr=lambda step: 0.1 / (1 + 0.5 * step))
    np.testing.assert_allclose(trainwell_run(opt, w0, grads), expected, rtol=1e-12)
    assert optimizers.serialize(opt)["class_name"] == "SGD"  # saved as the Keras 3 class
    assert LegacyAdam().get_config() == Adam().get_config()
    assert {"Adadelta", "Adamax", "Nadam", "Ftrl", "RMSprop", "Adagrad", "Optimizer"} <= set(
        vars(optimizers.legacy))
