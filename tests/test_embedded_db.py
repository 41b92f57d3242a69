"""Issue 8 item 11: the embedded database stops when its last live user exits.

Each test runs real processes against a throwaway data directory (CRM_PIPELINE_PGDATA): a
process ended by SIGKILL or SIGTERM is pruned from the server's user list when the next one
starts and when it exits, and commands that need no database never start or join the server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm_pipeline.embedded_db import command_needs_database, users_path
from tests.conftest import PYTHON, REPO_ROOT

pytestmark = pytest.mark.slow

# A user of the database: sets Django up (which starts or joins the server), says so, and exits
# normally when its stdin closes.
USER_SCRIPT = "import sys, django; django.setup(); print('ready', flush=True); sys.stdin.read()"


def env_for(pgdata: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "DATABASE_URL"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="crm_pipeline.settings",
        CRM_PIPELINE_TESTING="1",
        CRM_PIPELINE_PGDATA=str(pgdata),
        PYTHONPATH=str(REPO_ROOT),
        # An explicit empty value: the repository's .env must not point this at a server.
        DATABASE_URL="",
    )
    return env


def server_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def server_running(pgdata: Path) -> bool:
    pid = server_pid(pgdata)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def users(pgdata: Path) -> list[int]:
    path = users_path(pgdata)
    return json.loads(path.read_text() or "[]") if path.exists() else []


@pytest.fixture(scope="module")
def pgdata(tmp_path_factory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("embedded") / "pgdata"
    yield path
    pid = server_pid(path)
    if pid is not None and server_running(path):  # a failed test's leftover: fast shutdown
        os.kill(pid, signal.SIGINT)
        for _ in range(50):
            if not server_running(path):
                break
            time.sleep(0.1)


def start_user(pgdata: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [PYTHON, "-c", USER_SCRIPT],
        cwd=REPO_ROOT,
        env=env_for(pgdata),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def finish(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_item11_a_killed_user_is_pruned_and_the_last_live_user_stops_the_server(pgdata, sig):
    first = start_user(pgdata)
    second = start_user(pgdata)
    assert sorted(users(pgdata)) == sorted([first.pid, second.pid])

    os.kill(first.pid, sig)
    first.wait(timeout=10)
    assert first.pid in users(pgdata)  # it could not take itself off
    assert server_running(pgdata)  # the second user still needs it

    # The next user to start prunes the dead one...
    third = start_user(pgdata)
    assert sorted(users(pgdata)) == sorted([second.pid, third.pid])
    finish(third)
    assert users(pgdata) == [second.pid]
    assert server_running(pgdata)

    # ...and the server stops when the last live user exits.
    finish(second)
    assert users(pgdata) == []
    assert not server_running(pgdata)


def test_item11_a_dead_last_user_is_pruned_at_the_next_exit(pgdata):
    only = start_user(pgdata)
    os.kill(only.pid, signal.SIGKILL)
    only.wait(timeout=10)
    assert server_running(pgdata)  # nobody could stop it

    done = subprocess.run(
        [PYTHON, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=env_for(pgdata),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert users(pgdata) == []
    assert not server_running(pgdata)


@pytest.mark.parametrize("argv", [["--version"], ["help"], [], ["help", "google_emulator"]])
def test_item11_commands_without_a_database_do_not_start_it(tmp_path, argv):
    fresh = tmp_path / "pgdata"
    done = subprocess.run(
        [PYTHON, "manage.py", *argv],
        cwd=REPO_ROOT,
        env=env_for(fresh),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert not fresh.exists()  # never initialised, never started, nobody registered


def test_item11_the_emulator_command_does_not_join_the_server(tmp_path, pgdata):
    holder = start_user(pgdata)
    emulator = subprocess.Popen(
        [PYTHON, "manage.py", "google_emulator", "--port", "0", "--generate", "5"],
        cwd=REPO_ROOT,
        env=env_for(pgdata),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        assert "Google API emulator at" in emulator.stdout.readline()
        assert users(pgdata) == [holder.pid]
    finally:
        emulator.kill()
        emulator.wait(timeout=10)
    finish(holder)
    assert not server_running(pgdata)


def test_item11_only_manage_py_help_version_and_the_emulator_skip_the_database():
    assert not command_needs_database(["manage.py", "google_emulator", "--port", "0"])
    assert not command_needs_database(["/srv/app/manage.py"])
    assert command_needs_database(["manage.py", "qcluster"])
    assert command_needs_database(["manage.py", "check"])
    assert command_needs_database(["gunicorn", "help"])
    assert command_needs_database(["-c"])
