"""Root cause first: link findings that follow from one another, and put each root before its consequences.

One problem often shows up as several findings: an unscaled target gives huge gradients, the huge
steps kill ReLU units and make the loss jump, so ``exploding_gradients``, ``dead_units`` and
``lr_too_high`` appear next to ``unscaled_target``. Fixing the consequences first does not help.
``link_causes`` marks each consequence with ``caused_by`` (the root's code) from a table of known
chains, raises each root to the highest severity of its group, and orders the findings root first.

A chain is a rule ``(root code, consequence code, condition)``; rules are tried in order and the
first whose root is present wins, so a more basic cause (the data) beats a nearer one (the rate).
"""

from __future__ import annotations

from dataclasses import replace

from .findings import SEVERITIES, Finding


def _always(root: Finding, consequence: Finding) -> bool:
    return True


def _explodes_from_the_start(root: Finding, consequence: Finding) -> bool:
    # Gradients already huge before the first step come from the initialisation, not from the rate.
    return bool(root.evidence.get("at_start"))


def _explodes_later(root: Finding, consequence: Finding) -> bool:
    return not consequence.evidence.get("at_start")


def _died_in_training(root: Finding, consequence: Finding) -> bool:
    return (consequence.evidence.get("died_during_training") or 0) > 0


_CURVE_PROBLEMS = ("lr_too_high", "lr_too_low", "stalled", "underfitting")
_INTERNALS = ("dead_units", "exploding_gradients", "vanishing_gradients")

CHAINS: list[tuple[str, str, object]] = [
    *(("loss_output_mismatch", code, _always) for code in _CURVE_PROBLEMS + _INTERNALS),
    *(("unscaled_target", code, _always) for code in _CURVE_PROBLEMS + _INTERNALS),
    *(("unscaled_inputs", code, _always) for code in _CURVE_PROBLEMS + _INTERNALS),
    ("exploding_gradients", "lr_too_high", _explodes_from_the_start),
    ("exploding_gradients", "dead_units", _explodes_from_the_start),
    ("lr_too_high", "exploding_gradients", _explodes_later),
    ("lr_too_high", "dead_units", _died_in_training),
    ("lr_too_high", "stalled", _always),
    ("dead_units", "vanishing_gradients", _always),
    ("dead_units", "underfitting", _always),
    ("dead_units", "stalled", _always),
    ("vanishing_gradients", "lr_too_low", _always),
    ("vanishing_gradients", "underfitting", _always),
    ("vanishing_gradients", "stalled", _always),
]
"""(root code, consequence code, condition(root, consequence)), tried in this order."""


def _direct_cause(finding: Finding, problems: list[Finding]) -> Finding | None:
    for root_code, code, condition in CHAINS:
        if code != finding.code:
            continue
        for root in problems:
            if root.code == root_code and root is not finding and condition(root, finding):
                return root
    return None


def link_causes(findings) -> list[Finding]:
    """The findings with ``caused_by`` set on consequences, each root first and followed by its consequences.

    Roots are ordered by the highest severity in their group (errors first), a root's severity is
    raised to that of its worst consequence, and 'info' findings come last, unlinked.

    Example:
        >>> [f.code for f in link_causes(findings)]  # doctest: +SKIP
        ['unscaled_target', 'exploding_gradients', 'dead_units']
    """
    findings = list(findings)
    problems = [f for f in findings if f.is_problem]
    parent = {id(f): _direct_cause(f, problems) for f in problems}
    root_of = {}
    for f in problems:
        seen, node = {id(f)}, f
        while parent.get(id(node)) is not None and id(parent[id(node)]) not in seen:
            node = parent[id(node)]
            seen.add(id(node))
        root_of[id(f)] = node
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    groups: dict[int, list[Finding]] = {}
    for f in problems:
        groups.setdefault(id(root_of[id(f)]), []).append(f)
    ordered = []
    for members in groups.values():
        root = root_of[id(members[0])]
        worst = max((m.severity for m in members), key=rank.__getitem__)
        group = [replace(root, severity=worst)]
        group += [replace(m, caused_by=root.code) for m in members if m is not root]
        ordered.append(group)
    ordered.sort(key=lambda group: -rank[group[0].severity])  # stable: the detectors' order otherwise
    return [f for group in ordered for f in group] + [f for f in findings if not f.is_problem]
