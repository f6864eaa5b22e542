"""Where a study lives: SQLite (default), any SQLAlchemy URL (PostgreSQL, MySQL), or an Optuna journal file.

``--storage`` accepts

- nothing: ``sqlite:///<home>/studies/<name>.db`` (:func:`escale.paths.studies_dir`);
- a URL: ``postgresql://user@host:5432/db`` (needs the ``postgres`` extra), ``mysql+pymysql://...``,
  ``sqlite:///path.db`` -- Optuna's RDB storage, with heartbeats: a trial whose worker died is failed once
  its heartbeat is ``grace_s`` old and queued again once (``RetryHeartbeatStaleTrialCallback``);
- ``journal:PATH`` or a path ending in ``.log``: Optuna's ``JournalStorage`` over ``JournalFileBackend``,
  for clusters with a shared filesystem and no database server. Journal storage has no heartbeats: the
  trial of a killed worker stays RUNNING (it does not count as finished, and is not retried);
- any other path: a SQLite file.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from escale import paths
from escale.errors import EscaleError, first_line

JOURNAL_PREFIX = "journal:"


def storage_url(storage: str | None, study_name: str) -> str:
    """``None`` -> ``sqlite:///<studies_dir>/<name>.db``; a bare path -> SQLite (``.log``: journal); a URL is
    kept. Creates the folder of a path (a URL's must exist)."""
    if storage is None:
        paths.studies_dir().mkdir(parents=True, exist_ok=True)
        return default_storage_url(study_name)
    url = normalise(storage)
    if url != storage or url.startswith(JOURNAL_PREFIX):  # a path (not a URL): make its folder
        Path(url.split(":", 1)[1].removeprefix("///")).parent.mkdir(parents=True, exist_ok=True)
    return url


def normalise(storage: str) -> str:
    """A ``--storage`` value as a URL: ``journal:PATH`` for journal files, ``sqlite:///PATH`` for other paths."""
    if storage.startswith(JOURNAL_PREFIX) or "://" in storage:
        return storage
    if storage.endswith(".log"):
        return JOURNAL_PREFIX + storage
    return f"sqlite:///{storage}"


def default_storage_url(study_name: str) -> str:
    """``sqlite:///`` URL of the study's database in :func:`escale.paths.studies_dir` (an absolute path)."""
    return f"sqlite:///{paths.studies_dir() / (study_name + '.db')}"


def shown_url(url: str) -> str:
    """The URL with any password hidden."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: show the scheme only
        return url.split("://", 1)[0] + "://..."


def open_storage(url: str, heartbeat_s: int | None = 10, grace_s: int | None = None) -> optuna.storages.BaseStorage:
    """A journal file storage, or an RDB storage with heartbeats; an unreachable URL or a missing driver is
    one EscaleError line."""
    if url.startswith(JOURNAL_PREFIX):
        return _journal(url[len(JOURNAL_PREFIX):])
    engine = _sqlite_engine(url) if url.startswith("sqlite:///") else {}
    for attempt in range(5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=heartbeat_s, grace_period=grace_s,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
                    if heartbeat_s else None)
            except Exception as exc:  # sqlalchemy OperationalError/ArgumentError, ImportError for a driver
                first = first_line(exc, 200)
                racing = ("already exists" in first or "UNIQUE constraint failed: alembic_version" in first
                          or "duplicate key" in first)
                if racing and attempt < 4:  # another worker is creating the tables right now
                    time.sleep(0.5 + attempt)
                    continue
                hint = _driver_hint(url, exc)
                raise EscaleError(f"--storage: cannot open {shown_url(url)!r} ({type(exc).__name__}: {first}){hint}"
                                  ) from None
    raise AssertionError("unreachable")


def _driver_hint(url: str, exc: Exception) -> str:
    if isinstance(exc, ImportError) and url.startswith("postgresql"):
        return "; install the PostgreSQL driver: pip install 'escale[postgres]'"
    return ""


def _journal(path: str) -> optuna.storages.JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    if not path:
        raise EscaleError("--storage: 'journal:' needs a file path (allowed: journal:PATH or PATH.log)")
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    except OSError as exc:
        raise EscaleError(f"--storage: cannot open journal file {path!r} ({exc.strerror or exc})") from None


def _sqlite_engine(url: str) -> dict[str, Any]:
    """SQLite in WAL mode with ``synchronous=NORMAL``: readers do not block the writer, a commit is ~1 ms
    instead of a full fsync, and a killed process still loses nothing committed (only power loss could)."""
    import sqlite3

    path = url[len("sqlite:///"):] or ":memory:"

    def connect() -> sqlite3.Connection:
        con = sqlite3.connect(path, timeout=60, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    return {"creator": connect}


def study_names(url: str) -> list[str]:
    """Names of the studies in a storage."""
    return [s.study_name for s in optuna.get_all_study_summaries(storage=open_storage(url, None))]
