"""The monitor: a callback that watches a fit and hands its record to the detectors.

It overrides no per-batch hook, so the loop never dispatches batches to it. All its work
happens at a few epoch boundaries chosen in advance (``probe_epochs``):

- before training: the static checks' statistics and a first probe;
- at a probe epoch: a kernel snapshot at its start, update-to-weight ratios and a probe at its end
  (in 'auto' mode the first epoch gets the ratios only: the probe before training stands for it);
- after training: a last probe.

Every epoch it only copies the epoch's logs (floats) and the learning rate. A probe is one
forward and backward pass on 256 fixed training rows. Nothing it does may stop a fit: each hook
catches its own errors, which become 'info' findings.
"""

from __future__ import annotations

import math

from .. import losses as losses_module
from ..callbacks import Callback
from .detectors import run_detectors
from .evidence import Diagnosis
from .findings import format_findings
from .probes import (
    baseline_loss,
    describe_layers,
    input_range,
    input_stats,
    kernel_snapshot,
    plan_probe,
    probe_rows,
    take_probe,
    target_stats,
    update_ratios,
)
from .record import RunRecord

MODES = ("auto", "full", "ends")


def probe_epochs(first: int, last: int, mode: str = "auto") -> set[int]:
    """Epochs (0-based, in ``[first, last]``) at whose end the network is probed.

    'auto' probes after epochs first + 0, 7, 63, 511 (offsets 8**k - 1) and after ``last``:
    about log8(epochs) probes, denser early when most problems show, so that the doctor costs a
    few percent of a fit (each probe costs about one forward and backward pass on 256 rows).
    'full' probes every epoch up to 100 epochs, then about 100 evenly spaced ones. 'ends' probes
    none in between (only before and after training): for runs whose weights are out of the
    model's reach while they train (``compare``'s batched runs).

    Example:
        >>> sorted(probe_epochs(0, 29))
        [0, 7, 29]
    """
    if last < first or mode == "ends":
        return set()
    if mode == "full":
        stride = max(1, (last - first + 1) // 100)
        return set(range(first, last + 1, stride)) | {last}
    chosen, span = {first, last}, 8
    while first + span - 1 <= last:
        chosen.add(first + span - 1)
        span *= 8
    return chosen


class TrainingMonitor(Callback):
    """Collects the training doctor's evidence during ``fit``; ``findings()`` runs the detectors.

    Args:
        mode: 'auto' (a few probes), 'full' (a probe every epoch, up to about 100) or 'ends'
            (before and after training only).
        data: ``(x_train, y_train, val)`` tensors on the model's device, as the loop holds them.
        detectors: the detector functions to run; ``DETECTORS`` by default.

    ``fit`` creates one through ``monitor_for_fit`` unless ``diagnostics='off'``.

    Example:
        >>> history = model.fit(X, y, epochs=20)          # diagnostics='auto'
        >>> [f.code for f in history.diagnosis]
        ['unscaled_inputs']
    """

    def __init__(self, mode: str = "auto", data=None, detectors=None):
        super().__init__()
        self.mode = mode if mode in MODES else "auto"
        self.x, self.y, self.val = data if data is not None else (None, None, None)
        self.detectors = detectors
        self.record = RunRecord()
        self._probe_at: set[int] | None = None  # chosen at the first epoch
        self._first_epoch = None
        self._snapshot = None
        self._probe_x = self._probe_y = None
        self._probe_plan = None
        self._findings = None
        self._last_probed = None
        self.peers = []  # the fit's other callbacks, set by the loop

    # -- hooks ------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._guard("on_train_begin", self._begin)

    def on_epoch_begin(self, epoch, logs=None):
        self._guard("on_epoch_begin", lambda: self._epoch_begin(epoch))

    def on_epoch_end(self, epoch, logs=None):
        self._guard("on_epoch_end", lambda: self._epoch_end(epoch, logs))

    def on_train_end(self, logs=None):
        self._guard("on_train_end", self._end)

    # -- results ----------------------------------------------------------------------------
    def findings(self) -> Diagnosis:
        """The findings of this fit, with their evidence (the detectors run once, on first call)."""
        if self._findings is None:
            self._findings = run_detectors(self.record, self.detectors)
        return Diagnosis(self._findings, self.record)

    def summary(self) -> str:
        """The printed summary: a few lines per problem, '' for a healthy run."""
        return format_findings(self.findings())

    # -- work -------------------------------------------------------------------------------
    def _guard(self, where: str, fn) -> None:
        # Diagnostics never crash a fit: an error here is written down and shown as an 'info'.
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - any failure of the doctor must stay harmless
            self.record.failures.append((where, f"{type(exc).__name__}: {exc}"))

    def _begin(self) -> None:
        model, rec = self.model, self.record
        rec.steps_per_epoch = int((self.params or {}).get("steps", 0) or 0)
        rec.layers = describe_layers(model)
        rec.loss_name = getattr(model.compiled_loss, "name", type(model.compiled_loss).__name__)
        rec.loss_kind = losses_module.kind(model.compiled_loss)
        rec.from_logits = bool(getattr(model.compiled_loss, "from_logits", False))
        rec.optimizer = type(model.optimizer).__name__
        rec.n_params = sum(p.numel() for p in model.trainable_parameters())
        if self.x is None:
            return
        rec.n_train, rec.n_features = int(self.x.shape[0]), int(self.x.shape[-1])
        rec.x_mean, rec.x_std, rec.inputs_normalized_in_model = input_stats(model, self.x)
        for key, value in {**input_range(self.x), **target_stats(self.y)}.items():
            setattr(rec, key, value)
        rows = probe_rows(self.x.shape[0], device=self.x.device)
        self._probe_x, self._probe_y = self.x[rows], self.y[rows]
        rec.baseline_loss = baseline_loss(model, self._probe_y, rec.loss_kind)
        rec.penalty_start = regularization_penalty(model)
        self._probe(-1)

    def _epoch_begin(self, epoch: int) -> None:
        if self._probe_at is None:  # the first epoch of this fit (initial_epoch may be > 0)
            last = self._last_epoch
            self._probe_at = probe_epochs(epoch, last, self.mode)
            self._first_epoch = epoch
            self.record.epochs_planned = last - epoch + 1
        if epoch in self._probe_at:
            self._snapshot = kernel_snapshot(self.model)

    @property
    def _last_epoch(self) -> int:
        return int((self.params or {}).get("epochs", 0) or 0) - 1

    def _end(self) -> None:
        self.record.stopped_early = bool(getattr(self.model, "stop_training", False))
        self.record.restored_epoch = restored_epoch(self.peers)
        # A last probe of the final weights, unless the last epoch was just probed.
        if self.record.epochs and self._last_probed != self.record.epochs[-1]:
            self._probe(self.record.epochs[-1])

    def _epoch_end(self, epoch: int, logs) -> None:
        rec = self.record
        rec.epochs.append(int(epoch))
        rec.logs.append({k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))})
        rec.learning_rates.append(_learning_rate(self.model))
        if self._probe_at and epoch in self._probe_at and self._snapshot is not None:
            rec.update_ratios[int(epoch)] = update_ratios(self.model, self._snapshot, rec.steps_per_epoch)
            self._snapshot = None
            if self.mode == "full" or epoch != self._first_epoch or epoch == self._last_epoch:
                self._probe(epoch)

    def _probe(self, epoch: int) -> None:
        if self._probe_x is None:
            return
        if self._probe_plan is None:
            self._probe_plan = plan_probe(self.model)
        self.record.probes.append(
            take_probe(self.model, self._probe_x, self._probe_y, epoch, self._probe_plan)
        )
        self._last_probed = epoch


