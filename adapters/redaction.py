"""Quoting an outside system's answer in a message without the secrets the request carried.

An error body may echo a credential as sent or encoded (JSON-, percent- or HTML-escaped), and such text reaches
activity failures, the workflow history, receipts, tickets and logs. So every form of every known secret is masked
*before* the text is shortened: cut first, a secret straddling the cut would lose its tail and no longer match.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote_plus, unquote, urlsplit
from urllib.parse import quote as percent_encode

MASK = "***"
URL_TOKEN_CHARS = 16
"""A URL's user name, path segment or query value this long may be a token (webhook paths, `?token=`); shorter
ones are words such as `hooks` or `api`, which are not masked."""
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _forms(secret: str) -> set[str]:
    """The secret as sent and as an HTTP answer might echo it."""
    escaped = {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    escaped |= {form.replace("/", "\\/") for form in escaped}  # some JSON encoders escape slashes
    escaped |= {form.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
                for form in escaped}  # and Go's (Prometheus's) escapes HTML's special characters
    encoded = {percent_encode(secret, safe=""), percent_encode(secret), quote_plus(secret)}
    encoded |= {_PERCENT_ESCAPE.sub(lambda m: m.group().lower(), form) for form in encoded}
    return {secret, html.escape(secret), *escaped, *encoded}


def quote(text: str, secrets: Iterable[str], limit: int | None = None) -> str:
    """`text` with every form of every non-empty secret replaced by ***, then cut to `limit` characters. One pass,
    longest form first, so a mask never joins with its neighbours into another match."""
    forms = sorted({form for secret in secrets if secret for form in _forms(secret)}, key=len, reverse=True)
    masked = re.sub("|".join(map(re.escape, forms)), MASK, text) if forms else text
    return masked if limit is None else masked[:limit]


def url_secrets(url: str) -> tuple[str, ...]:
    """What in a URL may be a credential: its password and the Basic credentials sent for it, and its user name, path
    segments and query values of at least URL_TOKEN_CHARS characters, each as decoded (`quote` adds the encoded
    forms back)."""
    parts = urlsplit(url)
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    basic = base64.b64encode(f"{user}:{password}".encode()).decode() if password else ""
    candidates = [user, *map(unquote, parts.path.split("/")), *(value for _, value in parse_qsl(parts.query))]
    return tuple(filter(None, (password, basic, *(c for c in candidates if len(c) >= URL_TOKEN_CHARS))))
