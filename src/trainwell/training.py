"""The training loop: ``fit``, ``evaluate`` and ``predict`` over a compiled model.

This is the hot path. For the small models of the course every framework is dominated by
per-step overhead, so the loop is written for it:

- data becomes tensors on the device once; batches are index slices of a per-epoch
  permutation (no DataLoader, no per-batch host copies);
- loss and metrics accumulate on the device, with one ``.item()`` per epoch (each ``.item()``
  is a host-device sync point);
- per-batch callback hooks are dispatched only to callbacks that override them, and their
  ``logs`` are lazy, so nobody pays for a sync they did not ask for;
- a final softmax/sigmoid is fused with its cross-entropy (``log_softmax``), which is both
  faster and stable where Keras clips probabilities at 1e-7.

The autograd step is one visible function, ``train_step``; ``select_step`` is the one place
that chooses between it and the hand-fused Dense step of ``fastpath`` (same numbers, tested).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping

import numpy as np
import torch

from . import callbacks as callbacks_module
from . import data_adapters, distributed, fastpath
from . import losses as losses_module
from ._errors import ConfigError, DataError, NotCompiledError, check_positive_int, check_verbose, describe
from .data import check_lengths, prepare_weights, prepare_x, prepare_y, validation_slice, warn_if_sorted

# ----------------------------------------------------------------------------------------------
# devices


def resolve_device(device) -> torch.device:
    """'auto' → CUDA when available, else CPU; also 'cpu', 'cuda', 'cuda:N' or a torch.device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError("`device` expects 'auto', 'cpu', 'cuda' or 'cuda:N', "
                          f"received {describe(device)}.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"`device={device!r}` asks for a GPU, but torch sees no CUDA device here. "
                          "Use device='auto' (GPU when present) or device='cpu'.")
    return dev


# ----------------------------------------------------------------------------------------------
# the step


def fused_loss(model) -> tuple[object, bool]:
    """The loss the model trains with, and whether it takes logits (its final activation fused in).

    A final softmax + (sparse) categorical cross-entropy, or sigmoid + binary cross-entropy, become
    a cross-entropy on logits: log-space is stable and saves a kernel. Keras clips probabilities at
    1e-7 instead; results differ only beyond that clip. The loop, the doctor's probes and the
    learning-rate finder all take the loss from here, so they see the same gradients.
    """
    loss = model.compiled_loss
    last = model.layers[-1]
    act = getattr(last, "activation_name", None) if hasattr(last, "linear") else None
    kind = losses_module.kind(loss)
    pair = (act, "categorical" if kind == "sparse" else kind)
    if pair in (("softmax", "categorical"), ("sigmoid", "binary")) and not getattr(loss, "from_logits", True):
        return loss.with_logits(), True
    return loss, False


class StepContext:
    """What a step needs, resolved once per fit: the loss (fused or not) and the output activation."""

    def __init__(self, model):
        self.model = model
        self.loss_weight = float(model.loss_weights) if model.loss_weights is not None else 1.0
        self.loss, self.fused = fused_loss(model)
        if getattr(self.loss, "reduction", None) == "none":
            raise ConfigError(
                f"loss {self.loss.name!r} has reduction='none': one loss per sample, while training and "
                "evaluation need one number per batch. Compile with reduction='sum_over_batch_size' "
                "(the default), 'sum' or 'mean_with_sample_weight'.")
        last = model.layers[-1]
        self.output_activation = last.activation if self.fused else None
        self.regularized = [layer for layer in model.layers if layer.regularization_loss() is not None]
        self.metrics = model.compiled_metrics
        # Hooks for scaling (distributed.py): under DDP `call` is the DDP wrapper and `dist` its run
        # (a OneProcess, whose methods change nothing, otherwise); with precision='bf16-mixed' the
        # forward runs under autocast.
        self.call = model.call
        self.dist = distributed.OneProcess(model)
        self.autocast_dtype = distributed.autocast_dtype(getattr(model, "precision", None), model.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model output, as logits when the final activation is fused into the loss."""
        if self.autocast_dtype is None:
            return self.call(x, final_activation=not self.fused)
        # Mixed precision: layers run in bfloat16, the loss is computed on float32 outputs.
        with torch.autocast(self.model.device.type, dtype=self.autocast_dtype):
            out = self.call(x, final_activation=not self.fused)
        return out.float()

    def predictions(self, out: torch.Tensor) -> torch.Tensor:
        return self.output_activation(out) if self.fused else out

    def stacked_loss(self, y, out, penalty=None) -> torch.Tensor:
        """Per-candidate losses (C,) of stacked outputs (C, batch, units), as ``total_loss`` computes
        each candidate's (``batched``; ``penalty``: the candidates' weight penalties (C,), or None)."""
        values = self.loss.call(y, out)  # (C, batch): per-sample losses
        per = values.flatten(1).sum(1) / values[0].numel()  # Keras's sum_over_batch_size, per candidate
        if self.loss_weight != 1.0:
            per = per * self.loss_weight
        return per if penalty is None else per + penalty

    def total_loss(self, y, out, w) -> torch.Tensor:
        loss = self.loss(y, out, w)
        if self.loss_weight != 1.0:
            loss = loss * self.loss_weight
        for layer in self.regularized:
            loss = loss + layer.regularization_loss()
        return loss


def train_step(ctx: StepContext, optimizer, xb, yb, wb) -> torch.Tensor:
    """One optimisation step on a batch; returns the batch loss as a (detached) device tensor."""
    optimizer.zero_grad()
    out = ctx.forward(xb)
    loss = ctx.total_loss(yb, out, wb)
    loss.backward()
    optimizer.step()
    if ctx.metrics:
        with torch.no_grad():
            pred = ctx.predictions(out.detach())
            for _, metric in ctx.metrics:
                metric.update_state(yb, pred, wb if metric.weighted else None)
    return loss.detach()


class BatchStepCache:
    """``train_on_batch``'s StepContext and step, kept from one call to the next while nothing they
    depend on changed: setting up the fused step costs several times the step itself."""

    def __init__(self):
        self.key = self.ctx = self.step = None

    @staticmethod
    def _key(model, weighted: bool) -> tuple:
        # The optimizer's iteration count tells whether anything else (a fit) stepped in between.
        return (model._version, model.optimizer, model.optimizer.iterations, model.compiled_loss,
                model.loss_weights, tuple(map(id, model.compiled_metrics)), model.precision, weighted)

    def get(self, model, weighted: bool):
        """The StepContext and step for one ``train_on_batch`` call."""
        if self.ctx is None or self.key != self._key(model, weighted):
            self.ctx = StepContext(model)
            # Tell select_step about weights: the fused Dense step has none.
            self.step = select_step(self.ctx, model.optimizer, weighted=weighted)
        return self.ctx, self.step

    def stepped(self, model, weighted: bool) -> None:
        """Call after the step: it moved the optimizer's iteration count, which is part of the key."""
        self.key = self._key(model, weighted)


