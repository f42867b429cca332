"""Findings: what the training doctor says, as data (a code, the numbers, a sentence, a fix).

A finding is plain data so that it can be printed, compared in tests, stored next to a
``History`` and shown in a report. ``format_findings`` turns a list of them into the few
lines ``fit`` prints at the end when it is verbose.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .._errors import ConfigError, describe

SEVERITIES = ("info", "warning", "error")
"""From least to most serious. 'info' never shows in the printed summary."""

CODES = (
    "dead_units",
    "vanishing_gradients",
    "exploding_gradients",
    "lr_too_high",
    "lr_too_low",
    "unscaled_inputs",
    "unscaled_target",
    "overfitting",
    "underfitting",
    "loss_output_mismatch",
    "stalled",
    "detector_failed",
)
"""The stable codes the built-in detectors emit (a detector added by a user may emit others)."""


@dataclass(frozen=True)
class Finding:
    """One problem the doctor found in a training run.

    Args:
        code: stable identifier, e.g. ``'dead_units'`` (see ``CODES``).
        severity: ``'info'``, ``'warning'`` or ``'error'``.
        layer: name of the layer concerned, or None when the finding is about the whole run.
        evidence: the numbers behind the finding, as a dict of JSON-friendly values.
        message: what is wrong, in plain words, with the key numbers.
        fix: what to change, concretely (argument names and values).
        repairs: the names of the changes ``model.repair`` can apply for this finding, in the
            fix's order of preference (see ``trainwell.diagnostics.fixes.REPAIRS``).
        caused_by: the code of the finding this one follows from (its root cause), or None for a
            root. Set by the doctor (``causes.link_causes``): fix the root first.

    Raises:
        ConfigError: for an unknown severity.

    Example:
        >>> f = Finding("lr_too_low", "warning", None, {"learning_rate": 1e-7},
        ...             "The loss barely moved.", "Use learning_rate=0.001.")
        >>> f.is_problem
        True
    """

    code: str
    severity: str
    layer: str | None
    evidence: dict = field(default_factory=dict)
    message: str = ""
    fix: str = ""
    repairs: tuple[str, ...] = ()
    caused_by: str | None = None

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ConfigError(
                f"Finding {self.code!r}: `severity` expects one of {', '.join(SEVERITIES)}, "
                f"received {describe(self.severity)}."
            )

    @property
    def is_problem(self) -> bool:
        """True for warnings and errors (what the printed summary shows)."""
        return self.severity != "info"

    def to_dict(self) -> dict:
        """A JSON-friendly dict (non-finite floats become strings such as 'nan')."""
        return {k: _jsonable(v) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        where = f" (layer '{self.layer}')" if self.layer else ""
        cause = f" (caused by {self.caused_by})" if self.caused_by else ""
        return f"[{self.severity}] {self.code}{where}{cause}: {self.message} Fix: {self.fix}"


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def sort_findings(findings) -> list[Finding]:
    """Errors first, then warnings, then info; the detectors' order is kept within a severity."""
    rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    return sorted(findings, key=lambda f: rank[f.severity])


def format_findings(findings, limit: int = 5) -> str:
    """The printed summary: a header and two lines per warning or error; '' when there is none.

    Linked findings (``caused_by`` set) are printed in their order, each root cause first and its
    consequences indented under it.

    Args:
        findings: a list of ``Finding``.
        limit: show at most this many problems (the rest are counted).

    Returns:
        The summary text, or an empty string for a healthy run (info findings are not shown).

    Example:
        >>> format_findings([])
        ''
    """
    problems = [f for f in findings if f.is_problem]
    if not problems:
        return ""
    if not any(f.caused_by for f in problems):
        problems = sort_findings(problems)  # not yet linked: errors first
    plural = "s" if len(problems) > 1 else ""
    lines = [f"Training doctor: {len(problems)} problem{plural} found (details in history.diagnosis)"]
    for f in problems[:limit]:
        where = f" [{f.layer}]" if f.layer else ""
        if f.caused_by:  # a consequence: indented under its root, whose fix comes first
            lines.append(f"    <- caused by {f.caused_by}: {f.severity.upper()} {f.code}{where}: {f.message}")
            lines.append(f"        Fix (once {f.caused_by} is fixed, if it remains): {f.fix}")
            continue
        lines.append(f"  {f.severity.upper()} {f.code}{where}: {f.message}")
        lines.append(f"      Fix: {f.fix}")
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more in history.diagnosis")
    return "\n".join(lines)
