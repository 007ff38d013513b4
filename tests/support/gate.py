"""A click's worker that dies at the worst moment, for the tests of settling changes."""

from __future__ import annotations

import time

from bot.domain.gate.record import Lease
from bot.domain.gate.records import Moved, Records


async def win_approval_and_die(records: Records, change_id: str, *, lease_seconds: float) -> None:
    """What a click's worker leaves when it dies right after winning the approval: the record in
    `applying`, holding an apply lease nobody renews. Re-read and written again, as a click is,
    while the job that asked for the approval is still recording its message."""
    while True:
        change = await records.get(change_id)
        assert change is not None, change_id
        try:
            await records.write(
                change,
                state="applying",
                decided_by="U0BOB",
                lease=Lease("apply", "dead-worker", time.time() + lease_seconds),
            )
            return
        except Moved as moved:
            if moved.current is None or moved.current.state != "awaiting_approval":
                raise