# Inputs up to this many elements are permuted once per epoch instead of gathered per batch.
EPOCH_GATHER_ELEMENTS = 1 << 22
# Rows per validation batch inside fit when `validation_batch_size` is not given.
VALIDATION_ROWS = 8192
# Set to False to train every model with the plain autograd step (the parity tests do).
FUSED_STEP = True
_log = logging.getLogger("trainwell.training")


def select_step(ctx: StepContext, optimizer=None, weighted: bool = False):
    """The one place where the step is chosen: ``fastpath.FusedStep`` when it covers the model.

    Anything it does not cover (``fastpath.FALLBACKS``: other layers, custom losses, ...) falls
    back to ``train_step``; the choice and its reason (naming the layer or option) go to the
    debug log of the 'trainwell.training' logger.

    Args:
        ctx: the fit's StepContext.
        optimizer: the trainwell optimizer (defaults to the model's).
        weighted: whether batches carry sample or class weights.

    Returns:
        A callable ``step(ctx, optimizer, xb, yb, wb) -> loss``.
    """
    flat_update = False
    if ctx.dist.parallel or ctx.autocast_dtype is not None:
        reason = "DDP averages gradients in autograd hooks; autocast needs autograd too"
    elif not FUSED_STEP:
        reason = "training.FUSED_STEP is False"
    else:
        reason = fastpath.unsupported(ctx, optimizer or ctx.model.optimizer, weighted)
        flat_update = ctx.model.device.type == "cpu"
    if reason is None:
        _log.debug("fit: fused step (no autograd graph)")
        return fastpath.FusedStep(ctx)
    _log.debug("fit: plain autograd step, because %s", reason)
    if flat_update:  # one CPU process, float32: autograd's gradients, the flat optimizer update
        return fastpath.FlatUpdateStep(train_step)
    return train_step


# Multiply-adds per batch below which fit runs on one intra-op thread. On small
# matrices a second thread costs more in synchronisation than it saves, and when another process
# keeps the CPU busy every operation waits for a descheduled thread: on 2 shared cores a wages fit
# took 20 s with 2 threads and 0.5 s with 1 (bench/NOTES.md).
SMALL_WORK_MACS = 2_000_000


def limit_threads(model, rows: int) -> int | None:
    """Use one torch thread when ``rows`` rows through ``model`` are small work (SMALL_WORK_MACS).

    Returns:
        The thread count to give back to ``restore_threads`` afterwards, or None if unchanged.
    """
    previous = torch.get_num_threads()
    # Kernels only (dim 2); layers without one add no matrix multiply. Cheaper than model.parameters().
    macs_per_row = sum(k.numel() for k in (getattr(layer, "kernel", None) for layer in model.layers)
                       if k is not None)
    if previous == 1 or rows * macs_per_row >= SMALL_WORK_MACS:
        return None
    torch.set_num_threads(1)
    return previous


def restore_threads(previous: int | None) -> None:
    if previous is not None:
        torch.set_num_threads(previous)


# ----------------------------------------------------------------------------------------------
# logs


