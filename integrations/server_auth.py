"""Who is calling: API keys, the caller they identify, and what that caller may name.

The keys file is a JSON object from each key to the user it speaks for::

    {"k-3f9c...": "ana", "k-77ab...": {"user_id": "ops", "admin": true}}

A request sends ``Authorization: Bearer KEY`` (what the ``openai`` client sends for
``api_key=KEY``). Keys are kept only as SHA-256 digests and compared with
:func:`hmac.compare_digest` against every configured key (no early exit), so neither
the comparison's time nor a memory dump gives a key away; no message, log line or
response repeats a key (a bad entry in the file is named by its position).

Without keys the server is local and single-tenant: :func:`check_bind` refuses a
non-loopback address unless the operator says explicitly that anyone who can reach
it may use every profile.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .server_requests import RequestError

__all__ = ["LOCAL", "ApiKeys", "Caller", "check_bind", "check_user"]

MIN_KEY_LENGTH = 16
"""Shortest key accepted: a guessable key is no identity."""


@dataclass(frozen=True)
class Caller:
    """The identity a request was made with."""

    user_id: str | None
    """The key's user (the request's user unless an admin names another); None: a
    server without keys, where nobody is anybody in particular."""
    admin: bool
    """May name and read any user, and sees everything a response can show."""
    limit_key: str
    """What the rate limits count against: the key's digest (never the key itself)."""
    keyed: bool = True
    """False on a server without keys."""


LOCAL = Caller(user_id=None, admin=True, limit_key="local", keyed=False)
"""Every request of a server without keys: one caller, the server's owner."""


class ApiKeys:
    """The configured keys, by digest; :meth:`identify` turns a header into a caller."""

    def __init__(self, entries: Mapping[str, Any], *, source: str = "api_keys") -> None:
        if not isinstance(entries, Mapping) or not entries:
            raise ValueError(
                f"{source}: expected a non-empty JSON object mapping each API key to a user id "
                'or to {"user_id": ..., "admin": true}.'
            )
        self._callers: list[tuple[bytes, Caller]] = []
        for position, (key, value) in enumerate(entries.items(), start=1):
            user_id, admin = _entry(value, f"{source}: entry {position}")
            _check_key(key, f"{source}: entry {position}")
            digest = hashlib.sha256(key.encode()).digest()
            if any(hmac.compare_digest(digest, known) for known, _ in self._callers):
                raise ValueError(f"{source}: entry {position} repeats an earlier key.")
            self._callers.append((digest, Caller(user_id, admin, digest.hex()[:16])))

    @classmethod
    def load(cls, keys: str | Path | Mapping[str, Any]) -> ApiKeys:
        """From a JSON file's path, or from the mapping itself."""
        if isinstance(keys, Mapping):
            return cls(keys)
        path = Path(keys)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ValueError(f"API keys file {path}: cannot be read ({reason}).") from None
        try:
            data = json.loads(text, object_pairs_hook=_pairs)
        except _RepeatedKey as exc:
            raise ValueError(f"API keys file {path}: {exc}") from None
        except ValueError as exc:
            # the message carries a position, never the text around it (it holds keys)
            where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise ValueError(f"API keys file {path}: not valid JSON{where}.") from None
        return cls(data, source=f"API keys file {path}")

    def __len__(self) -> int:
        return len(self._callers)

    @property
    def users(self) -> list[str]:
        """The user ids the keys speak for (no keys)."""
        return sorted({c.user_id for _, c in self._callers if c.user_id is not None})

    def identify(self, authorization: str | None) -> Caller:
        """The caller of an ``Authorization`` header, or a 401 that repeats nothing of it."""
        if not authorization:
            raise _unauthorized("this server needs an API key: send Authorization: Bearer KEY.")
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise _unauthorized("the Authorization header must be 'Bearer KEY'.")
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found: Caller | None = None
        for known, caller in self._callers:  # all of them: no early exit
            if hmac.compare_digest(digest, known):
                found = caller
        if found is None:
            raise _unauthorized("the API key is not valid for this server.")
        return found


class _RepeatedKey(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any] | list[tuple[str, Any]]:
    """JSON objects as dicts, refusing a repeated name (``json`` would keep the last one
    silently, and the earlier key's user would lose access without a word)."""
    seen: set[str] = set()
    for position, (name, _) in enumerate(pairs, start=1):
        if name in seen:
            raise _RepeatedKey(f"entry {position} repeats an earlier key.")
        seen.add(name)
    return dict(pairs)


def _entry(value: Any, where: str) -> tuple[str, bool]:
    if isinstance(value, str):
        return _check_user_id(value, where), False
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"user_id", "admin"})
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; accepted: user_id, admin.")
        if "user_id" not in value:
            raise ValueError(f'{where}: needs "user_id" (a string).')
        admin = value.get("admin", False)
        if not isinstance(admin, bool):
            raise ValueError(f'{where}: "admin" must be true or false, got {admin!r}.')
        return _check_user_id(value["user_id"], where), admin
    raise ValueError(
        f'{where}: expected a user id string or {{"user_id": ..., "admin": true}}, '
        f"got {type(value).__name__}."
    )


def _check_user_id(user_id: Any, where: str) -> str:
    from langchain_pad.profiles import ANCHOR_PREFIX

    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 256:
        raise ValueError(f"{where}: the user id must be a string of 1 to 256 characters.")
    if user_id.startswith(ANCHOR_PREFIX):
        raise ValueError(f"{where}: {user_id!r} is an anchor profile's id, not a user's.")
    return user_id


def _check_key(key: str, where: str) -> None:
    printable = all(33 <= ord(c) <= 126 for c in key)
    if len(key) < MIN_KEY_LENGTH or not printable:
        raise ValueError(
            f"{where}: a key must be at least {MIN_KEY_LENGTH} printable ASCII characters "
            "without spaces (for example `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`)."
        )


def _unauthorized(message: str) -> RequestError:
    return RequestError(
        401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
    )


def check_user(caller: Caller, named: str | None, *, param: str) -> str | None:
    """The user a request is for: ``named`` if this caller may name it (else a 403),
    the key's own user when it names none."""
    if named is None or named == caller.user_id:
        return caller.user_id
    if caller.admin:
        return named
    raise RequestError(
        403,
        f"{param}: this API key speaks for one user and may not name another; leave "
        f"{param} out (the key's user is the default) or use an admin key.",
        param=param,
        code="forbidden_user",
    )


def check_bind(host: str, *, keyed: bool, allow_unauthenticated_remote: bool) -> None:
    """Refuse to listen beyond this machine without keys (unless told so explicitly)."""
    if keyed or allow_unauthenticated_remote or _loopback(host):
        return
    raise ValueError(
        f"--host {host}: without API keys this server is local and single-tenant (anyone "
        "who reaches it may read and use every profile). Pass --api-keys FILE, bind a "
        "loopback address (127.0.0.1), or --allow-unauthenticated-remote to accept that."
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
