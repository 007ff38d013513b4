"""The approval-gated change: one package owns its record, persistence, leases and phases.

    record.py     the record, its states, its version (fencing token) and lease
    records.py    the store side: compare-and-set on the version, change locks, the lease holder
    engine.py     the state machine: phases under leases, decisions, the sweep
    messages.py   what a change says to people and to the audit trail
    bluegreen.py  the blue-green kind (deploy / rollback): plan, prepare, apply, check, clean up

Kept import-light (nothing here at package level): bot/domain/views.py imports bot.domain.gate.record.
"""
