"""The power switch's protocol (Digital Loggers REST, digest auth) without sockets."""

import json

import pytest
from requests.auth import HTTPDigestAuth

from hil.labgrid import credentials
from hil.virtual_lab.power import dli
from hil.virtual_lab.power.switch import parse_outlets

PATH = "/restapi/relay/outlets/=1/state/"
OUTLETS = {0, 1, 7}
CREDS = dli.Credentials("hil", "s3cret")
SECRET = b"k" * 32
NOW = 1_800_000_000.0


def parse(method="GET", target=PATH, body=b"", csrf="x"):
    return dli.parse_request(method, target, body, csrf=csrf, outlets=OUTLETS)


def test_get_asks_for_the_outlets_state():
    assert parse() == dli.GetState(1)
    assert parse(target="/restapi/relay/outlets/=0/state") == dli.GetState(0)


@pytest.mark.parametrize("body,on", [(b"value=true", True), (b"value=false", False)])
def test_put_sets_the_outlet(body, on):
    assert parse("PUT", body=body) == dli.SetState(1, on)


def test_state_is_a_json_list_of_one_as_the_backend_reads_it():
    reply = dli.state_reply(True)
    assert reply.status == 200 and json.loads(reply.body)[0] is True
    assert json.loads(dli.state_reply(False).body) == [False]
    assert dli.set_reply().status // 100 == 2


@pytest.mark.parametrize("target,status", [
    ("/restapi/relay/outlets/=3/state/", 404),       # not an outlet of this switch
    ("/restapi/relay/outlets/all;/state/", 404),     # not served: labgrid never asks
    ("/restapi/relay/outlets/=1/", 404),
    ("/", 404),
])
def test_unknown_resources_are_404(target, status):
    reply = parse(target=target)
    assert isinstance(reply, dli.Reply) and reply.status == status


@pytest.mark.parametrize("kw,status", [
    ({"method": "POST"}, 405),
    ({"method": "PUT", "body": b"value=true", "csrf": None}, 403),
    ({"method": "PUT", "body": b"value=on"}, 400),
    ({"method": "PUT", "body": b"value=true&value=false"}, 400),
    ({"method": "PUT", "body": b"value=true&x=1"}, 400),
    ({"method": "PUT", "body": b""}, 400),
    ({"method": "PUT", "body": b"\xff"}, 400),
])
def test_bad_requests_get_an_error_and_change_nothing(kw, status):
    reply = parse(**kw)
    assert isinstance(reply, dli.Reply) and reply.status == status


def client_header(method, target, nonce, creds=CREDS):
    """What requests' HTTPDigestAuth (labgrid's client) answers to our challenge."""
    auth = HTTPDigestAuth(creds.user, creds.password)
    auth.init_per_thread_state()
    auth._thread_local.chal = dli.parse_authorization(dli.challenge(nonce))
    return auth.build_digest_header(method, f"http://127.0.0.1:1{target}")


def check(header, method="PUT", target=PATH, now=NOW):
    return dli.check_authorization(header, method, target, creds=CREDS, secret=SECRET, now=now)


def test_labgrids_digest_answer_is_accepted():
    header = client_header("PUT", PATH, dli.make_nonce(SECRET, NOW))
    assert check(header) is dli.Auth.OK


def test_wrong_or_missing_credentials_are_denied():
    nonce = dli.make_nonce(SECRET, NOW)
    assert check(None) is dli.Auth.DENIED
    assert check("Basic aGlsOnMzY3JldA==") is dli.Auth.DENIED
    assert check(client_header("PUT", PATH, nonce, dli.Credentials("hil", "guess"))) \
        is dli.Auth.DENIED
    assert check(client_header("PUT", PATH, nonce, dli.Credentials("root", "s3cret"))) \
        is dli.Auth.DENIED
    assert check('Digest username="hil", realm=') is dli.Auth.DENIED


def test_a_digest_holds_for_its_own_request_only():
    header = client_header("PUT", PATH, dli.make_nonce(SECRET, NOW))
    assert check(header, target="/restapi/relay/outlets/=0/state/") is dli.Auth.DENIED
    assert check(header, method="GET") is dli.Auth.DENIED


def test_nonces_are_the_switchs_own_and_expire():
    forged = client_header("PUT", PATH, dli.make_nonce(b"other" * 8, NOW))
    assert check(forged) is dli.Auth.DENIED
    old = client_header("PUT", PATH, dli.make_nonce(SECRET, NOW - dli.NONCE_LIFETIME - 1))
    assert check(old) is dli.Auth.STALE
    assert "stale=true" in dict(dli.unauthorized("n", stale=True).headers)["WWW-Authenticate"]


def test_challenge_parses_back():
    p = dli.parse_authorization(dli.challenge("123.abc"))
    assert p == {"realm": dli.REALM, "qop": "auth", "algorithm": "SHA-256", "nonce": "123.abc"}


def test_credentials_never_show_the_password():
    assert "s3cret" not in repr(CREDS)
    assert credentials.parse_credentials("hil:s3cret\n") == CREDS
    assert credentials.parse_credentials("hil:a:b").password == "a:b"
    for bad in ("", "hil", "hil:", ":pw"):
        with pytest.raises(ValueError):
            credentials.parse_credentials(bad)


def test_credentials_must_survive_labgrids_host_url():
    assert credentials.credentials_problem(dli.Credentials("hil", "Ab3_x-y.z~")) is None
    for password in ("a@b", "a:b", "a/b", "a%40", "a b", "a#b"):
        assert credentials.credentials_problem(dli.Credentials("hil", password))


def test_outlets_are_argv_lists():
    assert parse_outlets(["1=sleep 1000", "2=qemu -append 'console=ttyAMA0 quiet'"]) == {
        1: ["sleep", "1000"], 2: ["qemu", "-append", "console=ttyAMA0 quiet"]}
    for bad in (["sleep"], ["x=sleep"], ["1="], ["1=a 'b"], ["1=a", "1=b"]):
        with pytest.raises(ValueError):
            parse_outlets(bad)
