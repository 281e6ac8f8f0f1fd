"""Provider API calls keep the key to themselves: no redirects, no key in any message."""

from __future__ import annotations

import pytest

from providers.errors import AuthFailed, ProtocolError
from providers.hitpaw import HitPawClient
from providers.http import ApiSession
from providers.picwish import PicWishClient
from tests.providers.conftest import CannedServer

KEY = "sk-DISTINCT-c0ffee-7e57-key"


def api(url: str, key: str = KEY, header: str = "Apikey") -> ApiSession:
    return ApiSession("hitpaw", url, header, key, connect_timeout_s=1.0, read_timeout_s=2.0)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("header", ["Apikey", "X-API-KEY"])
def test_redirect_to_another_port_never_receives_the_key(canned, status, header):
    with CannedServer() as elsewhere:
        elsewhere.add(200, {"code": 200, "data": {"job_id": "stolen"}})
        canned.add(status, "", headers={"Location": elsewhere.base_url + "/collect"})
        with pytest.raises(ProtocolError, match=f"redirect \\(HTTP {status}\\)") as caught:
            api(canned.base_url, header=header).request("POST", "/api/photo-enhancer", json={})
        assert elsewhere.received == []
    assert caught.value.code == "protocol_error"
    assert canned.received[0].headers[header] == KEY  # the one call that went out


def test_clients_refuse_redirects_end_to_end(canned):
    with CannedServer() as elsewhere:
        canned.add(302, "", headers={"Location": elsewhere.base_url + "/x"})
        canned.add(307, "", headers={"Location": elsewhere.base_url + "/y"})
        with pytest.raises(ProtocolError):
            HitPawClient(KEY, base_url=canned.base_url).query("job-1")
        with pytest.raises(ProtocolError):
            PicWishClient(KEY, base_url=canned.base_url).query("task-1")
        assert elsewhere.received == []


@pytest.mark.parametrize("raw", [KEY + "\n", " " + KEY, "\t" + KEY + "\r\n"])
def test_key_sent_stripped(canned, raw):
    canned.add(200, {})
    api(canned.base_url, key=raw).request("GET", "/")
    assert canned.received[0].headers["Apikey"] == KEY


@pytest.mark.parametrize("raw", [KEY[:6] + "\n" + KEY[6:], KEY + "\x00", KEY[:4] + "é" + KEY])
def test_key_with_a_control_character_refused_without_showing_it(raw):
    with pytest.raises(AuthFailed) as caught:
        api("http://127.0.0.1:9", key=raw)
    for text in (str(caught.value), repr(caught.value), str(caught.value.to_dict())):
        assert KEY[:6] not in text and KEY[6:] not in text


def test_key_never_in_client_reprs():
    for client in (HitPawClient(KEY + "\n"), PicWishClient(" " + KEY)):
        assert KEY not in repr(client) and KEY not in str(vars(client))
