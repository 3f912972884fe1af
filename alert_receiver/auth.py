"""Who may send alerts: the bearer token Alertmanager sends (`http_config.authorization`), read from the
environment and checked in constant time, or no one but loopback callers with `--insecure-loopback`."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping

from client.exits import BAD_INPUT, UserFacingError

TOKEN_ENV = "ABROLLOUT_ALERT_TOKEN"
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # what can travel as the credentials of an Authorization header
_MAKE_ONE = "e.g. `openssl rand -hex 32`"


class Bearer:
    """Accepts `Authorization: Bearer <token>`. Both sides are hashed before the comparison, so its time says
    nothing about what was sent, not even its length."""

    def __init__(self, token: str) -> None:
        self._digest = hashlib.sha256(token.encode()).digest()

    def accepts(self, header: bytes | None) -> bool:
        scheme, _, credentials = (header or b"").strip().partition(b" ")
        given = hashlib.sha256(credentials.strip()).digest()
        return hmac.compare_digest(given, self._digest) and scheme.lower() == b"bearer"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def receiver_token(environ: Mapping[str, str], host: str, insecure_loopback: bool) -> str | None:
    """The token the receiver requires, or None when `--insecure-loopback` lets it run without one; a
    UserFacingError (exit 2) for any combination that would expose an unauthenticated endpoint or cannot work."""
    if insecure_loopback and not is_loopback(host):
        raise UserFacingError(f"error: --insecure-loopback listens on loopback only, not --host {host}; fix: drop "
                              f"--host, or set {TOKEN_ENV} and drop --insecure-loopback", BAD_INPUT)
    raw = environ.get(TOKEN_ENV)
    if raw is None:
        if insecure_loopback:
            return None
        raise UserFacingError(f"error: {TOKEN_ENV} is not set, and the receiver takes only alerts that carry it as a "
                              f"bearer token; fix: export {TOKEN_ENV}=<a random secret, {_MAKE_ONE}> and give "
                              "Alertmanager the same (webhook_config http_config.authorization), or pass "
                              "--insecure-loopback to take unauthenticated alerts on loopback", BAD_INPUT)
    token = raw.strip()  # as Alertmanager reads a credentials_file
    if not token:
        raise UserFacingError(f"error: {TOKEN_ENV} is empty; fix: set it to a random secret ({_MAKE_ONE}), or unset "
                              "it and pass --insecure-loopback", BAD_INPUT)
    if not _HEADER_SAFE.fullmatch(token):
        raise UserFacingError(f"error: {TOKEN_ENV} holds characters other than printable ASCII, or a space; it "
                              f"travels in an HTTP header; fix: use a random hex or base64 secret ({_MAKE_ONE})",
                              BAD_INPUT)
    return token
