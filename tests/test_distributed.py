"""trainwell.distributed: sharding, reductions, rank-0-only output, and real torchrun runs (gloo, CPU).

The torchrun tests start two worker processes with ``python -m torch.distributed.run`` on a seeded
problem and compare them with single-process training on the same global batch.
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.distributed as dist

from trainwell import distributed
from trainwell._errors import ConfigError, DataError, DistributedError
from trainwell.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint, ProgbarLogger
from trainwell.layers import Dense
from trainwell.models import Sequential
from trainwell.optimizers import SGD
from trainwell.utils import set_random_seed

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

# The worker script the torchrun tests start; the test process imports `problem` and `build` from
# the same file for the single-process reference.
WORKER = textwrap.dedent('''
    import json, os, signal, sys, time

    import numpy as np

    from trainwell import distributed
    from trainwell.callbacks import Callback, CSVLogger
    from trainwell.layers import Dense
    from trainwell.models import Sequential
    from trainwell.optimizers import SGD
    from trainwell.utils import set_random_seed


    def problem():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(48, 3)).astype("float32")
        y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.1).astype("float32")
        return x, y


    def build(seed):
        set_random_seed(seed)
        model = Sequential([Dense(4, activation="tanh", input_shape=(3,)), Dense(1)])
        model.compile(optimizer=SGD(learning_rate=0.05), loss="mse", metrics=["mae"])
        return model


    class StopAnswering(Callback):
        """After its first epoch rank 1 is killed (mode 'kill') or hangs (mode 'hang')."""

        def __init__(self, mode):
            super().__init__()
            self.mode = mode

        def on_epoch_end(self, epoch, logs=None):
            if distributed.rank() == 1:
                if self.mode == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(120)


    def main(mode, out):
        x, y = problem()
        if mode in ("kill", "hang"):
            build(1).fit(x, y, batch_size=4, epochs=50, verbose=0, callbacks=[StopAnswering(mode)],
                         strategy="ddp")
            return
        results = {}
        for shuffle in (False, True):
            # Each rank seeds differently on purpose: DDP must broadcast rank 0's weights and seed.
            model = build(seed=1 + 100 * distributed.rank() if shuffle else 1)
            logger = CSVLogger(os.path.join(out, f"history-{shuffle}.csv"))
            history = model.fit(x, y, batch_size=4, epochs=3, shuffle=shuffle, validation_split=0.25,
                                verbose=2, callbacks=[logger], strategy="ddp")
            model.save(os.path.join(out, f"model-{shuffle}.tw"))
            results[str(shuffle)] = {"weights": [w.tolist() for w in model.get_weights()],
                                     "history": history.history}
        with open(os.path.join(out, f"result-rank{distributed.rank()}.json"), "w") as f:
            json.dump(results, f)


    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2])
''')


@pytest.fixture
def no_torchrun_env(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)


def _write_worker(tmp_path):
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    return path


def _torchrun(worker, mode, out, timeout_env="60", timeout=120):
    """Run the worker on 2 CPU processes; returns (returncode, combined output)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", distributed.TIMEOUT_ENV: timeout_env}
    for name in TORCHRUN_ENV:
        env.pop(name, None)
    # --monitor-interval: torchrun checks its workers every 3 s, so the surviving rank has time to
    # report its DistributedError before torchrun stops it.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "--monitor-interval=3", str(worker), mode, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


# ----------------------------------------------------------------------------------------------
# sharding


