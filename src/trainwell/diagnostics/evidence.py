"""The evidence behind the findings, as pictures: ``history.diagnosis.plot('doctor.png')``.

``Diagnosis`` is the list of findings a fit ends with, plus the ``RunRecord`` they were read from.
Its figure has four panels, one number per layer and probe in three of them:

- the loss curves, with the epoch of each finding marked (before training for the static checks);
- the norm of each Dense kernel's gradient on the probe rows (log scale);
- the share of dead ReLU units, or of saturated tanh/sigmoid outputs, per layer;
- the update-to-weight ratio per layer and step (log scale; about 1e-3 is healthy).

The probes are a few epochs apart in 'auto' mode (epochs 1, 8, 64, ... and the last), so their
curves are a few points; ``fit(..., diagnostics='full')`` probes every epoch.
"""

from __future__ import annotations

import io
import math
import os

from .._container import atomic_write_bytes
from .findings import format_findings
from .record import RunRecord

STATIC_CODES = ("loss_output_mismatch", "unscaled_inputs", "unscaled_target")
"""Findings about the model and the data, made before the first step (marked at epoch 0)."""

_EPOCH_KEYS = ("nan_epoch", "dead_by_epoch", "epoch", "best_epoch")


def finding_epoch(finding, record: RunRecord) -> int:
    """The 1-based epoch a finding was made at (0: before training), read from its evidence."""
    if finding.code in STATIC_CODES:
        return 0
    for key in _EPOCH_KEYS:
        value = finding.evidence.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return int(value)
    # A rate too high shows from the first epoch on; the other curve checks read the whole run.
    return 1 if finding.code == "lr_too_high" else len(record.epochs)


class Diagnosis(list):
    """The findings of one fit (a list of ``Finding``, root causes first) and their evidence.

    Attributes:
        record: the ``RunRecord`` the detectors read (probes, curves, update ratios).

    Example:
        >>> history = model.fit(X, y, epochs=20)
        >>> history.diagnosis.plot("doctor.png")   # doctest: +SKIP
    """

    def __init__(self, findings=(), record: RunRecord | None = None):
        super().__init__(findings)
        self.record = record if record is not None else RunRecord()

    def __str__(self) -> str:
        return format_findings(self) or "Training doctor: no problem found."

    def figure(self):
        """The four-panel matplotlib ``Figure`` (made without pyplot: no window, no global state)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 7), layout="constrained")
        (loss_ax, grad_ax), (unit_ax, ratio_ax) = fig.subplots(2, 2)
        _loss_panel(loss_ax, self, self.record)
        _gradient_panel(grad_ax, self.record)
        _units_panel(unit_ax, self.record)
        _ratio_panel(ratio_ax, self.record)
        return fig

    def plot(self, path=None):
        """Draw the evidence; save it to ``path`` (PNG, SVG or PDF by extension) written whole or not at all.

        Returns:
            The matplotlib ``Figure``.
        """
        fig = self.figure()
        if path is not None:
            ext = os.path.splitext(str(path))[1].lstrip(".").lower() or "png"
            buffer = io.BytesIO()
            fig.savefig(buffer, format=ext, dpi=110)
            atomic_write_bytes(path, buffer.getvalue())
        return fig


def _probe_x(probe) -> int:
    return probe.epoch + 1  # 0: before training


def _loss_panel(ax, findings, record: RunRecord) -> None:
    for key, color in (("loss", "#1f77b4"), ("val_loss", "#d62728")):
        values = record.series(key)
        if values:
            ax.plot(range(1, len(values) + 1), values, color=color, label=key.replace("_", " "))
    shown = [f for f in findings if f.is_problem]
    for i, f in enumerate(shown):
        epoch = finding_epoch(f, record)
        style = ":" if f.caused_by else "--"
        ax.axvline(epoch, color="black" if not f.caused_by else "grey", linestyle=style, linewidth=1)
        ax.annotate(f.code + ("" if not f.caused_by else " *"), (epoch, 1 - 0.08 * (i % 8)),
                    xycoords=("data", "axes fraction"), fontsize=7, rotation=0, ha="left", va="top")
    finite = [v for v in record.series("loss") + record.series("val_loss") if math.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > 100:
        ax.set_yscale("log")
    note = " (dotted, *: a consequence)" if any(f.caused_by for f in shown) else ""
    ax.set(title=f"loss, with the epoch of each finding{note}", xlabel="epoch")
    _finish(ax)


def _gradient_panel(ax, record: RunRecord) -> None:
    layers = _ordered(record, {name for probe in record.probes for name in probe.grad_norms})
    series = {
        name: [(_probe_x(p), p.grad_norms[name]) for p in record.probes
               if name in p.grad_norms and math.isfinite(p.grad_norms[name])]
        for name in layers
    }
    _log_lines(ax, series)
    ax.set(title="gradient norm of each kernel (probe rows)", xlabel="epoch (0: before training)")
    _finish(ax)


def _log_lines(ax, series: dict) -> None:
    """One line per layer on a log axis; exact zeros (a dead layer's gradient) drawn at the bottom as x."""
    positive = [v for points in series.values() for _, v in points if v > 0]
    floor = min(positive) / 10 if positive else 1e-12
    for name, points in series.items():
        if not points:
            continue
        xs, ys = zip(*points)
        line = ax.plot(xs, [max(v, floor) for v in ys], marker="o", markersize=3, label=name)[0]
        zeros = [x for x, v in points if v <= 0]
        if zeros:
            ax.plot(zeros, [floor] * len(zeros), "x", color=line.get_color(), markersize=7)
    if positive:
        ax.set_yscale("log")
        if any(v <= 0 for points in series.values() for _, v in points):
            ax.annotate("x: exactly 0", (0.99, 0.02), xycoords="axes fraction", ha="right", fontsize=7)


def _units_panel(ax, record: RunRecord) -> None:
    dead = {name for probe in record.probes for name in probe.dead}
    saturated = {name for probe in record.probes for name in probe.saturated}
    for name in _ordered(record, dead):
        points = [(_probe_x(p), sum(p.dead[name]) / max(len(p.dead[name]), 1)) for p in record.probes
                  if name in p.dead]
        ax.plot(*zip(*points), marker="o", markersize=3, label=f"{name} dead")
    for name in _ordered(record, saturated):
        points = [(_probe_x(p), p.saturated[name]) for p in record.probes if name in p.saturated]
        ax.plot(*zip(*points), marker="s", markersize=3, linestyle="--", label=f"{name} saturated")
    ax.set_ylim(-0.03, 1.03)
    ax.set(title="share of dead (ReLU) or saturated (tanh, sigmoid) units",
           xlabel="epoch (0: before training)")
    _finish(ax)


def _ratio_panel(ax, record: RunRecord) -> None:
    layers = _ordered(record, {name for ratios in record.update_ratios.values() for name in ratios})
    series = {
        name: [(epoch + 1, ratios[name]) for epoch, ratios in sorted(record.update_ratios.items())
               if name in ratios and math.isfinite(ratios[name])]
        for name in layers
    }
    _log_lines(ax, series)
    if layers:
        ax.axhline(1e-3, color="green", linestyle=":", linewidth=1, label="about healthy (1e-3)")
    ax.set(title="update-to-weight ratio per step", xlabel="epoch")
    _finish(ax)


def _ordered(record: RunRecord, names: set) -> list:
    """Layer names in the model's order (input to output)."""
    order = {layer.name: i for i, layer in enumerate(record.layers)}
    return sorted(names, key=lambda n: order.get(n, len(order)))


def _finish(ax) -> None:
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no probe data", transform=ax.transAxes, ha="center", color="grey")