def restored_epoch(callbacks) -> int | None:
    """The epoch whose weights an EarlyStopping(restore_best_weights=True) put back at the end, or None."""
    for cb in callbacks:
        if getattr(cb, "restore_best_weights", False) and getattr(cb, "best_weights", None) is not None:
            return int(cb.best_epoch)
    return None


def regularization_penalty(model) -> float:
    """The regularizers' penalty on the current weights (0.0 without regularizers)."""
    terms = [p for layer in model.layers if (p := _penalty(layer)) is not None]
    return float(sum(term.detach() for term in terms)) if terms else 0.0


def _penalty(layer):
    fn = getattr(layer, "regularization_loss", None)
    return fn() if fn is not None else None


def _learning_rate(model) -> float:
    try:
        return float(model.optimizer.learning_rate)
    except Exception:  # noqa: BLE001 - an exotic optimizer without a readable rate
        return math.nan


def monitor_for_fit(model, mode: str, data) -> TrainingMonitor:
    """The monitor ``fit`` adds to its callbacks (the loop's hook into the doctor).

    Args:
        model: the model being trained.
        mode: 'auto' or 'full'.
        data: ``(x_train, y_train, val)`` tensors on the device; ``val`` is
            ``(x_val, y_val, w_val)`` or None.

    Returns:
        A ``TrainingMonitor``; after ``fit`` its ``findings()`` become ``history.diagnosis``.
    """
    return TrainingMonitor(mode, data)
