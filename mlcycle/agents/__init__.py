"""Agents: the automata that act on a lifecycle without a person (docs/lifecycle-patterns.md).

`integration` procures a model unattended (fetch, train, gate, register); the
update agent and the production evaluation loop build on it.
"""

from __future__ import annotations

from mlcycle.agents.integration import ProcurementRejected, ProcureResult, procure

__all__ = ["ProcureResult", "ProcurementRejected", "procure"]
