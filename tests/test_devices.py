"""Devices and precision: device='auto'|'cpu'|'cuda'|'cuda:N' and precision='bf16-mixed'.

GPU-only checks are marked ``gpu`` and skip without CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from trainwell import data as data_module
from trainwell import distributed, training
from trainwell._errors import ConfigError
from trainwell.layers import Dense
from trainwell.models import Sequential
from trainwell.optimizers import SGD
from trainwell.utils import set_random_seed

HAS_CUDA = torch.cuda.is_available()
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
no_cuda = pytest.mark.skipif(HAS_CUDA, reason="checks the message shown when CUDA is missing")


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-1.0], [0.5], [2.0]]) > 0).astype("float32")
    return x, y


def _model(seed=0, **compile_kw):
    set_random_seed(seed)
    model = Sequential([Dense(8, activation="relu", input_shape=(4,)), Dense(1, activation="sigmoid")])
    model.compile(optimizer=SGD(learning_rate=0.1), loss="binary_crossentropy", metrics=["accuracy"],
                  **compile_kw)
    return model


# ----------------------------------------------------------------------------------------------
# device


def test_resolve_device_cpu_and_auto():
    assert training.resolve_device("cpu") == torch.device("cpu")
    assert training.resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert training.resolve_device("auto") == torch.device("cuda" if HAS_CUDA else "cpu")
    assert training.resolve_device(None) == training.resolve_device("auto")


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_clear_config_error(device):
    with pytest.raises(ConfigError, match=r"asks for a GPU, but torch sees no CUDA device.*device='auto'"):
        training.resolve_device(device)


@pytest.mark.parametrize("bad", ["gpu0", "tpu", 3.5, [0]])
def test_unknown_device_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="`device` expects 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        training.resolve_device(bad)


def test_compile_and_fit_place_the_model_on_the_cpu():
    model = _model(device="cpu")
    assert model.device == torch.device("cpu")
    model.fit(*_data(), epochs=1, verbose=0, device="auto")
    expected = torch.device("cuda" if HAS_CUDA else "cpu")
    assert model.device.type == expected.type
    assert all(p.device.type == expected.type for p in model.parameters())


@no_cuda
def test_fit_on_cuda_without_a_gpu_fails_before_training():
    model = _model()
    with pytest.raises(ConfigError, match="no CUDA device"):
        model.fit(*_data(), epochs=1, verbose=0, device="cuda")
    assert model.epochs_trained == 0 and model.device == torch.device("cpu")


def test_data_becomes_a_tensor_once_per_fit_not_per_batch(monkeypatch):
    calls = []
    real = data_module.as_tensor

    def counting(x, name="x", *args, **kwargs):
        calls.append(name)
        return real(x, name, *args, **kwargs)

    monkeypatch.setattr(data_module, "as_tensor", counting)
    x, y = _data(64)
    _model().fit(x, y, batch_size=4, epochs=3, verbose=0)  # 16 batches x 3 epochs
    assert sorted(calls) == ["x", "y"]


class _Transfers(TorchFunctionMode):
    """Counts calls that copy a tensor to another device, or build one from host (numpy/Python) data."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        src = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if isinstance(out, torch.Tensor) and src is not None and out.device != src.device:
            self.count += 1  # a device-to-device copy
        elif func in (torch.tensor, torch.as_tensor, torch.from_numpy) and src is None and args:
            if isinstance(args[0], (np.ndarray, list)):
                self.count += 1  # host data becoming a tensor (a Python scalar is a kernel argument)
        return out


def _transfers_during_fit(batch_size, device):
    x, y = _data(64)
    model = _model(device=device)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)  # converted outside the counted region
    with _Transfers() as mode:
        model.fit(xt, yt, batch_size=batch_size, epochs=2, verbose=0, shuffle=True)
    return mode.count


def test_no_per_batch_transfers_on_the_cpu():
    # 2 batches per epoch vs 32: the number of copies must not grow with the number of batches.
    assert _transfers_during_fit(32, "cpu") == _transfers_during_fit(2, "cpu")


