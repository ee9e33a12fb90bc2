"""Named staff accounts: scrypt hashes in a private users file, a command to add them, sign-in by name
and password, and repeated wrong passwords slowed, then locked out, each failure logged."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys

import pytest
from conftest import ROOT, free_port
from gradio_client import Client

from assistant.edges.accounts import AccountError, Gatekeeper, UserFile, hash_password, verify_password
from assistant.edges.staff import DENIED
from assistant.edges.ui import build_app

SECRET = "a long staff password"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def users(tmp_path):
    users = UserFile(tmp_path / "staff-users.json")
    users.add("alice", SECRET)
    return users


def test_password_is_kept_as_a_salted_scrypt_hash_in_a_private_file(users):
    text = users.path.read_text()
    assert SECRET not in text
    stored = json.loads(text)["users"]["alice"]["hash"]
    assert stored.startswith("scrypt$16384$8$1$")
    assert stored != hash_password(SECRET)  # salted
    assert verify_password(SECRET, stored) and not verify_password(SECRET + "!", stored)
    assert stat.S_IMODE(os.stat(users.path).st_mode) == 0o600
    assert (
        users.check("alice", SECRET) and not users.check("alice", "wrong password") and not users.check("bob", SECRET)
    )


def test_bad_names_short_passwords_and_duplicates_are_refused(users):
    with pytest.raises(AccountError, match="not a usable name"):
        users.add("al ice", SECRET)
    with pytest.raises(AccountError, match="at least 10"):
        users.add("bob", "short")
    with pytest.raises(AccountError, match="already has an account"):
        users.add("alice", "another long password")
    users.add("alice", "another long password", replace=True)
    assert users.check("alice", "another long password") and not users.check("alice", SECRET)


def run(args, tmp_path, stdin=""):
    env = {**os.environ, "ASSISTANT_STAFF_USERS": str(tmp_path / "users.json")}
    return subprocess.run(
        [sys.executable, "-m", "assistant", "staff-user", *args],
        input=stdin, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip


def test_staff_user_command_reads_the_password_from_stdin_never_argv(tmp_path):
    added = run(["add", "carol"], tmp_path, stdin=SECRET + "\n")
    assert added.returncode == 0, added.stderr
    assert SECRET not in added.stdout + added.stderr
    assert UserFile(tmp_path / "users.json").check("carol", SECRET)
    assert run(["list"], tmp_path).stdout.split() == ["carol"]
    short = run(["add", "dave"], tmp_path, stdin="short\n")
    assert short.returncode == 2 and "at least 10" in short.stderr
    assert run(["remove", "carol"], tmp_path).returncode == 0
    assert run(["list"], tmp_path).stdout.split() == []


def test_wrong_passwords_are_slowed_then_locked_out_and_logged_with_the_address(users, caplog):
    clock = Clock()
    gate = Gatekeeper(users, free=3, lock_after=6, lockout_seconds=900, clock=clock)
    caplog.set_level(logging.WARNING, logger="assistant.staff")
    assert gate.sign_in("alice", SECRET, "10.0.0.1") == ("alice", "")
    for _ in range(2):
        assert gate.sign_in("alice", "guess", "10.0.0.1") == (None, "")
    who, why = gate.sign_in("alice", "guess", "10.0.0.1")  # the third: from now on each retry waits
    assert who is None and why == "Too many failed sign-ins: wait 1 seconds before trying again."
    assert gate.sign_in("alice", SECRET, "10.0.0.1")[0] is None  # too soon, even with the right password
    clock.now += 1.5
    for wait in (2, 4):
        assert gate.sign_in("alice", "guess", "10.0.0.1") == (
            None,
            f"Too many failed sign-ins: wait {wait} seconds before trying again.",
        )
        clock.now += wait + 0.5
    who, why = gate.sign_in("alice", "guess", "10.0.0.1")  # the sixth: locked out
    assert who is None and why == "Too many failed sign-ins: locked out; try again in 15 minutes."
    clock.now += 600
    assert gate.sign_in("alice", SECRET, "10.0.0.1")[0] is None
    assert gate.sign_in("alice", SECRET, "10.0.0.2")[0] is None  # the name is locked, from any address
    clock.now += 301
    assert gate.sign_in("alice", SECRET, "10.0.0.1") == ("alice", "")
    failures = [r.getMessage() for r in caplog.records if "sign-in failed" in r.getMessage()]
    assert len(failures) == 6 and all("'alice' from 10.0.0.1" in line for line in failures)
    assert "6 failures in a row" in failures[-1]


def test_the_shortcut_password_signs_in_without_a_name(users):
    gate = Gatekeeper(users, shortcut_password="the laptop password")
    assert gate.sign_in("", "the laptop password") == ("staff", "")
    assert gate.sign_in("alice", "the laptop password") == ("alice", "")
    assert gate.sign_in("", SECRET) == (None, "")
    assert Gatekeeper(None, shortcut_password=None).enabled() is False
    assert Gatekeeper(users).enabled() is True


@pytest.mark.slow
def test_the_tab_signs_in_by_name_and_locks_out_guessing(assistant, users, caplog):
    settings = assistant.settings.model_copy(
        update={"staff_password": None, "staff_users": users.path, "staff_lockout_failures": 5, "staff_slow_after": 100}
    )
    app = build_app(assistant, settings, None)
    app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    caplog.set_level(logging.WARNING, logger="assistant.staff")
    try:
        client = Client(app.local_url, verbose=False)
        assert client.predict(SECRET, "What is dry needling?", "", "alice", api_name="/staff_inspect").startswith(
            "### Status: answered"
        )
        assert client.predict(SECRET, "What is dry needling?", "", "", api_name="/staff_inspect") == DENIED  # no name
        results = [client.predict(f"guess {n}", "x", "", "alice", api_name="/staff_inspect") for n in range(5)]
        # The address has failed five times by the fourth guess (the nameless try counts): locked out.
        assert results[:3] == [DENIED] * 3
        assert all(r.startswith(f"{DENIED} Too many failed sign-ins: locked out") for r in results[3:])
        assert client.predict(SECRET, "x", "", "alice", api_name="/staff_inspect").startswith(DENIED)
    finally:
        app.close()
    failures = [r.getMessage() for r in caplog.records if "sign-in failed" in r.getMessage()]
    assert len(failures) == 5 and all("from 127.0.0.1" in line for line in failures)
