"""Audit log on SQLite (always) and PostgreSQL (marker postgres, own schema per run)."""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, inspect, text

from webapp.admin.audit import REDACTED, AuditLog, AuditUnavailable, is_secret_key, redact

PG_URL = os.environ.get("DATABASE_URL_TEST", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("token", True),
        ("hf_token", True),
        ("HF_TOKEN", True),
        ("accessToken", True),
        ("api_key", True),
        ("apiKey", True),
        ("apikey", True),
        ("password", True),
        ("db-password", True),
        ("client_secret", True),
        ("Authorization", True),
        ("x-goog-iap-jwt-assertion", True),
        ("max_tokens", False),  # a number of tokens is not a credential
        ("model", False),
        ("keyboard", False),
        ("monkey", False),
        ("replicas", False),
    ],
)
def test_secret_keys(key, secret):
    assert is_secret_key(key) is secret


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"model": "llama", "hf_token": "hf_abc"}, {"model": "llama", "hf_token": REDACTED}),
        ({"nested": {"password": "x", "n": 1}}, {"nested": {"password": REDACTED, "n": 1}}),
        ({"list": [{"apiKey": "k"}, "plain"]}, {"list": [{"apiKey": REDACTED}, "plain"]}),
        ({"header": "Bearer sk-live-123"}, {"header": REDACTED}),
        ({"note": "hf_" + "a" * 34}, {"note": REDACTED}),
        ({"jwt_like": "eyJhbGciOi.eyJzdWIiOi.sig"}, {"jwt_like": REDACTED}),
        ({"llm_api_key_value": SecretStr("s3cr3t")}, {"llm_api_key_value": REDACTED}),
        ({"wrapped": SecretStr("s3cr3t")}, {"wrapped": REDACTED}),
        (
            {"max_tokens": 512, "ok": True, "none": None},
            {"max_tokens": 512, "ok": True, "none": None},
        ),
        ({"when": datetime(2025, 1, 2, tzinfo=UTC)}, {"when": "2025-01-02 00:00:00+00:00"}),
    ],
)
def test_redact(value, expected):
    assert redact(value) == expected


def _exercise(log: AuditLog) -> None:
    """The behaviour every backend must have."""
    t0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    a = log.record(
        "admin@example.com",
        "switch_model",
        "deployment/vllm",
        "ok",
        {"from": "llama-2-7b", "to": "mistral-7b", "hf_token": "hf_supersecretvalue1234567"},
        at=t0,
    )
    log.record(
        "ops@example.com",
        "resize_node_pool",
        "gpu-pool",
        "error",
        {"nodes": 0},
        at=t0 + timedelta(minutes=1),
    )
    log.record(
        "admin@example.com", "set_autoscaling", "gpu-pool", "refused", at=t0 + timedelta(minutes=2)
    )
    assert a.id > 0 and a.at == t0

    entries = log.recent(10)
    assert [e.action for e in entries] == ["set_autoscaling", "resize_node_pool", "switch_model"]
    first = entries[-1]
    assert first.actor == "admin@example.com"
    assert first.target == "deployment/vllm"
    assert first.result == "ok"
    assert first.at == t0
    assert first.details == {"from": "llama-2-7b", "to": "mistral-7b", "hf_token": REDACTED}
    assert entries[0].details == {}

    assert [e.action for e in log.recent(2)] == ["set_autoscaling", "resize_node_pool"]
    assert [e.action for e in log.recent(10, actor="ops@example.com")] == ["resize_node_pool"]
    assert log.recent(0) == []


def _no_secret_anywhere(engine, table_sql: str) -> None:
    with engine.connect() as conn:
        dump = " ".join(str(row) for row in conn.execute(text(f"SELECT * FROM {table_sql}")))
    assert "supersecret" not in dump


def test_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'chat.db'}"
    log = AuditLog.from_url(url)
    _exercise(log)
    _no_secret_anywhere(create_engine(url), "audit_log")
    # a second instance (another process) sees the same entries and re-runs creation harmlessly
    again = AuditLog.from_url(url)
    again.ensure_schema()
    assert len(again.recent(10)) == 3


def test_sqlite_concurrent_creation(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    logs = [AuditLog.from_url(url) for _ in range(4)]
    errors: list[Exception] = []

    def go(log):
        try:
            log.record("a@x.com", "ping")
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(log,)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(logs[0].recent(10)) == 4


def test_required_fields(tmp_path):
    log = AuditLog.from_url(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ValueError):
        log.record("", "switch_model")
    with pytest.raises(ValueError):
        log.record("a@x.com", "")


def test_huge_details_are_truncated(tmp_path):
    log = AuditLog.from_url(f"sqlite:///{tmp_path / 'x.db'}")
    log.record("a@x.com", "big", details={"blob": "x" * 100_000})
    (entry,) = log.recent(1)
    assert entry.details["truncated"] is True
    assert len(entry.details["preview"]) <= 16_000


def test_unreachable_database_is_typed(tmp_path):
    # a directory where the database file should be: SQLite cannot open it
    bad = tmp_path / "dir.db"
    bad.mkdir()
    log = AuditLog.from_url(f"sqlite:///{bad}")
    with pytest.raises(AuditUnavailable, match="unavailable"):
        log.record("a@x.com", "switch_model")


@pytest.fixture
def pg_schema():
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except Exception as exc:
        engine.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_URL.split('@')[-1]}: {type(exc).__name__}")
    schema = f"audit_test_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield engine, schema
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.mark.postgres
def test_postgres(pg_schema):
    engine, schema = pg_schema
    log = AuditLog(engine, schema=schema)
    _exercise(log)
    assert inspect(engine).has_table("audit_log", schema=schema)
    _no_secret_anywhere(engine, f'"{schema}".audit_log')


@pytest.mark.postgres
def test_postgres_concurrent_creation(pg_schema):
    engine, schema = pg_schema
    engines = [create_engine(PG_URL) for _ in range(4)]
    errors: list[Exception] = []

    def go(e):
        try:
            AuditLog(e, schema=schema).record("a@x.com", "ping")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for e in engines:
            e.dispose()
    assert errors == []
    assert len(AuditLog(engine, schema=schema).recent(10)) == 4
