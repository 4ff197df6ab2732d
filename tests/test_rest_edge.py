"""The REST edge: envelope, authentication, dispatch, body parsing and rate limits."""

from __future__ import annotations

import base64
import json
import zlib

import pytest
from TLSSigAPIv2 import TLSSigAPIv2

from opentim.domain.apps import App
from tests.helpers import Server, import_accounts

PATH = "im_open_login_svc/account_check"
BODY = {"CheckItem": [{"UserID": "nobody"}]}


async def test_ok_envelope_comes_first(tim) -> None:
    reply = await tim.call(PATH, BODY)
    assert list(reply)[:3] == ["ActionStatus", "ErrorCode", "ErrorInfo"]
    assert reply["ActionStatus"] == "OK" and reply["ErrorCode"] == 0 and reply["ErrorInfo"] == ""


async def test_http_status_is_200_for_failures(server: Server, app: App) -> None:
    async with server.client(app, usersig="garbage") as tim, server.http() as http:
        response = await http.post(f"/v4/{PATH}", content=b"{}", params=tim.params())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["ActionStatus"] == "FAIL"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"sdkappid": None}, 60012),
        ({"sdkappid": ""}, 60012),
        ({"sdkappid": "abc"}, 60006),
        ({"sdkappid": "\u00b2"}, 60006),
        ({"sdkappid": "999"}, 70020),
        ({"identifier": None}, 60004),
        ({"identifier": ""}, 60004),
        ({"usersig": None}, 70002),
        ({"usersig": ""}, 70002),
        ({"usersig": "not-a-sig!"}, 70003),
        ({"usersig": "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwo"}, 70003),
        ({"random": None}, 60002),
        ({"random": "x"}, 60002),
        ({"random": "4294967296"}, 60002),
        ({"random": "\u00b2"}, 60002),
        # past int()'s 4300-digit limit: the Tencent code, never an internal error
        ({"sdkappid": "1" * 5000}, 60006),
        ({"sdkappid": "1" * 20}, 60006),
        ({"sdkappid": "9" * 19}, 70020),
        ({"random": "1" * 5000}, 60002),
        ({"random": "1" * 11}, 60002),
    ],
)
async def test_query_parameter_errors(server: Server, app: App, params, code) -> None:
    async with server.client(app) as tim:
        reply = await tim.raw(PATH, json.dumps(BODY).encode(), **params)
    assert (reply["ActionStatus"], reply["ErrorCode"]) == ("FAIL", code), reply
    assert reply["ErrorInfo"]


async def test_random_bounds_accepted(server: Server, app: App) -> None:
    async with server.client(app) as tim:
        for random in ("0", "4294967295", "0" * 30 + "4294967295"):
            reply = await tim.raw(PATH, json.dumps(BODY).encode(), random=random)
            assert reply["ErrorCode"] == 0


async def test_usersig_failures_map_to_codes(server: Server, app: App) -> None:
    other = await server.new_app()
    signer = TLSSigAPIv2(app.sdkappid, app.secret_key)
    cases = {
        # sig made for another app
        TLSSigAPIv2(other.sdkappid, other.secret_key).gen_sig("administrator"): 70014,
        # sig made for another identifier
        signer.gen_sig("someone_else"): 70013,
        # expired (negative lifetime)
        signer.gen_sig("administrator", expire=-10): 70001,
        # signed with another key
        TLSSigAPIv2(app.sdkappid, "0" * 64).gen_sig("administrator"): 70009,
        # a TRTC-style sig carrying userbuf
        signer.gen_sig_with_userbuf("administrator", 3600, b"abc"): 70009,
    }
    for sig, code in cases.items():
        async with server.client(app, usersig=sig) as tim:
            reply = await tim.call(PATH, BODY)
        assert reply["ErrorCode"] == code, (code, reply)


async def test_tampered_sig_fails_hmac(server: Server, app: App) -> None:
    sig = TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig("administrator")
    doc = json.loads(zlib.decompress(base64.b64decode(
        sig.replace("*", "+").replace("-", "/").replace("_", "="))))
    doc["TLS.expire"] += 1
    forged = base64.b64encode(zlib.compress(json.dumps(doc).encode())).decode()
    forged = forged.replace("+", "*").replace("/", "-").replace("=", "_")
    async with server.client(app, usersig=forged) as tim:
        assert (await tim.call(PATH, BODY))["ErrorCode"] == 70009