@gpu
@needs_cuda
def test_no_per_batch_transfers_on_the_gpu():
    assert _transfers_during_fit(32, "cuda") == _transfers_during_fit(2, "cuda")


@gpu
@needs_cuda
def test_gpu_training_matches_cpu_training():
    x, y = _data()
    cpu, cuda = _model(seed=2), _model(seed=2, device="cuda")
    h_cpu = cpu.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    h_gpu = cuda.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    np.testing.assert_allclose(h_gpu.history["loss"], h_cpu.history["loss"], rtol=1e-4)
    for a, b in zip(cpu.get_weights(), cuda.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    assert cuda.predict(x, verbose=0).dtype == np.float32


@gpu
@needs_cuda
def test_ddp_process_device_is_the_local_rank_gpu(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.process_device("auto") == "cuda:0"
    assert distributed.process_device("cpu") == "cpu"
    monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count()))
    with pytest.raises(Exception, match="GPU"):
        distributed.process_device("cuda")


# ----------------------------------------------------------------------------------------------
# precision


@pytest.mark.parametrize("given, expected", [(None, "32-true"), ("32-true", "32-true"), ("32", "32-true"),
                                             ("bf16-mixed", "bf16-mixed"), ("mixed_bfloat16", "bf16-mixed")])
def test_precision_names_and_keras_aliases(given, expected):
    assert distributed.check_precision(given) == expected


@pytest.mark.parametrize("bad, hint", [("bf16", "bf16-mixed"), ("16-mixed", None), (16, None)])
def test_unknown_precision_lists_the_valid_names(bad, hint):
    with pytest.raises(ConfigError, match="`precision`: unknown precision.*32-true.*bf16-mixed") as info:
        _model(precision=bad)
    if hint:
        assert f"Did you mean '{hint}'" in str(info.value)


def test_bf16_mixed_runs_the_layers_in_bfloat16_and_the_loss_in_float32():
    model = _model(precision="bf16-mixed")
    seen = []
    model.layers[0].register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    ctx_dtypes = []
    real_loss = training.StepContext.total_loss

    def spy(self, y, out, w):
        ctx_dtypes.append(out.dtype)
        return real_loss(self, y, out, w)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.StepContext, "total_loss", spy)
        history = model.fit(*_data(), batch_size=16, epochs=1, verbose=0)
    assert set(seen) == {torch.bfloat16}
    assert set(ctx_dtypes) == {torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert np.isfinite(history.history["loss"][0])


def test_bf16_mixed_is_close_to_float32_training():
    x, y = _data()
    full, mixed = _model(seed=4), _model(seed=4)
    h_full = full.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    h_mixed = mixed.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False, precision="bf16-mixed")
    assert mixed.precision == "bf16-mixed"
    # bfloat16 keeps 8 bits of mantissa: about 2-3 significant digits.
    np.testing.assert_allclose(h_mixed.history["loss"], h_full.history["loss"], rtol=3e-2)
    assert h_mixed.history["loss"] != h_full.history["loss"]  # autocast really was on


def test_bf16_mixed_uses_the_autograd_step():
    model = _model(precision="bf16-mixed")
    model.build((None, 4))
    ctx = training.StepContext(model)
    assert ctx.autocast_dtype == torch.bfloat16
    assert training.select_step(ctx) is training.train_step


@gpu
@needs_cuda
def test_bf16_mixed_on_the_gpu():
    if not torch.cuda.is_bf16_supported():
        with pytest.raises(ConfigError, match="bfloat16"):
            _model(device="cuda", precision="bf16-mixed").fit(*_data(), epochs=1, verbose=0)
        return
    x, y = _data()
    full, mixed = _model(seed=4, device="cuda"), _model(seed=4, device="cuda", precision="bf16-mixed")
    h_full = full.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    h_mixed = mixed.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    np.testing.assert_allclose(h_mixed.history["loss"], h_full.history["loss"], rtol=3e-2)
