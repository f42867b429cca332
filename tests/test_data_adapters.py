"""Batched data in fit/evaluate/predict: PyDataset (Sequence), torch Dataset/DataLoader, generators.

Each source must train to exactly the numbers of the same rows given as arrays; steps_per_epoch,
validation_steps and running out of data behave as Keras's EpochIterator.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from trainwell import utils
from trainwell._errors import ConfigError, DataError
from trainwell.data_adapters import BatchStream, PyDataset
from trainwell.layers import Dense
from trainwell.models import Sequential

ROWS, BATCH = 100, 25
RNG = np.random.default_rng(0)
X = RNG.normal(size=(ROWS, 3)).astype(np.float32)
Y = (X @ np.array([1.0, 2.0, 3.0], np.float32)).reshape(-1, 1)
W = RNG.uniform(0.5, 2.0, size=ROWS).astype(np.float32)


def model():
    utils.set_random_seed(0)
    net = Sequential([Dense(4, activation="relu", input_shape=(3,)), Dense(1)])
    net.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    return net


class Batches(PyDataset):
    """Batch i = rows [25 i, 25 i + 25); records what was read and the epoch ends."""

    def __init__(self, weights=False, x_only=False, **kwargs):
        super().__init__(**kwargs)
        self.weights, self.x_only = weights, x_only
        self.read, self.epoch_ends = [], 0

    def __len__(self):
        return ROWS // BATCH

    def __getitem__(self, index):
        self.read.append(index)
        rows = slice(index * BATCH, (index + 1) * BATCH)
        if self.x_only:
            return X[rows]
        return (X[rows], Y[rows], W[rows]) if self.weights else (X[rows], Y[rows])

    def on_epoch_end(self):
        self.epoch_ends += 1


class Keras2Batches(utils.Sequence):
    """Keras 2 course style: subclass Sequence, no super().__init__()."""

    def __init__(self, weights):
        self.weights = weights

    def __len__(self):
        return ROWS // BATCH

    def __getitem__(self, index):
        rows = slice(index * BATCH, (index + 1) * BATCH)
        return (X[rows], Y[rows], W[rows]) if self.weights else (X[rows], Y[rows])


def generator(weights=False):
    while True:
        for i in range(ROWS // BATCH):
            rows = slice(i * BATCH, (i + 1) * BATCH)
            yield (X[rows], Y[rows], W[rows]) if weights else (X[rows], Y[rows])


SOURCES = {
    "pydataset": lambda w: Batches(weights=w),
    "keras2_sequence": lambda w: Keras2Batches(w),
    "torch_dataset": lambda w: TensorDataset(*map(torch.tensor, (X, Y, W) if w else (X, Y))),
    "dataloader": lambda w: DataLoader(TensorDataset(*map(torch.tensor, (X, Y, W) if w else (X, Y))),
                                       batch_size=BATCH),
    "generator": lambda w: generator(w),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("source", SOURCES)
def test_each_source_trains_like_the_same_arrays(source, weighted):
    arrays = model()
    expected = arrays.fit(X, Y, sample_weight=W if weighted else None, batch_size=BATCH, epochs=3,
                          shuffle=False, verbose=0).history
    streamed = model()
    steps = {"steps_per_epoch": 4} if source == "generator" else {}
    got = streamed.fit(SOURCES[source](weighted), batch_size=BATCH, epochs=3, shuffle=False, verbose=0,
                       **steps).history
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, err_msg=key)
    for a, b in zip(streamed.get_weights(), arrays.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_pydataset_epoch_end_and_shuffled_batch_order():
    data = Batches()
    model().fit(data, epochs=2, verbose=0, shuffle=False, diagnostics="off")
    # Batch 0 is read before the loop (to build the model) and served as the first batch.
    assert data.read == [0, 1, 2, 3, 0, 1, 2, 3] and data.epoch_ends == 2
    shuffled = Batches()
    net = model()
    net.fit(shuffled, epochs=3, verbose=0, diagnostics="off")  # shuffle=True: a new order per epoch
    orders = [shuffled.read[4 * e: 4 * e + 4] for e in range(3)]  # the peeked batch opens epoch 1
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders) and len({tuple(o) for o in orders}) > 1


def test_steps_per_epoch_continues_through_the_data_as_keras():
    data = Batches()
    net = model()
    with pytest.warns(UserWarning, match="ran out of data"):
        history = net.fit(data, epochs=3, steps_per_epoch=3, shuffle=False, verbose=0, diagnostics="off")
    # Epoch 1 takes batches 0-2, epoch 2 batch 3 and then the pass is over (Keras warns and ends
    # the epoch), epoch 3 starts a new pass.
    assert data.read == [0, 1, 2, 3, 0, 1, 2]
    assert len(history.history["loss"]) == 3 and net.optimizer.iterations == 7


def test_a_used_up_generator_stops_training_with_keras_warning():
    def finite():
        for i in range(4):
            yield X[i * BATCH:(i + 1) * BATCH], Y[i * BATCH:(i + 1) * BATCH]

    net = model()
    with pytest.warns(UserWarning, match="Your input ran out of data; interrupting training"):
        history = net.fit(finite(), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 1 and net.optimizer.iterations == 4


def test_validation_sources_and_validation_steps():
    net = model()
    history = net.fit(generator(), steps_per_epoch=4, epochs=2, verbose=0, validation_data=Batches(),
                      validation_steps=2)
    reference = model()
    reference.set_weights(net.get_weights())
    # Each validation starts again at the first batch (Keras resets its evaluation iterator).
    expected = reference.evaluate(X[:2 * BATCH], Y[:2 * BATCH], verbose=0)
    np.testing.assert_allclose([history.history["val_loss"][-1], history.history["val_mae"][-1]], expected,
                               rtol=1e-6)


def test_evaluate_and_predict_take_sources_and_steps():
    net = model()
    net.fit(X, Y, epochs=1, verbose=0)
    np.testing.assert_allclose(net.evaluate(Batches(), verbose=0), net.evaluate(X, Y, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(net.evaluate(Batches(), steps=1, verbose=0),
                               net.evaluate(X[:BATCH], Y[:BATCH], verbose=0), rtol=1e-6)
    np.testing.assert_allclose(net.evaluate(X, Y, batch_size=BATCH, steps=2, verbose=0),
                               net.evaluate(X[:50], Y[:50], verbose=0), rtol=1e-6)
    np.testing.assert_allclose(net.predict(Batches(x_only=True), verbose=0), net.predict(X, verbose=0),
                               rtol=1e-6)
    assert net.predict(generator(), steps=2, verbose=0).shape == (50, 1)
    loader = DataLoader(TensorDataset(torch.tensor(X)), batch_size=BATCH)
    np.testing.assert_allclose(net.predict(loader, verbose=0), net.predict(X, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"y": Y}, ConfigError, "`y` must be None when x is a Batches"),
    ({"sample_weight": W}, ConfigError, "`sample_weight` must be None"),
    ({"validation_split": 0.2}, ConfigError, "`validation_split` needs x and y as arrays"),
    ({"steps_per_epoch": 0}, ConfigError, "`steps` expects a positive integer"),
])
def test_wrong_arguments_with_a_source(kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        model().fit(Batches(), verbose=0, **kwargs)


def test_batches_without_targets_or_of_bad_shape_are_named():
    with pytest.raises(DataError, match="`x` gave a batch without targets"):
        model().fit(Batches(x_only=True), verbose=0)
    with pytest.raises(DataError, match="a batch must be x, \\(x, y\\) or \\(x, y, sample_weight\\)"):
        model().fit(iter([(X, Y, W, W)]), verbose=0)
    with pytest.raises(DataError, match="`x` yielded no batches"):
        model().fit(iter([]), verbose=0)


def test_the_doctor_probes_the_first_batches():
    # Unscaled inputs (one feature ~1000x the others) are a data finding the doctor takes from the
    # batches it probes, as it does from arrays.
    class Unscaled(Batches):
        def __getitem__(self, index):
            x, y = super().__getitem__(index)
            return x * np.array([1.0, 1.0, 1000.0], np.float32), y

    data = Unscaled()
    net = model()
    net.compile(optimizer="adam", loss="mse")
    history = net.fit(data, epochs=1, verbose=0, shuffle=False, diagnostics="full")
    assert "unscaled_inputs" in [finding.code for finding in history.diagnosis]
    assert data.read[:5] == [0, 0, 1, 2, 3]  # the probe: the first 4 batches, by index


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shards_read_own_batches_with_equal_step_counts(world_size):
    reads = []
    for rank in range(world_size):
        data = Batches()
        stream = BatchStream(data, rank=rank, world_size=world_size)
        list(stream.epoch())
        reads.append(data.read)
    assert len({len(r) for r in reads}) == 1  # every process runs the same number of steps
    assert sorted({i for r in reads for i in r}) == [0, 1, 2, 3]
    assert reads[0][:2] == [0, world_size] and reads[1][0] == 1  # interleaved: rank r reads r, r + N, ...


def test_ddp_generator_needs_steps():
    with pytest.raises(ConfigError, match="under strategy='ddp' a generator .* needs `steps_per_epoch`"):
        BatchStream(generator(), rank=0, world_size=2)
    stream = BatchStream(generator(), steps=2, rank=1, world_size=2)
    first, second = list(stream.epoch())
    np.testing.assert_array_equal(first[0], X[BATCH:2 * BATCH])  # rank 1 of 2: batches 1, 3, ...
    np.testing.assert_array_equal(second[0], X[3 * BATCH:])


def test_thread_policy_sees_the_real_batch_size():
    # Regression: a PyDataset fit chose its thread count from fit's default batch_size=32, not from
    # the 4096-row batches the PyDataset makes, so it ran single-threaded where arrays did not.
    from trainwell.callbacks import LambdaCallback

    class Big(PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return np.ones((4096, 3), np.float32), np.ones((4096, 1), np.float32)

    seen = []
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(torch.get_num_threads()))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net = Sequential([Dense(512, input_shape=(3,)), Dense(1)])  # 4096 rows x 2048 MACs: not small
        net.compile(optimizer="sgd", loss="mse")
        net.fit(np.ones((4096, 3), np.float32), np.ones((4096, 1), np.float32), batch_size=4096, verbose=0,
                callbacks=[record], diagnostics="off")
        net.fit(Big(), verbose=0, callbacks=[record], diagnostics="off")
    finally:
        torch.set_num_threads(previous)
    assert seen == [2, 2]