class EpochAccumulator:
    """Running loss (weighted by batch size, as Keras) and metrics, kept on the device.

    Args:
        metrics: ``(name, metric)`` pairs, reset here; with ``candidates`` one such list per candidate.
        device: where the running sums live.
        candidates: None for one model; C for ``batched``'s C stacked models, whose loss is a (C,)
            vector and whose ``results`` are one dict per candidate.
    """

    def __init__(self, metrics, device, candidates: int | None = None):
        self.candidates = candidates
        self.groups = [metrics] if candidates is None else list(metrics)
        self.metrics = metrics
        self.loss_sum = torch.zeros(() if candidates is None else (candidates,), device=device)
        self.count = 0
        for group in self.groups:
            for _, metric in group:
                metric.reset_state()

    def add(self, loss: torch.Tensor, n: int) -> None:
        self.loss_sum.add_(loss, alpha=n)  # one kernel, where `+= loss * n` is two
        self.count += n

    def results(self, prefix: str = ""):
        """The logs (a dict, or one per candidate), with one host sync for everything."""
        losses = (self.loss_sum / max(self.count, 1)).reshape(-1)
        values = [losses] + [m.result().float().reshape(1) for group in self.groups for _, m in group]
        floats = torch.cat(values).tolist()
        logs, k = [], losses.shape[0]
        for c, group in enumerate(self.groups):
            entry = {prefix + "loss": floats[c]}
            for name, _ in group:
                entry[prefix + name] = floats[k]
                k += 1
            logs.append(entry)
        return logs[0] if self.candidates is None else logs


class BatchLogs(Mapping):
    """Lazy per-batch logs: values are computed (and the device synced) only when read."""

    def __init__(self, acc: EpochAccumulator, batch: int, size: int):
        self._acc, self._batch, self._size = acc, batch, size
        self._cache = None

    def _values(self) -> dict:
        if self._cache is None:
            self._cache = {"batch": self._batch, "size": self._size, **self._acc.results()}
        return self._cache

    def __getitem__(self, key):
        return self._values()[key]

    def __iter__(self):
        return iter(self._values())

    def __len__(self):
        return len(self._values())


# ----------------------------------------------------------------------------------------------
# fit


def _epoch_order(n: int, shuffle, seed: int, device) -> torch.Tensor | None:
    """Row order of one epoch, drawn from a generator seeded per epoch so resumed runs repeat it."""
    if not shuffle:
        return None
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen).to(device)


def fit(model, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
        validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
        initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
        validation_freq=1, diagnostics="auto", device=None, strategy=None, precision=None, doctor=None):
    """Train ``model``; see ``Sequential.fit`` for the arguments. Returns a ``History``.

    ``doctor(model, mode, data) -> Callback | None`` builds the training doctor's monitor for
    ``diagnostics=mode``: ``Sequential.fit`` passes ``diagnostics.monitor_for_fit``. The doctor
    sits above this module in the layer order (it uses this loop's step), so it comes in as an
    argument rather than an import. None: no doctor.
    """
    if model.optimizer is None:
        raise NotCompiledError("You must call compile() before fit(), e.g. "
                               "model.compile(optimizer='adam', loss='mean_squared_error').")
    if y is None and not data_adapters.is_batch_source(x):
        raise DataError("fit() needs targets: call fit(x, y, ...).")
    batch_size = 32 if batch_size is None else check_positive_int(batch_size, "batch_size", "fit()")
    epochs = check_positive_int(epochs, "epochs", "fit()") if epochs != 0 else 0
    verbose = check_verbose(verbose)
    if shuffle not in (True, False, "batch"):
        raise ConfigError(f"`shuffle` expects True or False, received {describe(shuffle)}.")
    strategy = distributed.check_strategy(strategy)
    if precision is not None:
        model.precision = distributed.check_precision(precision)
    dev = model.set_device(distributed.process_device(device) if strategy else device)
    loop_args = dict(batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                     shuffle=shuffle,
                     initial_epoch=initial_epoch, validation_freq=validation_freq, diagnostics=diagnostics,
                     strategy=strategy, doctor=doctor)

    if data_adapters.is_batch_source(x) or steps_per_epoch is not None or validation_steps is not None:
        train, val = _streams_for_fit(model, x, y, sample_weight, class_weight, validation_split,
                                      validation_data, batch_size, shuffle, steps_per_epoch, validation_steps,
                                      validation_batch_size, dev)
        return _fit_loop(model, train, None, None, val, class_weight=class_weight,
                         validation_batch_size=validation_batch_size or batch_size, **loop_args)

    x_tr, y_tr, w_tr, val = split_data(model, x, y, dev, sample_weight=sample_weight,
                                       class_weight=class_weight, validation_data=validation_data,
                                       validation_split=validation_split)
    return _fit_loop(model, x_tr, y_tr, w_tr, val, **loop_args,
                     # Validation batches only bound memory (the mean loss is the same up to rounding),
                     # so by default they are large: one forward pass instead of dozens per epoch.
                     validation_batch_size=validation_batch_size or max(batch_size, VALIDATION_ROWS))


