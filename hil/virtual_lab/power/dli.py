"""Digital Loggers REST API, as labgrid's `digitalloggers_restapi` backend uses it; no I/O.

The backend sends exactly these requests (labgrid/driver/power/digitalloggers_restapi.py):

    GET /restapi/relay/outlets/=N/state/                        -> 200 `[true]` or `[false]`
    PUT /restapi/relay/outlets/=N/state/   body `value=true`    -> 2xx (we answer 204)
                                           body `value=false`

both with `X-CSRF: x` and `Accept: application/json`, and with HTTP digest authentication
(RFC 7616) when the host URL carries `user:password@`. The real API's other resources and
matrix forms (`=0,2`, `all;`) are not served: nothing in labgrid asks for them.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from hil.labgrid.credentials import Credentials

STATE_PATH = re.compile(r"/restapi/relay/outlets/=(\d+)/state/?")
MAX_BODY = 4096
REALM = "hil power switch"
# requests' HTTPDigestAuth does SHA-256; one challenge only, as requests reads just one.
ALGORITHM = "SHA-256"
NONCE_LIFETIME = 300.0


@dataclass(frozen=True)
class GetState:
    outlet: int


@dataclass(frozen=True)
class SetState:
    outlet: int
    on: bool


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: what the handler writes back, whatever the request was."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def _error(status: int, message: str, *headers: tuple[str, str]) -> Reply:
    return Reply(status, json.dumps({"error": message}).encode() + b"\n",
                 (("Content-Type", "application/json"), *headers))


def parse_request(method: str, target: str, body: bytes, *, csrf: str | None,
                  outlets: Collection[int]) -> GetState | SetState | Reply:
    """What a request asks of which outlet, or the error reply it gets."""
    m = STATE_PATH.fullmatch(urlsplit(target).path)
    if not m:
        return _error(404, "no such resource")
    outlet = int(m.group(1))
    if outlet not in outlets:
        return _error(404, f"no outlet {outlet}")
    if method == "GET":
        return GetState(outlet)
    if method != "PUT":
        return _error(405, f"{method} not allowed", ("Allow", "GET, PUT"))
    # DLI refuses state changes without the header, against cross-site requests from browsers.
    if csrf is None:
        return _error(403, "missing X-CSRF header")
    try:
        form = parse_qs(body.decode("ascii"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return _error(400, "body is not value=true|false")
    values = form.get("value", [])
    if set(form) != {"value"} or len(values) != 1 or values[0] not in ("true", "false"):
        return _error(400, "body is not value=true|false")
    return SetState(outlet, values[0] == "true")


def state_reply(on: bool) -> Reply:
    # The matrix URI `=N` selects a list of one outlet: the backend returns `json()[0]`.
    return Reply(200, json.dumps([on]).encode(), (("Content-Type", "application/json"),))


def set_reply() -> Reply:
    return Reply(204)


# --- HTTP digest authentication (RFC 7616, qop=auth) ---


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_nonce(secret: bytes, now: float) -> str:
    """A nonce the switch can check without remembering it: its time, signed."""
    stamp = str(int(now))
    return f"{stamp}.{hmac.new(secret, stamp.encode(), 'sha256').hexdigest()[:32]}"


class Auth(enum.Enum):
    OK = "ok"
    DENIED = "denied"  # no, malformed or wrong credentials: challenge again
    STALE = "stale"  # right credentials on an expired nonce: the client may retry at once


def challenge(nonce: str, stale: bool = False) -> str:
    header = f'Digest realm="{REALM}", qop="auth", algorithm={ALGORITHM}, nonce="{nonce}"'
    return header + (", stale=true" if stale else "")


_PARAM = re.compile(r'\s*([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))\s*(?:,|$)')


def parse_authorization(header: str | None) -> dict[str, str] | None:
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m:
            return None
        quoted, bare = m.group(2), m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        pos = m.end()
    return params


def check_authorization(header: str | None, method: str, target: str, *, creds: Credentials,
                        secret: bytes, now: float) -> Auth:
    p = parse_authorization(header)
    if p is None:
        return Auth.DENIED
    needed = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
    if any(k not in p for k in needed):
        return Auth.DENIED
    # The digest covers `uri`, so it must be this request's, or a captured digest could be
    # replayed on another outlet.
    if (p["realm"] != REALM or p["uri"] != target or p["qop"] != "auth"
            or p.get("algorithm", "MD5").upper() != ALGORITHM):
        return Auth.DENIED
    stamp, _, _ = p["nonce"].partition(".")
    if not stamp.isdigit() or not hmac.compare_digest(p["nonce"], make_nonce(secret, int(stamp))):
        return Auth.DENIED
    ha1 = _h(f"{creds.user}:{REALM}:{creds.password}")
    expected = _h(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{_h(f'{method}:{target}')}")
    if not (hmac.compare_digest(p["username"], creds.user)
            and hmac.compare_digest(p["response"], expected)):
        return Auth.DENIED
    # Nonce counts are not tracked: a replay within the lifetime repeats an idempotent
    # request on the same outlet, which is no more than its sender already did.
    if now - int(stamp) > NONCE_LIFETIME:
        return Auth.STALE
    return Auth.OK


def unauthorized(nonce: str, stale: bool = False) -> Reply:
    return _error(401, "authentication required", ("WWW-Authenticate", challenge(nonce, stale)))
