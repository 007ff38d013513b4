"""The built-in programs a sandbox Job can run (``sandbox.payflow.io/program``): PayFlow's
nightly ``postgres-backup`` and its ``restore-drill``, printing what pg_dump and pg_restore print.

Figures are deterministic functions of wall time: production tables grow by a fixed number of
rows a day, a dump's size follows from its row counts. The backup script annotates its own Job
with ``backup.payflow.io/size-bytes`` (and where the dump went) on success, as the real script
does with ``kubectl annotate job``; the drill restores the latest such dump into a scratch
database and ends with one ``table=<name> restored=<n> production=<n>`` line per table, where
``production`` is production's count as of the dump's snapshot, so the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sandbox.apiserver.runs import Run

SIZE_ANNOTATION = "backup.payflow.io/size-bytes"
LOCATION_ANNOTATION = "backup.payflow.io/location"
BUCKET = "s3://payflow-backups/postgres"
DATABASE = "payflow"
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
# table -> (rows on 2024-01-01, rows added a day, bytes a row takes in a custom-format dump)
TABLES: dict[str, tuple[int, int, int]] = {
    "accounts": (182_000, 310, 420),
    "wallets": (241_000, 395, 180),
    "payment_methods": (305_000, 520, 260),
    "transactions": (4_210_000, 38_400, 310),
    "ledger_entries": (8_420_000, 76_800, 140),
    "audit_log": (1_900_000, 12_500, 520),
}


@dataclass(frozen=True)
class Dump:
    """A finished backup as its Job records it."""

    location: str
    size_bytes: int
    snapshot: float  # wall-clock seconds of the snapshot pg_dump took


def production_rows(table: str, wall: float) -> int:
    base, per_day, _ = TABLES[table]
    return base + int(max(wall - _EPOCH, 0.0) / 86400 * per_day)


def dump_size(wall: float) -> int:
    header = 48_213
    return header + sum(production_rows(t, wall) * TABLES[t][2] for t in TABLES)


def _stamp(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=UTC).strftime("%Y%m%dT%H%M%SZ")


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def postgres_backup(job: str, namespace: str, wall: float) -> Run:
    host = f"postgres.{namespace}.svc"
    size = dump_size(wall)
    location = f"{BUCKET}/{DATABASE}-{_stamp(wall)}.dump"
    lines = [
        f"backup: pg_dump --format=custom --verbose --host={host} --dbname={DATABASE} "
        f"(snapshot {_iso(wall)})",
        "pg_dump: last built-in OID is 16383",
        "pg_dump: reading extensions",
        "pg_dump: identifying extension members",
        "pg_dump: reading schemas",
        "pg_dump: reading user-defined tables",
        "pg_dump: reading indexes",
        "pg_dump: reading constraints",
        "pg_dump: saving encoding = UTF8",
        "pg_dump: saving standard_conforming_strings = on",
        f'pg_dump: saving database definition "{DATABASE}"',
        *(f'pg_dump: dumping contents of table "public.{t}"' for t in TABLES),
        f"backup: uploaded {location} ({size} bytes)",
        f"backup: annotated job.batch/{job} {SIZE_ANNOTATION}={size}",
    ]
    return Run(lines=lines, job_annotations={SIZE_ANNOTATION: str(size), LOCATION_ANNOTATION: location})


def restore_drill(job: str, namespace: str, latest: Dump | None) -> Run:
    if latest is None:
        return Run(
            exit_code=1,
            lines=[
                f"restore-drill: looking for the latest dump of {DATABASE} in {BUCKET}",
                f"restore-drill: error: no successful postgres-backup job in {namespace} records a dump "
                f"({SIZE_ANNOTATION})",
            ],
        )
    scratch = f"{DATABASE}_drill_{job.rsplit('-', 1)[-1].replace('-', '_')}"
    counts = {t: production_rows(t, latest.snapshot) for t in TABLES}
    lines = [
        f"restore-drill: latest dump {latest.location} ({latest.size_bytes} bytes)",
        f"restore-drill: creating scratch database {scratch}",
        "pg_restore: connecting to database for restore",
        *(f'pg_restore: creating TABLE "public.{t}"' for t in TABLES),
        *(f'pg_restore: processing data for table "public.{t}"' for t in TABLES),
        "pg_restore: creating INDEX and CONSTRAINT entries",
        f"restore-drill: comparing row counts with production as of {_iso(latest.snapshot)}",
        *(f"table={t} restored={n} production={n}" for t, n in counts.items()),
    ]
    return Run(lines=lines)