def split_data(model, x, y, device, *, sample_weight=None, class_weight=None, validation_data=None,
               validation_split=0.0):
    """The data of one fit as tensors on ``device``, checked once: ``(x, y, w, val)``.

    ``w`` combines ``sample_weight`` and ``class_weight`` (None when neither is given); ``val`` is
    None or ``(x_val, y_val, w_val)``: ``validation_data`` when given, else the *last*
    ``validation_split`` fraction of the rows, taken before any shuffling, with their
    ``sample_weight`` but not the class weights, which weigh training only (as Keras does). The
    model is built from ``x`` when needed and its metrics are resolved (they depend on its output).
    ``fit`` and ``batched.fit_batched`` both split here.
    """
    x_all = prepare_x(model, x, "x", device)
    model.compile_metrics()
    y_all = prepare_y(model, y, "y", device)
    check_lengths(x_all, y_all)
    w_all = prepare_weights(x_all.shape[0], sample_weight, class_weight, y_all, device)
    if validation_data is not None:
        vx, vy, vw = _unpack_validation(validation_data)
        x_val = prepare_x(model, vx, "validation_data x", device)
        y_val = prepare_y(model, vy, "validation_data y", device)
        check_lengths(x_val, y_val, "validation_data x", "validation_data y")
        return x_all, y_all, w_all, (x_val, y_val, prepare_weights(x_val.shape[0], vw, None, y_val, device))
    if not validation_split:
        return x_all, y_all, w_all, None
    at = validation_slice(x_all.shape[0], validation_split)
    warn_if_sorted(y_all, validation_split)
    w_val = _validation_weights(w_all, sample_weight, class_weight, y_all, device)
    return x_all[:at], y_all[:at], None if w_all is None else w_all[:at], \
        (x_all[at:], y_all[at:], None if w_val is None else w_val[at:])


def _validation_weights(w_all, sample_weight, class_weight, y_all, device):
    """The weights the validation rows keep: ``sample_weight`` only (class weights are for training)."""
    if class_weight is None:
        return w_all
    return prepare_weights(y_all.shape[0], sample_weight, None, y_all, device)


def _streams_for_fit(model, x, y, sample_weight, class_weight, validation_split, validation_data, batch_size,
                     shuffle, steps_per_epoch, validation_steps, validation_batch_size, dev):
    """Training and validation data as ``BatchStream``s (batched sources, or arrays with step counts).

    The first batch is read here so the model is built and 'crossentropy'/'accuracy' are resolved
    before the loop starts, as with arrays.
    """
    seed, val_rows = model.shuffle_seed, validation_batch_size or batch_size
    val = None
    if data_adapters.is_batch_source(x):
        data_adapters.check_no_targets(y, sample_weight, x, "fit()")
        if validation_split:
            raise ConfigError("fit(): `validation_split` needs x and y as arrays; x is a "
                              f"{type(x).__name__}. "
                              "Pass validation_data=(x_val, y_val) or another batched source instead.")
        train = data_adapters.BatchStream(x, batch_size=batch_size, shuffle=shuffle, steps=steps_per_epoch,
                                          seed=seed)
    else:  # arrays with step counts: Keras's steps_per_epoch continues from where the last epoch stopped
        tensors = (prepare_x(model, x, "x", dev), prepare_y(model, y, "y", dev))
        check_lengths(*tensors)
        tensors += (prepare_weights(tensors[0].shape[0], sample_weight, class_weight, tensors[1], dev),)
        if validation_split and validation_data is None:
            split_at = validation_slice(tensors[0].shape[0], validation_split)
            w_val = _validation_weights(tensors[2], sample_weight, class_weight, tensors[1], dev)
            val = data_adapters.arrays_stream(tuple(None if t is None else t[split_at:]
                                                    for t in tensors[:2] + (w_val,)),
                                              batch_size=val_rows, steps=validation_steps,
                                              name="validation_data")
            tensors = tuple(None if t is None else t[:split_at] for t in tensors)
        train = data_adapters.arrays_stream(tensors, batch_size=batch_size, shuffle=shuffle,
                                            steps=steps_per_epoch, seed=seed)
    _stream_batch(model, train, train.peek(), dev, class_weight)  # builds the model, resolves the loss
    model.compile_metrics()
    if data_adapters.is_batch_source(validation_data):
        val = data_adapters.BatchStream(validation_data, batch_size=val_rows, steps=validation_steps,
                                        name="validation_data")
    elif validation_data is not None:
        vx, vy, vw = _unpack_validation(validation_data)
        vx = prepare_x(model, vx, "validation_data x", dev)
        vy = prepare_y(model, vy, "validation_data y", dev)
        check_lengths(vx, vy, "validation_data x", "validation_data y")
        val = data_adapters.arrays_stream((vx, vy, prepare_weights(vx.shape[0], vw, None, vy, dev)),
                                          batch_size=val_rows, steps=validation_steps, name="validation_data")
    return train, val


