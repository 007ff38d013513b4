"""The approval-gated change: one package owns its record, persistence, leases and phases.

    record.py     the record, its states, its version (fencing token) and lease
    records.py    the store side: compare-and-set on the version, change locks, the lease holder
    engine.py     the state machine (`Gate`): phases and decisions together, the sweep that resumes
    phases.py     each phase under its lease; `Kind` and `KINDS`, the plug-in point of a kind
    decisions.py  the clicks (approve, reject, cancel, keep, roll back): one compare-and-set each
    messages.py   what a change says to people and to the audit trail
    bluegreen.py  the blue-green kind (deploy / rollback): plan, prepare, apply, check, clean up

Kept import-light (nothing here at package level): bot/domain/views.py imports bot.domain.gate.record.
"""