async def test_expiry_is_checked_on_cached_sigs(server: Server, app: App) -> None:
    sig = TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig("administrator", expire=100)
    async with server.client(app, usersig=sig) as tim:
        assert (await tim.call(PATH, BODY))["ErrorCode"] == 0
        server.clock.advance(200)
        assert (await tim.call(PATH, BODY))["ErrorCode"] == 70001


async def test_non_admin_identifier(server: Server, app: App) -> None:
    async with server.client(app, identifier="alice") as tim:
        reply = await tim.call(PATH, BODY)
    assert reply["ErrorCode"] == 60010


async def test_additional_admins(server: Server) -> None:
    app = await server.new_app(admins=frozenset({"ops", "backend"}))
    async with server.client(app, identifier="backend") as tim:
        assert (await tim.call(PATH, BODY))["ErrorCode"] == 0
    async with server.client(app, identifier="administrator") as tim:
        assert (await tim.call(PATH, BODY))["ErrorCode"] == 60010


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", 60003),
        (b"   ", 60003),
        (b"{", 60003),
        (b"{\"CheckItem\": [}", 60003),
        (b"[1, 2]", 60003),
        (b"\"text\"", 60003),
        (b"null", 60003),
        (b"{\"CheckItem\": \"u1\"}", 70402),
        (b"{}", 70402),
    ],
)
async def test_body_errors(tim, content: bytes, code: int) -> None:
    reply = await tim.raw(PATH, content)
    assert reply["ErrorCode"] == code, reply


async def test_group_service_invalid_parameter_is_10004(tim) -> None:
    reply = await tim.call("group_open_http_svc/create_group", {"Type": 5, "Name": "x"})
    assert reply["ErrorCode"] == 10004
    assert "Type" in reply["ErrorInfo"]


async def test_oversized_body(tim, server: Server) -> None:
    limit = server.runtime.settings.max_body_bytes
    content = b'{"CheckItem": [], "pad": "' + b"x" * limit + b'"}'
    reply = await tim.raw(PATH, content)
    assert reply["ErrorCode"] == 60002
    assert str(limit) in reply["ErrorInfo"]


async def test_unknown_fields_are_ignored(tim) -> None:
    reply = await tim.call(PATH, {**BODY, "Whatever": {"nested": [1]}, "Extra": 1})
    assert reply["ErrorCode"] == 0


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("no_such_svc/foo", 60009),
        ("im_open_login_svc/no_such_command", 60009),
        ("group_open_http_svc/no_such_command", 10003),
        ("group_open_avchatroom_http_svc/no_such_command", 10003),
        ("a/b/c", 60009),
        ("only_one_segment", 60009),
    ],
)
async def test_unknown_service_or_command(tim, path: str, code: int) -> None:
    reply = await tim.call(path, {})
    assert reply["ErrorCode"] == code, reply
    assert reply["ErrorInfo"]


async def test_get_is_refused_with_an_envelope(server: Server, tim) -> None:
    async with server.http() as http:
        response = await http.get(f"/v4/{PATH}", params=tim.params())
    assert response.status_code == 200
    assert response.json()["ErrorCode"] == 60002


async def test_rate_limit_per_app_per_command(server: Server) -> None:
    app = await server.new_app(rate_limit=5)
    server.clock.pinned = 1_000_000.0 + server.clock()
    async with server.client(app) as tim:
        codes = [(await tim.call(PATH, BODY))["ErrorCode"] for _ in range(7)]
        assert codes == [0] * 5 + [60007] * 2
        # another command has its own budget
        other = await tim.call("im_open_login_svc/account_import", {"UserID": "u"})
        assert other["ErrorCode"] == 0
        # the budget refills with time
        server.clock.advance(1.0)
        assert (await tim.call(PATH, BODY))["ErrorCode"] == 0
    # another app is not affected
    other_app = await server.new_app(rate_limit=5)
    async with server.client(other_app) as tim:
        assert (await tim.call(PATH, BODY))["ErrorCode"] == 0


async def test_rate_limit_off(server: Server) -> None:
    app = await server.new_app(rate_limit=0)
    server.clock.pinned = server.clock()
    async with server.client(app) as tim:
        for _ in range(300):
            assert (await tim.call(PATH, BODY))["ErrorCode"] == 0