def _stream_batch(model, stream, batch, dev, class_weight=None) -> tuple:
    """One raw batch of ``stream`` as ``(x, y, sample_weight)`` tensors on ``dev``, checked."""
    if stream.prepared:  # rows of arrays prepared once (arrays given with step counts)
        return batch
    where = stream.name
    xb, yb, wb = data_adapters.split_batch(batch, where)
    if yb is None:
        raise DataError(f"`{where}` gave a batch without targets. Yield (x, y) or (x, y, sample_weight) "
                        "batches.")
    xt, yt = prepare_x(model, xb, f"{where} batch", dev), prepare_y(model, yb, f"{where} batch targets", dev)
    check_lengths(xt, yt, f"{where} batch", f"{where} batch targets")
    return xt, yt, prepare_weights(xt.shape[0], wb, class_weight, yt, dev)


def _unpack_validation(validation_data):
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise DataError("`validation_data` expects a tuple (x_val, y_val) or (x_val, y_val, sample_weight), "
                        f"received {describe(validation_data)}. Pass validation_data=(x_val, y_val).")
    vx, vy, *rest = validation_data
    return vx, vy, rest[0] if rest else None


def _make_callbacks(model, callbacks, verbose, epochs, steps, diagnostics, doctor, data):
    from .callbacks import CallbackList, ProgbarLogger

    user = list(callbacks or [])
    for cb in user:
        if not isinstance(cb, callbacks_module.Callback):
            raise ConfigError(f"`callbacks` expects Callback instances, received {describe(cb)}.")
    extra = []
    monitor = _diagnostics_callback(model, diagnostics, doctor, data)
    if monitor is not None:
        monitor.peers = user  # the doctor reads what they did (EarlyStopping restoring the best weights)
        extra.append(monitor)
    if verbose:
        extra.append(ProgbarLogger(verbose=verbose))
    cbs = CallbackList(user + extra, model=model, add_history=True, verbose=verbose, epochs=epochs,
                       steps=steps)
    return cbs, cbs.history, monitor


def _diagnostics_callback(model, mode, doctor, data):
    """The training doctor's monitor for this fit, or None when diagnostics are off."""
    if mode in (None, False, "off"):
        return None
    if mode not in ("auto", "full", True):
        raise ConfigError(f"`diagnostics` expects 'auto', 'full' or 'off', received {describe(mode)}. "
                          "Pass diagnostics='off' to train without the training doctor.")
    return None if doctor is None else doctor(model, "full" if mode == "full" else "auto", data)


