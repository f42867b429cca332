"""The detectors' registry: ``DETECTORS``, the ``@detector`` decorator and ``run_detectors``,
plus the small helpers the detectors share.

A detector is a function ``fn(record) -> list[Finding]``. ``run_detectors`` calls them in the
order of ``DETECTORS``, each inside ``try``: a detector that fails becomes an 'info' finding,
and the others still run.
"""

from __future__ import annotations

import math

from .causes import link_causes
from .findings import Finding
from .record import RunRecord

DETECTORS: list = []
"""The registered detectors, in the order they run."""


def detector(fn):
    """Register ``fn(record) -> list[Finding]`` as a detector (appended to ``DETECTORS``)."""
    DETECTORS.append(fn)
    return fn


def run_detectors(record: RunRecord, detectors=None) -> list[Finding]:
    """Run every detector on ``record``; failures become 'info' findings.

    Returns:
        The findings, linked by ``causes.link_causes``: each root cause first, its consequences
        after it with ``caused_by`` set.
    """
    record.findings = [_failure(where, error) for where, error in record.failures]
    for fn in DETECTORS if detectors is None else detectors:
        try:
            record.findings.extend(fn(record) or [])
        except Exception as exc:  # noqa: BLE001 - a broken detector must not hide the others
            record.findings.append(
                _failure(getattr(fn, "__name__", repr(fn)), f"{type(exc).__name__}: {exc}")
            )
    return link_causes(record.findings)


def _failure(where: str, error: str) -> Finding:
    return Finding(
        "detector_failed",
        "info",
        None,
        {"where": where, "error": error},
        f"The training doctor could not finish '{where}' ({error}); the fit itself is unaffected.",
        "Nothing to change in the model; please report this if it repeats.",
    )


def _epoch(probe_epoch: int) -> str:
    """A probe's epoch in the 1-based words Keras's logs use."""
    return "the start" if probe_epoch < 0 else f"epoch {probe_epoch + 1}"


def _finite(values) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _default_lr(optimizer: str) -> float:
    """Keras's default learning rate of an optimizer class: a safe first choice."""
    return 0.01 if optimizer == "SGD" else 0.001


def _lower_lr(lr: float, optimizer: str) -> float:
    """10x lower, or straight to Keras's default when the rate is far above it."""
    default = _default_lr(optimizer)
    return default if lr >= 10 * default else lr / 10