async def test_multiaccount_import_gets_half_the_rate(server: Server) -> None:
    app = await server.new_app(rate_limit=4)
    server.clock.pinned = server.clock()
    async with server.client(app) as tim:
        codes = [(await tim.call("im_open_login_svc/multiaccount_import",
                                 {"AccountList": [{"UserID": "a"}]}))["ErrorCode"]
                 for _ in range(3)]
    assert codes == [0, 0, 60007]


async def test_a_limit_of_one_never_rounds_to_off(server: Server) -> None:
    app = await server.new_app(rate_limit=1)
    server.clock.pinned = server.clock()
    async with server.client(app) as tim:
        codes = [(await tim.call("im_open_login_svc/multiaccount_import",
                                 {"AccountList": [{"UserID": "a"}]}))["ErrorCode"]
                 for _ in range(2)]
    assert codes == [0, 60007]


async def test_app_changes_reach_the_running_server(server: Server, app: App) -> None:
    import dataclasses

    async with server.client(app) as tim:
        await import_accounts(tim, "u1")
    new_key = "ab" * 32
    await server.runtime.store.apps.save(dataclasses.replace(app, secret_key=new_key), now=0)
    await server.runtime.apps.refresh()
    rotated = dataclasses.replace(app, secret_key=new_key)
    async with server.client(rotated) as tim:
        assert (await tim.call(PATH, BODY))["ErrorCode"] == 0
    async with server.client(app) as tim:
        assert (await tim.call(PATH, BODY))["ErrorCode"] == 70009


async def test_internal_errors_are_enveloped(tim, server: Server, monkeypatch) -> None:
    async def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(server.runtime.store.groups, "get", broken)
    reply = await tim.call("group_open_http_svc/get_group_info", {"GroupIdList": ["g1"]})
    assert reply["ErrorCode"] == 10002
    assert "disk on fire" not in reply["ErrorInfo"]


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("group_open_http_svc/get_group_counter", 10003),
        ("group_open_avchatroom_http_svc/del_robots_x", 10003),
        ("openim/modify_c2c_msg", 60009),
        ("all_member_push/im_push", 60009),
        ("recentcontact/get_list", 60009),
        ("sns/friend_add", 60009),
    ],
)
async def test_tencent_commands_opentim_lacks(tim, path: str, code: int) -> None:
    reply = await tim.call(path, {})
    assert reply["ErrorCode"] == code, reply
    if path.endswith("_x"):  # not Tencent's: a typo, with a suggestion
        assert reply["ErrorInfo"].startswith("unknown command 'del_robots_x'"), reply
        assert "did you mean 'del_robots'?" in reply["ErrorInfo"]
    else:
        assert reply["ErrorInfo"].startswith(
            f"{path} is a Tencent Cloud Chat command not implemented by OpenTIM "
            "(see docs/rest-commands.md#coverage"), reply
        assert "cloud.tencent.com" in reply["ErrorInfo"] or "trtc.io" in reply["ErrorInfo"]


async def test_typos_stay_unknown(tim) -> None:
    reply = await tim.call("group_open_http_svc/creat_group", {})
    assert reply["ErrorCode"] == 10003
    assert reply["ErrorInfo"] == ("unknown command 'creat_group' in service "
                                  "'group_open_http_svc': did you mean 'create_group'?")
    reply = await tim.call("openim/sendmgs", {})
    assert (reply["ErrorCode"], reply["ErrorInfo"]) == (
        60009, "unknown command 'sendmgs' in service 'openim': did you mean 'sendmsg'?")
    reply = await tim.call("group_open_htp_svc/create_group", {})
    assert (reply["ErrorCode"], reply["ErrorInfo"]) == (
        60009, "unknown service 'group_open_htp_svc': did you mean 'group_open_http_svc'?")
    reply = await tim.call("zzz/" + "y" * 500, {})
    assert (reply["ErrorCode"], reply["ErrorInfo"]) == (60009, "unknown service 'zzz'")
    reply = await tim.call("openim/" + "y" * 500, {})
    assert reply["ErrorCode"] == 60009 and len(reply["ErrorInfo"]) < 120, reply


def test_every_registered_command_is_a_tencent_command() -> None:
    from opentim.protocol import dispatch, tencent_commands

    dispatch.load_services()
    assert [key for key in dispatch.COMMANDS if tencent_commands.doc_page(*key) is None] == []