@pytest.mark.parametrize("n, world", [(12, 2), (13, 2), (10, 3), (2, 4), (1, 3)])
def test_shards_interleave_pad_and_have_equal_length(n, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    shards = [distributed.shard_rows(order, r, world) for r in range(world)]
    per_rank = -(-n // world)
    assert all(s.shape[0] == per_rank for s in shards)  # same number of steps on every rank
    padded = np.resize(order.numpy(), per_rank * world)  # DistributedSampler pads by repeating the start
    for r, s in enumerate(shards):
        np.testing.assert_array_equal(s.numpy(), padded[r::world])
    assert set(torch.cat(shards).tolist()) == set(range(n))  # every row is seen


def test_sharding_hand_worked_example():
    # 5 rows on 2 ranks: padded to [0 1 2 3 4 0]; rank 0 takes 0 2 4, rank 1 takes 1 3 0.
    assert distributed.shard_rows(torch.arange(5), 0, 2).tolist() == [0, 2, 4]
    assert distributed.shard_rows(torch.arange(5), 1, 2).tolist() == [1, 3, 0]


@pytest.mark.parametrize("world, b", [(2, 3), (4, 2)])
def test_global_batch_holds_the_rows_of_one_single_process_batch(world, b):
    n = world * b * 5
    order = torch.arange(n)  # shuffle=False
    shards = [distributed.shard_rows(order, r, world) for r in range(world)]
    for k in range(5):
        global_rows = sorted(torch.cat([s[k * b:(k + 1) * b] for s in shards]).tolist())
        assert global_rows == list(range(k * b * world, (k + 1) * b * world))


# ----------------------------------------------------------------------------------------------
# validation of arguments and environment


@pytest.mark.parametrize("value, expected", [(None, None), ("ddp", "ddp"), ("DDP", "ddp")])
def test_check_strategy_accepts(value, expected):
    assert distributed.check_strategy(value) == expected


@pytest.mark.parametrize("bad", ["dp", "fsdp", 2, True])
def test_check_strategy_rejects_unknown_names(bad):
    with pytest.raises(ConfigError, match="unknown strategy.*Valid strategy names: ddp"):
        distributed.check_strategy(bad)


def test_unknown_strategy_fails_in_fit_before_training():
    model = _small_model()
    with pytest.raises(ConfigError, match="Did you mean 'ddp'"):
        model.fit(*_data(), epochs=1, verbose=0, strategy="dpp")
    assert model.epochs_trained == 0


@pytest.mark.parametrize("text", ["0", "-5", "soon"])
def test_bad_timeout_env_is_a_distributed_error(monkeypatch, text):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, text)
    with pytest.raises(DistributedError, match="TRAINWELL_DIST_TIMEOUT.*positive number"):
        distributed.timeout_seconds()


def test_timeout_env_is_read(monkeypatch):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "2.5")
    assert distributed.timeout_seconds() == 2.5
    monkeypatch.delenv(distributed.TIMEOUT_ENV)
    assert distributed.timeout_seconds() == 1800.0


