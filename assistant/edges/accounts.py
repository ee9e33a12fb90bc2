"""Named staff accounts: a users file of scrypt hashes, and a gatekeeper that slows and then locks
out repeated wrong passwords, logging each failure with its source address.

``ASSISTANT_STAFF_PASSWORD`` stays as a single-user shortcut (for a laptop): the right password
with any name signs in, as that name or as "staff".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..errors import AssistantError

log = logging.getLogger("assistant.staff")

# scrypt's interactive-login cost (RFC 7914 suggests N=2**14, r=8, p=1): about 16 MB and tens of ms.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_CHARS = 10
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
SHORTCUT_USER = "staff"


class AccountError(AssistantError):
    """A users-file problem: a bad name, a short password, an unknown user."""


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)
    encode = base64.b64encode
    return f"scrypt${n}${r}${p}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        given = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            maxmem=64 * 1024 * 1024, dklen=len(expected),
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(given, expected)


# A hash to check a password against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY = hash_password(secrets.token_hex(8))


class UserFile:
    """``{"users": {name: {"hash": ..., "added": ...}}}``, private (mode 0600), replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AccountError(f"{self.path}: not a staff users file ({exc})") from None
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict):
            raise AccountError(f'{self.path}: expected {{"users": {{name: {{"hash": ...}}}}}}')
        return users

    def names(self) -> list[str]:
        return sorted(self.load())

    def add(self, name: str, password: str, *, replace: bool = False) -> None:
        if not NAME.match(name or ""):
            raise AccountError(f"{name!r} is not a usable name: letters, digits and . _ @ - only, up to 64")
        if len(password) < MIN_PASSWORD_CHARS:
            raise AccountError(f"the password is {len(password)} characters; use at least {MIN_PASSWORD_CHARS}")
        users = self.load()
        if name in users and not replace:
            raise AccountError(f"{name!r} already has an account in {self.path}; use --replace to set a new password")
        users[name] = {"hash": hash_password(password), "added": datetime.now(UTC).isoformat(timespec="seconds")}
        self._save(users)

    def remove(self, name: str) -> None:
        users = self.load()
        if users.pop(name, None) is None:
            raise AccountError(f"no account {name!r} in {self.path}")
        self._save(users)

    def check(self, name: str, password: str) -> bool:
        entry = self.load().get(name)
        ok = verify_password(password, entry["hash"] if isinstance(entry, dict) and "hash" in entry else _DUMMY)
        return ok and entry is not None

    def _save(self, users: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"users": users}, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(temporary, self.path)


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


@dataclass
class Gatekeeper:
    """Checks staff sign-ins. After ``free`` failures in a row (per name and per source address) each
    next attempt must wait a doubling delay; after ``lock_after`` the name and the address are locked
    out for ``lockout_seconds``, even with the right password. Nothing sleeps: an attempt made too
    soon is refused at once, so guessing cannot hold a worker."""

    users: UserFile | None
    shortcut_password: str | None = None
    free: int = 3
    lock_after: int = 10
    lockout_seconds: float = 900.0
    forget_seconds: float = 3600.0  # failures older than this no longer count
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, _Failures] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enabled(self) -> bool:
        return bool(self.shortcut_password) or bool(self.users and self.users.names())

    def sign_in(self, name: object, password: object, source: str = "unknown") -> tuple[str | None, str]:
        """(who, "") on success; (None, why) otherwise. Every failure is logged with ``source``."""
        name = name.strip() if isinstance(name, str) else ""
        password = password if isinstance(password, str) else ""
        keys = [f"address:{source}"] + ([f"name:{name.casefold()}"] if name else [])
        wait = self._wait(keys)
        if wait > 0:
            log.warning("staff sign-in refused for %r from %s: locked or slowed for %.0f s more", name, source, wait)
            return None, _wait_text(wait)
        who = self._check(name, password)
        if who is not None:
            with self._lock:
                for key in keys:
                    self._failures.pop(key, None)
            return who, ""
        count = self._fail(keys)
        log.warning("staff sign-in failed for %r from %s (%d failures in a row)", name, source, count)
        wait = self._wait(keys)
        return None, _wait_text(wait) if wait > 0 else ""

    def _check(self, name: str, password: str) -> str | None:
        if not password:
            return None
        if self.users is not None and name:
            if self.users.check(name, password):
                return name
        elif self.users is not None:
            verify_password(password, _DUMMY)  # the same cost either way
        expected = self.shortcut_password or ""
        if expected and hmac.compare_digest(password.encode(), expected.encode()):
            return name or SHORTCUT_USER
        return None

    def _fail(self, keys: list[str]) -> int:
        now = self.clock()
        worst = 0
        with self._lock:
            for key in keys:
                failures = self._failures.get(key)
                if failures is None or now - failures.last > self.forget_seconds:
                    failures = self._failures[key] = _Failures()
                failures.count += 1
                failures.last = now
                if failures.count >= self.lock_after:
                    failures.locked_until = now + self.lockout_seconds
                elif failures.count >= self.free:
                    failures.locked_until = now + min(2.0 ** (failures.count - self.free), 60.0)
                worst = max(worst, failures.count)
            if len(self._failures) > 10_000:  # bounded: drop the oldest entries
                for key in sorted(self._failures, key=lambda k: self._failures[k].last)[:5_000]:
                    del self._failures[key]
        return worst

    def _wait(self, keys: list[str]) -> float:
        now = self.clock()
        with self._lock:
            return max([f.locked_until - now for k in keys if (f := self._failures.get(k))] + [0.0])


def _wait_text(seconds: float) -> str:
    if seconds >= 120:
        return f"Too many failed sign-ins: locked out; try again in {round(seconds / 60)} minutes."
    return f"Too many failed sign-ins: wait {max(1, round(seconds))} seconds before trying again."


def read_new_password(stdin_is_tty: bool, prompt: Callable[[str], str], readline: Callable[[], str]) -> str:
    """A new password from the terminal (asked twice) or the first line of standard input."""
    if not stdin_is_tty:
        return readline().rstrip("\r\n")
    first = prompt("New password: ")
    if prompt("Again: ") != first:
        raise AccountError("the two passwords differ; nothing was changed")
    return first
