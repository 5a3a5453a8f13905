"""Agents: the automata of seed 004 that act on a lifecycle without a person.

`integration` procures a model unattended (fetch, train, gate, register); the
update agent and the production evaluation loop build on it.
"""

from __future__ import annotations

from mlcycle.agents.integration import ProcurementRejected, ProcureResult, procure

__all__ = ["ProcureResult", "ProcurementRejected", "procure"]