def test_partial_torchrun_environment_names_the_missing_variables(no_torchrun_env, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(DistributedError, match="LOCAL_RANK, MASTER_ADDR, MASTER_PORT.*torchrun"):
        distributed.init_process_group(torch.device("cpu"))


def test_no_process_group_means_rank_zero_of_one(no_torchrun_env, capsys):
    assert not distributed.is_initialized()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (0, 1, True)
    distributed.main_print("hello")
    assert capsys.readouterr().out == "hello\n"
    assert distributed.process_device("auto") == "auto"  # unchanged outside torchrun


def test_ddp_without_torchrun_trains_in_this_one_process(no_torchrun_env):
    x, y = _data()
    plain, ddp = _small_model(seed=3), _small_model(seed=3)
    h1 = plain.fit(x, y, batch_size=8, epochs=2, verbose=0)
    h2 = ddp.fit(x, y, batch_size=8, epochs=2, verbose=0, strategy="ddp")
    for a, b in zip(plain.get_weights(), ddp.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert h1.history == h2.history


# ----------------------------------------------------------------------------------------------
# rank-0-only output and lost workers, without a process group


def test_only_rank_zero_keeps_callbacks_that_print_or_write(tmp_path):
    run = distributed.DDPRun.__new__(distributed.DDPRun)
    stopper = EarlyStopping(monitor="loss")
    given = [stopper, CSVLogger(tmp_path / "h.csv"), ModelCheckpoint(str(tmp_path / "m.tw")), ProgbarLogger()]
    run.rank = 0
    assert run.for_this_rank(given, 1, "auto") == (given, 1, "auto")
    run.rank = 1
    assert run.for_this_rank(given, 1, "auto") == ([stopper], 0, "off")


def test_save_writes_nothing_on_other_ranks(tmp_path, monkeypatch):
    model = _small_model()
    monkeypatch.setattr(distributed, "is_main_process", lambda: False)
    model.save(tmp_path / "m.tw")
    model.save_weights(tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_gradient_all_reduce_becomes_a_distributed_error():
    run = distributed.DDPRun.__new__(distributed.DDPRun)
    run.rank, run.world_size, run.timeout = 1, 2, 30.0

    def lost(*args):
        raise RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer")

    def bug(*args):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(DistributedError, match="gradients.*rank 1 of 2.*timeout 30 s.*Connection reset"):
        run.guarded_step(lost)()
    with pytest.raises(RuntimeError, match="shapes") as info:  # other errors pass through unchanged
        run.guarded_step(bug)()
    assert not isinstance(info.value, DistributedError)


def test_validation_needs_a_row_per_process():
    run = distributed.DDPRun.__new__(distributed.DDPRun)
    run.rank, run.world_size = 0, 4
    val = (torch.zeros(3, 2), torch.zeros(3, 1), None)
    with pytest.raises(DataError, match="3 rows for 4 processes"):
        run.shard_validation(val)
    run.world_size = 2
    x, _, w = run.shard_validation((torch.arange(5.0)[:, None], torch.zeros(5, 1), None))
    assert x[:, 0].tolist() == [0.0, 2.0, 4.0] and w is None  # no padding: reduced metrics stay exact


# ----------------------------------------------------------------------------------------------
# a real process group of one, in this process


@pytest.fixture
def group_of_one(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in [("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"),
                        ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(port))]:
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "30")
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_ddp_on_a_group_of_one_equals_plain_training(group_of_one, tmp_path):
    x, y = _data()
    plain, ddp = _small_model(seed=5), _small_model(seed=5)
    kw = dict(batch_size=8, epochs=3, verbose=0, validation_split=0.25, shuffle=True)
    h1 = plain.fit(x, y, **kw)
    h2 = ddp.fit(x, y, strategy="ddp", callbacks=[CSVLogger(tmp_path / "h.csv")], **kw)
    assert distributed.is_initialized() and distributed.world_size() == 1
    for a, b in zip(plain.get_weights(), ddp.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for key in h1.history:
        np.testing.assert_allclose(h1.history[key], h2.history[key], rtol=1e-6)
    assert (tmp_path / "h.csv").read_text().count("\n") == 4  # header + 3 epochs, written by rank 0
    # After fit the model is plain again: no DDP hooks on its parameters.
    ddp.fit(x, y, batch_size=8, epochs=1, verbose=0)


def test_ddp_trains_a_two_input_graph_model_as_plain_training(group_of_one):
    from trainwell.layers import Concatenate, Input
    from trainwell.models import Model

    def build():
        set_random_seed(2)
        a, b = Input(shape=(2,)), Input(shape=(1,))
        out = Dense(1)(Concatenate()([Dense(4, activation="tanh")(a), b]))
        model = Model([a, b], out)
        model.compile(optimizer=SGD(learning_rate=0.05), loss="mse")
        return model

    x, y = _data()
    plain, ddp = build(), build()
    kw = dict(batch_size=8, epochs=2, verbose=0, shuffle=True)
    h1 = plain.fit([x[:, :2], x[:, 2:]], y, **kw)
    h2 = ddp.fit([x[:, :2], x[:, 2:]], y, strategy="ddp", **kw)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-6)
    for a, b in zip(plain.get_weights(), ddp.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_reduce_and_agree_on_a_group_of_one(group_of_one):
    from trainwell.training import EpochAccumulator

    model = _small_model()
    model.fit(*_data(), epochs=1, verbose=0, strategy="ddp")  # joins the group
    run = distributed.DDPRun(model, torch.device("cpu"))
    metric = model.compiled_metrics[0][1]
    acc = EpochAccumulator(model.compiled_metrics, torch.device("cpu"))
    acc.add(torch.tensor(0.5), 4)
    metric.update_state(torch.tensor([[1.0], [2.0]]), torch.tensor([[1.5], [1.0]]))  # mae 0.75
    run.reduce_accumulator(acc)
    assert acc.count == 4
    assert acc.results() == pytest.approx({"loss": 0.5, "mae": 0.75})
    assert run.agree(True) is True and run.agree(False) is False


# ----------------------------------------------------------------------------------------------
# torchrun: 2 CPU processes


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    worker = _write_worker(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    code, log = _torchrun(worker, "equal", out)
    if code != 0:  # once, a run failed here on a loaded machine and passed when repeated: retry once,
        # keeping the first log, so a real failure (it fails twice) still shows both.
        code, second = _torchrun(worker, "equal", out)
        log = f"first run:\n{log}\nsecond run:\n{second}"
    assert code == 0, log
    ranks = [json.loads((out / f"result-rank{r}.json").read_text()) for r in (0, 1)]
    helpers = runpy.run_path(str(worker))
    x, y = helpers["problem"]()
    for shuffle in (False, True):
        reference = helpers["build"](seed=1)
        # batch_size is per process: 2 ranks x 4 rows = one process with 8.
        history = reference.fit(x, y, batch_size=8, epochs=3, shuffle=shuffle, validation_split=0.25,
                                verbose=0)
        for rank in ranks:
            got = rank[str(shuffle)]
            for w_ref, w_got in zip(reference.get_weights(), got["weights"]):
                np.testing.assert_allclose(np.asarray(w_got), w_ref, rtol=1e-5, atol=1e-6)
            for key in ("loss", "mae", "val_loss", "val_mae"):
                np.testing.assert_allclose(got["history"][key], history.history[key], rtol=1e-5)
        csv_rows = (out / f"history-{shuffle}.csv").read_text().strip().splitlines()
        assert len(csv_rows) == 4
        loss_col = csv_rows[0].split(",").index("loss")
        np.testing.assert_allclose([float(r.split(",")[loss_col]) for r in csv_rows[1:]],
                                   history.history["loss"], rtol=1e-5)
    # One model file and one history per fit, however many processes; only rank 0 printed.
    assert sorted(p.name for p in out.iterdir()) == [
        "history-False.csv", "history-True.csv", "model-False.tw", "model-True.tw",
        "result-rank0.json", "result-rank1.json"]
    assert log.count("Epoch 1/3") == 2, log


@pytest.mark.slow
@pytest.mark.parametrize("mode, cause", [("kill", "Connection|closed|reset"), ("hang", "Timed out|timeout")])
def test_torchrun_losing_a_worker_fails_cleanly(tmp_path, mode, cause):
    worker = _write_worker(tmp_path)
    code, log = _torchrun(worker, mode, tmp_path, timeout_env="3", timeout=90)
    assert code != 0
    assert "DistributedError: A collective operation" in log, log
    assert "failed on rank 0 of 2" in log and "TRAINWELL_DIST_TIMEOUT" in log
    assert any(word.lower() in log.lower() for word in cause.split("|")), log


# ----------------------------------------------------------------------------------------------
# helpers


def _data(n=32):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[0.5], [-1.0], [2.0]])).astype("float32")


def _small_model(seed=0):
    set_random_seed(seed)
    model = Sequential([Dense(5, activation="relu", input_shape=(3,)), Dense(1)])
    model.compile(optimizer=SGD(learning_rate=0.05), loss="mse", metrics=["mae"])
    return model


STREAM_WORKER = textwrap.dedent('''
    import json, os, sys

    import numpy as np

    from trainwell import distributed
    from trainwell.layers import Dense
    from trainwell.models import Sequential
    from trainwell.optimizers import SGD
    from trainwell.utils import PyDataset, set_random_seed

    X = np.random.default_rng(0).normal(size=(48, 3)).astype("float32")
    Y = (X @ np.array([[1.0], [-2.0], [0.5]])).astype("float32")


    class Blocks(PyDataset):
        """Batch i = rows [4 i, 4 i + 4); records the batches this process read."""

        def __init__(self):
            super().__init__()
            self.read = []

        def __len__(self):
            return 12

        def __getitem__(self, index):
            self.read.append(index)
            return X[4 * index:4 * index + 4], Y[4 * index:4 * index + 4]


    def build():
        set_random_seed(1)
        model = Sequential([Dense(4, activation="tanh", input_shape=(3,)), Dense(1)])
        model.compile(optimizer=SGD(learning_rate=0.05), loss="mse")
        return model


    if __name__ == "__main__":
        data = Blocks()
        history = build().fit(data, epochs=2, shuffle=False, verbose=0, diagnostics="off", strategy="ddp")
        with open(os.path.join(sys.argv[2], f"rank{distributed.rank()}.json"), "w") as f:
            json.dump({"read": data.read, "loss": history.history["loss"]}, f)
''')


def test_torchrun_each_process_reads_its_own_pydataset_batches(tmp_path):
    worker = tmp_path / "stream_worker.py"
    worker.write_text(STREAM_WORKER)
    code, log = _torchrun(worker, "stream", tmp_path)
    if code != 0:  # as in the test above: a loaded machine once aborted a rank at exit; retry once
        code, second = _torchrun(worker, "stream", tmp_path)
        log = f"first run:\n{log}\nsecond run:\n{second}"
    assert code == 0, log
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # Batch 0 is read once more before the loop (it builds the model); then rank r reads batches
    # r, r + 2, ... each epoch, and nothing of the other rank's.
    assert ranks[0]["read"] == [0, 0, 2, 4, 6, 8, 10] + [0, 2, 4, 6, 8, 10]
    assert ranks[1]["read"] == [0, 1, 3, 5, 7, 9, 11] + [1, 3, 5, 7, 9, 11]
    # Two processes on 4-row batches = one process on the 8-row global batches.
    helpers = runpy.run_path(str(worker))
    reference = helpers["build"]().fit(helpers["X"], helpers["Y"], batch_size=8, epochs=2, shuffle=False,
                                       verbose=0)
    for rank in ranks:
        np.testing.assert_allclose(rank["loss"], reference.history["loss"], rtol=1e-5)
