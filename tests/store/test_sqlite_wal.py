"""Switching a SQLite file to WAL retries while another process holds the lock
(two replicas creating a fresh file at once made one of them fail at start)."""

from __future__ import annotations

import sqlite3

import pytest

from webapp.store.engine import _enable_wal


class ScriptedCursor:
    """Answers ``PRAGMA journal_mode`` reads with ``mode`` and fails the first calls as told."""

    def __init__(self, failures: list[str], mode: str = "delete") -> None:
        self.failures = list(failures)
        self.mode = mode
        self.statements: list[str] = []

    def execute(self, sql: str):
        self.statements.append(sql)
        if self.failures:
            raise sqlite3.OperationalError(self.failures.pop(0))
        if sql.endswith("= WAL"):
            self.mode = "wal"
        return self

    def fetchone(self):
        return (self.mode,)


@pytest.mark.parametrize(
    ("failures", "mode", "budget_s", "outcome"),
    [
        ([], "delete", 5, "wal"),
        ([], "wal", 5, "already"),
        (["database is locked"] * 3, "delete", 5, "wal"),
        (["database is locked"], "wal", 5, "already"),
        (["disk I/O error"], "delete", 5, "raises"),
        (["database is locked"] * 1000, "delete", 0.05, "raises"),
    ],
)
def test_enable_wal_retries_only_lock_errors_within_budget(failures, mode, budget_s, outcome):
    cursor = ScriptedCursor(failures, mode)
    if outcome == "raises":
        with pytest.raises(sqlite3.OperationalError):
            _enable_wal(cursor, budget_s=budget_s)
        return
    _enable_wal(cursor, budget_s=budget_s)
    assert cursor.mode == "wal"
    switched = any(s.endswith("= WAL") for s in cursor.statements)
    assert switched is (outcome == "wal")


def test_a_real_file_ends_in_wal_even_while_another_connection_holds_a_write_lock(tmp_path):
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            _enable_wal(other.cursor(), budget_s=0.1)
        holder.execute("COMMIT")
        _enable_wal(other.cursor(), budget_s=1)
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        holder.close()
        other.close()