def _fit_loop(model, x, y, w, val, *, batch_size, epochs, verbose, callbacks, shuffle, initial_epoch,
              validation_batch_size, validation_freq, diagnostics, strategy=None, doctor=None,
              class_weight=None):
    """Train on data already checked and split by ``fit``; returns the ``History``.

    In order: the StepContext (loss fusion), the distributed run (``ctx.dist``: a ``OneProcess``
    that changes nothing, or DDP's sharding and collectives), the step (``select_step``), the
    optimizer, the callbacks (History first, the doctor's monitor and the progress bar last), the
    resume point (``_resume_point``); then per epoch: ``_train_epoch``, validation on the epochs
    ``validation_freq`` selects, ``on_epoch_end`` and the stop check. Ctrl-C ends the fit with the
    finished epochs' history; any other error still closes the callbacks. At the end the doctor's
    findings go to ``history.diagnosis`` and a NaN/inf loss to a warning.

    Args:
        x, y, w: training inputs, targets, per-sample weights (or None), on the model's device; or
            ``x`` a ``data_adapters.BatchStream`` of raw batches (then ``y`` and ``w`` are None and
            ``class_weight`` applies per batch).
        val: ``(x_val, y_val, w_val)`` or None.
        The other arguments are ``fit``'s, checked.
    """
    ctx = StepContext(model)
    streamed = isinstance(x, data_adapters.BatchStream)
    n = None if streamed else x.shape[0]
    ctx.dist = distributed.start(model, model.device, strategy)  # the DDP wrapper lives as long as ctx
    ctx.call = ctx.dist.forward
    if streamed:  # under DDP each process reads its own batches
        for stream in (x, val) if isinstance(val, data_adapters.BatchStream) else (x,):
            ctx.dist.shard_stream(stream)
    else:
        n, val = ctx.dist.shard_length(n), ctx.dist.shard_validation(val)
    callbacks, verbose, diagnostics = ctx.dist.for_this_rank(callbacks, verbose, diagnostics)
    if streamed:
        steps = x.num_batches
        first = _stream_batch(model, x, x.peek(), model.device, class_weight)
        # Whether batches are weighted, and their real size (limit_threads below needs it: a
        # PyDataset or DataLoader makes its own batches, whatever batch_size fit was given).
        w, batch_size = first[2], first[0].shape[0]
        # The doctor probes a few batches (it reads nothing when diagnostics are off).
        data = None if diagnostics in (None, False, "off") else _probe(model, x, class_weight)
    else:
        steps, data = -(-n // batch_size), (x, y, val)
    step = select_step(ctx, model.optimizer, weighted=w is not None)
    step = ctx.dist.guarded_step(step)
    model.build_optimizer()
    cbs, history, monitor = _make_callbacks(model, callbacks, verbose, epochs, steps, diagnostics,
                                            doctor, data=data)
    model.stop_training = False
    model.history = history
    cbs.on_train_begin()
    initial_epoch = _resume_point(model, initial_epoch)
    logs: dict = {}
    epoch = initial_epoch
    threads = limit_threads(model, batch_size)
    try:
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            # Keras 3 orders epoch logs by name, training keys before the val_ ones.
            if streamed:
                train_logs = _train_stream_epoch(model, ctx, step, cbs, x, class_weight)
                if x.ran_out:  # Keras: "Your input ran out of data; interrupting training."
                    break
            else:
                train_logs = _train_epoch(model, ctx, step, cbs, x, y, w, batch_size, shuffle, epoch)
            logs = dict(sorted(train_logs.items()))
            if val is not None and _is_validation_epoch(epoch, validation_freq):
                if isinstance(val, data_adapters.BatchStream):
                    val_logs = _evaluate_stream(model, ctx, val, prefix="val_")
                else:
                    val_logs = _evaluate_tensors(model, ctx, *val, validation_batch_size, prefix="val_")
                logs.update(sorted(val_logs.items()))
            model.epochs_trained += 1
            cbs.on_epoch_end(epoch, logs)
            model.stop_training = ctx.dist.agree(model.stop_training)  # all ranks stop, or none
            if model.stop_training:
                break
    except KeyboardInterrupt:
        # Nothing is lost: callbacks still see on_train_end (EarlyStopping restores its best weights)
        # and the history of the finished epochs is returned.
        history.interrupted = True
        warnings.warn(f"fit() interrupted during epoch {epoch + 1}; returning the history of the "
                      f"{len(history.epoch)} finished epoch(s).", RuntimeWarning, stacklevel=3)
    except BaseException:
        cbs.on_train_end(logs)  # close progress bars and log files before the error propagates
        raise
    finally:
        restore_threads(threads)
    cbs.on_train_end(logs)
    if monitor is not None:
        history.diagnosis = monitor.findings()
        summary = monitor.summary() if verbose else ""
        if summary:  # a few lines naming each problem and its fix; nothing for a healthy run
            print(summary)
    _warn_if_diverged(history)
    return history


def _resume_point(model, initial_epoch: int) -> int:
    """Apply what ``load_model`` or ``BackupAndRestore.on_train_begin`` restored; return the first epoch.

    torch's CPU random state (which Dropout draws from) is put back here, at the start of the fit,
    rather than at load time, so loading a model never disturbs the caller's random stream.
    """
    state = model._resume_rng_state
    if state is not None:
        torch.set_rng_state(state)
        model._resume_rng_state = None
    override = model._initial_epoch_override
    if override is not None:
        model._initial_epoch_override = None
        return max(initial_epoch, int(override))
    return initial_epoch


def _is_validation_epoch(epoch: int, validation_freq) -> bool:
    if isinstance(validation_freq, int):
        return (epoch + 1) % validation_freq == 0
    return (epoch + 1) in validation_freq


def _train_epoch(model, ctx, step, cbs, x, y, w, batch_size, shuffle, epoch) -> dict:
    if not model.training:  # train() walks every module
        model.train()
    n = x.shape[0]
    order = _epoch_order(n, shuffle, model.shuffle_seed + model.epochs_trained, x.device)
    order = ctx.dist.shard(order, n, x.device)  # under DDP: this rank's rows of the same permutation
    n = n if order is None else order.shape[0]
    if order is not None and x.numel() <= EPOCH_GATHER_ELEMENTS:
        # Small data: one gather for the whole epoch, then batches are free slices (two fewer
        # kernels per step). Large data keeps per-batch gathers: this copy would add to peak memory.
        x, y = x.index_select(0, order), y.index_select(0, order)
        w = None if w is None else w.index_select(0, order)
        order = None
    acc = EpochAccumulator(ctx.metrics, x.device)
    batch_hooks = cbs.needs_batch_hooks
    gather = None if order is None else BatchGather((x, y, w), batch_size)
    for b, start in enumerate(range(0, n, batch_size)):
        stop = min(start + batch_size, n)
        if order is None:
            xb, yb = x[start:stop], y[start:stop]
            wb = None if w is None else w[start:stop]
        else:
            xb, yb, wb = gather(order[start:stop])
        if batch_hooks:
            cbs.on_train_batch_begin(b)
        loss = step(ctx, model.optimizer, xb, yb, wb)
        acc.add(loss, stop - start)
        if batch_hooks:
            cbs.on_train_batch_end(b, BatchLogs(acc, b, stop - start))
            # Under DDP every rank must run every step (ranks differ in batch hooks: only rank 0
            # has a progress bar), so a stop asked mid-epoch takes effect at the epoch's end.
            if model.stop_training and not ctx.dist.parallel:
                break
    ctx.dist.reduce_accumulator(acc)  # under DDP: one all_reduce per epoch for the loss and metrics
    ctx.dist.sync_buffers()
    return acc.results()


def _train_stream_epoch(model, ctx, step, cbs, stream, class_weight) -> dict:
    """``_train_epoch`` over a BatchStream: each raw batch becomes tensors, then the same step."""
    if not model.training:
        model.train()
    acc = EpochAccumulator(ctx.metrics, model.device)
    batch_hooks = cbs.needs_batch_hooks
    for b, batch in enumerate(stream.epoch()):
        xb, yb, wb = _stream_batch(model, stream, batch, model.device, class_weight)
        if batch_hooks:
            cbs.on_train_batch_begin(b)
        acc.add(step(ctx, model.optimizer, xb, yb, wb), xb.shape[0])
        if batch_hooks:
            cbs.on_train_batch_end(b, BatchLogs(acc, b, xb.shape[0]))
            if model.stop_training and not ctx.dist.parallel:
                break
    ctx.dist.reduce_accumulator(acc)
    ctx.dist.sync_buffers()
    return acc.results()


def _probe(model, stream, class_weight, batches: int = 4) -> tuple:
    """The first few batches of ``stream`` as ``(x, y, None)`` tensors: what the training doctor probes."""
    parts = [_stream_batch(model, stream, batch, model.device, class_weight)
             for batch in stream.probe(batches)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), None


class BatchGather:
    """Rows of several tensors picked by index into buffers reused for every batch of an epoch.

    A fresh batch of large data is a fresh allocation of hundreds of KB per tensor and step, which
    the C allocator serves with new pages; each page costs a fault when first written (~0.5 ms
    per batch of 1024 x 100 floats here). The step never keeps a batch beyond its call.

    Args:
        tensors: the epoch's tensors (None entries stay None).
        rows: the batch size.
    """

    def __init__(self, tensors, rows: int):
        self.tensors = tensors
        self.buffers = [None if t is None else t.new_empty((min(rows, t.shape[0]), *t.shape[1:]))
                        for t in tensors]

    def __call__(self, idx: torch.Tensor) -> list:
        n = idx.shape[0]
        return [None if t is None else torch.index_select(t, 0, idx, out=buf[:n])
                for t, buf in zip(self.tensors, self.buffers)]


def divergence_message(losses) -> str | None:
    """What to say when a run's training loss ended as NaN or inf (None when it did not).

    ``fit`` warns with it; ``batched`` and ``experiments`` record it as the run's error.

    Args:
        losses: the per-epoch training losses.
    """
    if not losses or math.isfinite(losses[-1]):
        return None
    epoch = next(i for i, value in enumerate(losses) if not math.isfinite(value)) + 1
    return (f"diverged: the training loss became {losses[epoch - 1]} at epoch {epoch}. The learning rate is "
            "probably too high, or the inputs are not scaled: try a 10x smaller learning_rate or a "
            "Normalization layer.")


def _warn_if_diverged(history) -> None:
    message = divergence_message(history.history.get("loss", []))
    if message is not None:
        warnings.warn(message, RuntimeWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------------
# evaluate and predict


def _evaluate_tensors(model, ctx, x, y, w, batch_size, prefix="") -> dict[str, float]:
    acc = EpochAccumulator(ctx.metrics, x.device)
    forward = None
    if ctx.call == model.call and ctx.autocast_dtype is None:  # one process, float32: the cheap plan
        forward = fastpath.inference_forward(model, logits=ctx.fused)
    if forward is None:
        forward = ctx.forward
        model.eval()
    # else: a Dense-only plan runs the same in both modes, and eval()/train() walk every module
    # twice per epoch (~0.1 ms), so the model stays in training mode.
    validate(ctx, forward, acc, x, y, w, batch_size)
    ctx.dist.reduce_accumulator(acc)
    return acc.results(prefix)


def validate(ctx, forward, acc, x, y, w, batch_size: int, stacked=None) -> None:
    """Add the loss and metrics of ``(x, y, w)``, in batches through ``forward``, to ``acc`` (no gradients).

    Args:
        ctx: the fit's StepContext (loss, fusion, metrics).
        forward: outputs (logits when ``ctx.fused``) for a batch of inputs.
        acc: the ``EpochAccumulator`` to add to.
        stacked: None for one model; for ``batched``'s C models ``(C, penalty, update_metrics)``:
            every batch goes to all C (inputs expanded to (C, n, ...)), the losses are per
            candidate (plus ``penalty``, (C,) or None) and ``update_metrics(y, predictions)``
            updates the candidates' own metrics.
    """
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            stop = min(start + batch_size, x.shape[0])
            xb, yb = x[start:stop], y[start:stop]
            wb = None if w is None else w[start:stop]
            if stacked is None:
                out = forward(xb)
                acc.add(ctx.total_loss(yb, out, wb), stop - start)
                if ctx.metrics:
                    pred = ctx.predictions(out)
                    for _, metric in ctx.metrics:
                        metric.update_state(yb, pred, wb if metric.weighted else None)
            else:
                count, penalty, update_metrics = stacked
                yb = yb.expand(count, *yb.shape)
                out = forward(xb.expand(count, *xb.shape))
                acc.add(ctx.stacked_loss(yb, out, penalty), stop - start)
                update_metrics(yb, ctx.predictions(out))


def _evaluate_stream(model, ctx, stream, prefix="") -> dict[str, float]:
    """``_evaluate_tensors`` over a BatchStream (one epoch of it: ``steps`` batches or one pass)."""
    acc = EpochAccumulator(ctx.metrics, model.device)
    model.eval()
    stream.restart()
    with torch.no_grad():
        for batch in stream.epoch():
            xb, yb, wb = _stream_batch(model, stream, batch, model.device)
            out = ctx.forward(xb)
            acc.add(ctx.total_loss(yb, out, wb), xb.shape[0])
            pred = ctx.predictions(out)
            for _, metric in ctx.metrics:
                metric.update_state(yb, pred, wb if metric.weighted else None)
    ctx.dist.reduce_accumulator(acc)
    return acc.results(prefix)


def evaluate(model, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
             callbacks=None, return_dict=False, device=None):
    """Loss and metrics on ``(x, y)``: a float, ``[loss, *metrics]``, or a dict with ``return_dict``."""
    if model.optimizer is None:
        raise NotCompiledError("You must call compile() before evaluate(), e.g. "
                               "model.compile(optimizer='adam', loss='mean_squared_error').")
    streamed = data_adapters.is_batch_source(x)
    if y is None and not streamed:
        raise DataError("evaluate() needs targets: call evaluate(x, y).")
    batch_size = 32 if batch_size is None else check_positive_int(batch_size, "batch_size", "evaluate()")
    verbose = check_verbose(verbose)
    dev = model.set_device(device)
    if streamed:
        data_adapters.check_no_targets(y, sample_weight, x, "evaluate()")
        stream = data_adapters.BatchStream(x, batch_size=batch_size, steps=steps)
        _stream_batch(model, stream, stream.peek(), dev)  # builds the model, resolves the loss
        model.compile_metrics()
        logs = _evaluate_stream(model, StepContext(model), stream)
    else:
        xt = prepare_x(model, x, "x", dev)
        model.compile_metrics()
        yt = prepare_y(model, y, "y", dev)
        check_lengths(xt, yt)
        wt = prepare_weights(xt.shape[0], sample_weight, None, yt, dev)
        if steps is not None:  # Keras: only the first `steps` batches
            rows = check_positive_int(steps, "steps", "evaluate()") * batch_size
            xt, yt, wt = xt[:rows], yt[:rows], None if wt is None else wt[:rows]
        logs = _evaluate_tensors(model, StepContext(model), xt, yt, wt, batch_size)
    if verbose:
        print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def predict(model, x, batch_size=None, verbose="auto", steps=None, callbacks=None, device=None) -> np.ndarray:
    """Model outputs for ``x`` as a float32 numpy array of shape (n_samples, units)."""
    if batch_size is None and device is None and type(x) is np.ndarray:
        out = fastpath.predict_array(model, x, PREDICT_ROWS)  # Dense-only CPU models: the forward alone
        if out is not None:
            return out
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size", "predict()")
    if data_adapters.is_batch_source(x):
        return _predict_stream(model, data_adapters.BatchStream(x, batch_size=batch_size or 32, steps=steps),
                               model.set_device(device))
    xt = prepare_x(model, x, "x", model.set_device(device))  # NaN/inf get their error here
    if steps is not None:  # Keras: only the first `steps` batches
        xt = xt[:check_positive_int(steps, "steps", "predict()") * (batch_size or 32)]
    forward = fastpath.inference_forward(model) or model.call
    if model.training:  # eval() walks every module; skip it when nothing changed since the last call
        model.eval()
    chunk = batch_size or PREDICT_ROWS
    # No thread policy here (limit_threads is for fit): a predict is one matrix product per layer,
    # so a second thread synchronises a few times per call, not thousands of times as a fit does,
    # and on a quiet machine it made bulk predict faster even for small models (bench/NOTES.md, 8).
    with torch.inference_mode():
        if xt.shape[0] <= chunk:
            out = forward(xt)
        else:
            out = torch.cat([forward(xt[i:i + chunk]) for i in range(0, xt.shape[0], chunk)])
    return out.cpu().numpy()


def _predict_stream(model, stream, dev) -> np.ndarray:
    """Outputs for every batch of one epoch of ``stream`` (batches ``x``, or tuples whose first item is x)."""
    outputs = []
    with torch.inference_mode():
        for batch in stream.epoch():
            xb = prepare_x(model, data_adapters.split_batch(batch, "x")[0], "x batch", dev)
            if model.training:
                model.eval()
            outputs.append(model.call(xb))
    if not outputs:
        raise DataError("predict(): `x` yielded no batches. Check that a generator was not already used up.")
    return torch.cat(outputs).cpu().numpy()


# Rows per forward pass in predict: whole arrays at once up to a memory-friendly chunk.
PREDICT_ROWS = 65536


