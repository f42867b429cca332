"""The training doctor: finds dying units, vanishing and exploding gradients, bad learning rates,
unscaled inputs, over- and underfitting, mismatched losses and stalls, and says what to do.

``fit(..., diagnostics='auto')`` adds a ``TrainingMonitor`` (a callback) that samples the network
at a few epochs; after the fit, ``history.diagnosis`` holds its findings. Findings are data
(``Finding``: code, severity, layer, evidence, message, fix); detectors are small functions
in ``detectors.py``, registered with ``@detector``.

Example:
    >>> history = model.fit(X, y, epochs=20)
    >>> for finding in history.diagnosis:
    ...     print(finding)
    >>> model.diagnose(X, y)                 # a short probe run, weights restored
    >>> model.find_learning_rate(X, y).plot('lr.png')
"""

from __future__ import annotations

from .checkup import diagnose
from .detectors import DETECTORS, detector, run_detectors
from .evidence import Diagnosis
from .findings import CODES, SEVERITIES, Finding, format_findings
from .fixes import REPAIRS
from .lr_finder import LRFinderResult, find_learning_rate
from .monitor import TrainingMonitor, monitor_for_fit, probe_epochs
from .record import LayerInfo, Probe, RunRecord
from .repair import RepairResult, repair

__all__ = [
    "CODES",
    "DETECTORS",
    "Diagnosis",
    "SEVERITIES",
    "Finding",
    "LRFinderResult",
    "LayerInfo",
    "Probe",
    "REPAIRS",
    "RepairResult",
    "RunRecord",
    "TrainingMonitor",
    "detector",
    "diagnose",
    "find_learning_rate",
    "format_findings",
    "monitor_for_fit",
    "probe_epochs",
    "repair",
    "run_detectors",
]