def test_coverage_page_is_the_rendered_registry() -> None:
    """docs/rest-commands.md#coverage is exactly what the code renders; regenerate it with
    ``python -m opentim.protocol.coverage --write`` after adding a command."""
    from pathlib import Path

    from opentim.protocol import coverage, dispatch, tencent_commands

    doc = (Path(__file__).parents[1] / "docs" / "rest-commands.md").read_text(encoding="utf-8")
    section = coverage.section_in(doc)
    assert section == coverage.current(), "run: python -m opentim.protocol.coverage --write"
    # what the hand-kept table was checked for, on the page as generated
    missing = [f"{svc}/{cmd}" for svc, commands in tencent_commands.COMMANDS.items()
               for cmd in commands if f"`{cmd}`" not in section or f"`{svc}`" not in section]
    assert missing == []
    for svc, cmd in dispatch.COMMANDS:
        assert f"| `{cmd}` | yes" in section, (svc, cmd)


def test_coverage_rendering_refuses_inputs_that_disagree() -> None:
    from opentim.protocol import coverage, tencent_commands

    tencent = {"svc": {"a": "https://trtc.io/document/1", "b": tencent_commands.REST_API_LIST}}
    table = coverage.render(tencent, {("svc", "a")}, notes={("svc", "a"): "partly"})
    assert "| `a` | yes (partly) | [trtc 1](https://trtc.io/document/1) |" in table
    assert "| `b` | no | [list](" in table
    with pytest.raises(ValueError, match="not in tencent_commands"):
        coverage.render(tencent, {("svc", "typo")}, notes={})
    with pytest.raises(ValueError, match="notes for commands"):
        coverage.render(tencent, {("svc", "a")}, notes={("svc", "b"): "partly"})
    # --write replaces the section only, whether or not another section follows it
    page = "# T\n\n## Coverage\n\nold\n\n## Next\n\ntext\n"
    assert coverage.replaced(page, "## Coverage\n\nnew\n") == \
        "# T\n\n## Coverage\n\nnew\n\n## Next\n\ntext\n"
    assert coverage.section_in(page) == "## Coverage\n\nold\n"
    assert coverage.replaced("# T\n\n## Coverage\nold\n", "## Coverage\nnew\n") == \
        "# T\n\n## Coverage\nnew\n"


async def test_error_texts_say_what_to_do(server: Server, app: App) -> None:
    signer = TLSSigAPIv2(app.sdkappid, app.secret_key)
    expired = signer.gen_sig("administrator", expire=100)  # made now (real time), 100 s
    server.clock.advance(1000)
    async with server.client(app, usersig=expired) as tim:
        reply = await tim.call(PATH, BODY)
    assert reply["ErrorCode"] == 70001
    assert reply["ErrorInfo"].startswith("UserSig expired at 20"), reply
    assert reply["ErrorInfo"].endswith("Z (TLS.time + TLS.expire): generate a new UserSig")
    for sig in ("eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwo", "not-a-sig!"):
        async with server.client(app, usersig=sig) as tim:
            reply = await tim.call(PATH, BODY)
        assert reply["ErrorCode"] == 70003
        assert reply["ErrorInfo"].startswith(
            "UserSig is not a valid UserSig: it is not base64"), reply
        assert "padding" not in reply["ErrorInfo"] and "Error" not in reply["ErrorInfo"]
    not_zlib = base64.b64encode(b"plain bytes").decode().replace("=", "_")
    async with server.client(app, usersig=not_zlib) as tim:
        reply = await tim.call(PATH, BODY)
    assert (reply["ErrorCode"], reply["ErrorInfo"].split(".")[0]) == (
        70003, "UserSig is not a valid UserSig: its base64 does not hold a zlib stream")
    async with server.client(app) as tim:
        reply = await tim.raw(PATH, json.dumps(BODY).encode(), sdkappid="999")
    assert reply["ErrorCode"] == 70020
    assert "`opentim app create --sdkappid 999`" in reply["ErrorInfo"], reply


async def test_a_sig_nested_deep_inside_is_undecodable(server: Server, app: App) -> None:
    # 4 KB inflated, 65 bytes on the wire: the JSON decoder hits the recursion limit.
    doc = b'{"x":' + b"[" * 2000 + b"]" * 2000 + b"}"
    sig = base64.b64encode(zlib.compress(doc)).decode()
    sig = sig.replace("+", "*").replace("/", "-").replace("=", "_")
    async with server.client(app, usersig=sig) as tim:
        assert (await tim.call(PATH, BODY))["ErrorCode"] == 70003
