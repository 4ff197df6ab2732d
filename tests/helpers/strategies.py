"""Hypothesis strategies for the fuzz tests: request bodies and gateway frames derived from
the msgspec request Structs, filled with the IDs of a small world, and their mutations.

- ``bodies(struct, world)``: well-typed documents. Each field's strategy comes from its
  msgspec type (``msgspec.inspect.type_info``) and, for the fields whose name says what
  they hold (accounts, groups, group types, marks, times, message keys, …), mostly from
  the world's real values, so that generated calls get past the lookups into the deep
  branches.
- ``mutated(docs)``: the same documents broken one way each: a value of the wrong type,
  a NUL, a huge integer, a long string, deep nesting, an unknown field, a missing field,
  emptied lists, a list of up to 40,000 items, or bytes that are not a JSON object.
- ``payloads(struct, world)``: mostly the first, sometimes the second: what a fuzz test
  sends (a document to encode, or raw bytes). ``frames(cmd, struct, world)``: the same
  for gateway frames.

Nothing here names a command: a command added to the registry is fuzzed as soon as it is
registered, its fields getting the type-derived strategy (and a hint if its name is one
the tables below know).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import given, settings
from hypothesis import strategies as st

from opentim.client.rest import RestClient
from opentim.domain.group_admin import MSG_FLAGS, MUTE_ALL_VALUES
from opentim.domain.groups import GroupType, InviteOption, JoinOption, Role
from opentim.domain.members import MEMBER_FIELDS
from opentim.domain.messages import MSG_PRIORITIES, MSG_TYPES
from opentim.domain.profiles import STANDARD
from opentim.protocol.fields import INT64_MAX, UINT32_MAX

Json = Any
Strategy = st.SearchStrategy


# --- the world the bodies refer to --------------------------------------------------------


@dataclass(frozen=True)
class World:
    """Accounts, groups and messages of one app, for generated bodies to name."""

    now: int
    accounts: tuple[str, ...]
    groups: tuple[str, ...]
    msg_keys: tuple[str, ...] = ()
    next_tokens: tuple[str, ...] = ()
    # IDs that name nothing, so that the "not found" branches are reached too.
    ghost_accounts: tuple[str, ...] = ("ghost", "administrator")
    ghost_groups: tuple[str, ...] = ("@TGS#2NOSUCHGRP", "nosuch")


WORLD_ACCOUNTS = ("a", "b", "c", "d")
CUSTOM_TAG = "Test"  # the app's custom profile tag: Tag_Profile_Custom_Test


async def build_world(tim: RestClient, now: int) -> World:
    """Accounts a-d; a group of every type owned by a (b and d members where members are
    added), and an old imported one; two group messages and a one-to-one message."""
    from tests.helpers.calls import create_group, import_accounts

    await import_accounts(tim, *WORLD_ACCOUNTS)
    members = [{"Member_Account": "b"}, {"Member_Account": "d"}]
    kv = [{"Key": "k", "Value": "v"}]
    public = await create_group(tim, "Public", Owner_Account="a", MemberList=members,
                                AppDefinedData=kv)
    private = await create_group(tim, "Private", Owner_Account="a", MemberList=members)
    chatroom = await create_group(tim, "ChatRoom", Owner_Account="a", MemberList=members)
    community = await create_group(tim, "Community", Owner_Account="a", MemberList=members)
    av = await create_group(tim, "AVChatRoom", Owner_Account="a")
    old = (await tim.ok("group_open_http_svc/import_group", {
        "Type": "Public", "Name": "old", "Owner_Account": "a", "CreateTime": now - 10_000,
        "MemberList": [{"Member_Account": "b"}]}))["GroupId"]
    body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]
    for random in (1, 2):
        await tim.ok("group_open_http_svc/send_group_msg",
                     {"GroupId": public, "Random": random, "MsgBody": body,
                      "From_Account": "a"})
    sent = await tim.ok("openim/sendmsg", {"From_Account": "a", "To_Account": "b",
                                           "MsgRandom": 7, "MsgBody": body})
    page = await tim.ok("group_open_http_svc/get_group_member_info",
                        {"GroupId": community, "Limit": 1})
    # The live groups twice: more commands apply to them only.
    return World(now=now, accounts=WORLD_ACCOUNTS,
                 groups=(public, private, chatroom, community, community, av, av, old),
                 msg_keys=tuple(k for k in (sent.get("MsgKey"),) if k),
                 next_tokens=tuple(t for t in (page.get("Next"),) if t))


# --- plain JSON ---------------------------------------------------------------------------

_SCALARS: Strategy[Json] = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
)
JSON: Strategy[Json] = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)

# Strings a column or a limit might choke on.
_AWKWARD_TEXT = ("", " ", "é" * 17, "\U0001f600" * 9, "x" * 33, "x" * 49, "x" * 65,
                 "x" * 129, "x" * 501, "é" * 300, "x" * 5000, "a\\u0000b", "%00", "'; --",
                 "\u202e", "\ud7ff", "\t\n", "null")
TEXT: Strategy[str] = st.one_of(st.text(max_size=16), st.sampled_from(_AWKWARD_TEXT))
_PLAIN_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
                      max_size=16)


def _pick(values: Any) -> Strategy[Any]:
    return st.sampled_from(tuple(values))


def _often(likely: Strategy[Any], other: Strategy[Any], weight: int = 8) -> Strategy[Any]:
    """``likely`` about ``weight`` times out of ``weight + 1``, and shrinking prefers it.
    (``st.one_of`` cannot weigh: it drops a strategy it was given twice.)"""
    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        return draw(other if draw(st.integers(0, weight)) == weight else likely)

    return pick()


# --- what a field's name says about its values --------------------------------------------

_GROUP_INFO_FIELDS = ("Type", "Name", "Introduction", "Notification", "FaceUrl",
                      "Owner_Account", "CreateTime", "LastInfoTime", "LastMsgTime",
                      "NextMsgSeq", "MemberNum", "MaxMemberNum", "ApplyJoinOption",
                      "InviteJoinOption", "MuteAllMember", "AppDefinedData", "Nope")
_GROUP_TYPES = tuple(t.value for t in GroupType)
_PROFILE_TAGS = (*sorted(STANDARD), f"Tag_Profile_Custom_{CUSTOM_TAG}")
_MARKS = (500, 600, 1000, 1001, 1002)
_KEYS = ("k", "k2", "attr")

Hint = Callable[[World], Strategy[Any]]


def _accounts(w: World) -> Strategy[str]:
    return _often(_pick(w.accounts), _pick(w.ghost_accounts))


def _groups(w: World) -> Strategy[str]:
    return _often(_pick(w.groups), _pick(w.ghost_groups))


def _times(w: World) -> Strategy[int]:
    return _often(st.integers(w.now - 20_000, w.now + 100), _pick((0, 1, -1)), weight=4)


def _small(top: int) -> Hint:
    return lambda w: st.integers(0, top)


def _values(likely: tuple[Any, ...], other: tuple[Any, ...] = ()) -> Hint:
    """One of ``likely`` mostly, one of ``other`` (refused values) sometimes."""
    return lambda w: _often(_pick(likely), _pick(other), weight=6) if other else _pick(likely)


_STR_HINTS: dict[str, Hint] = {
    "GroupId": _groups, "GroupIdList": _groups,
    "Type": _values(_GROUP_TYPES, ("Work", "Meeting", "BChatRoom", "public")),
    "GroupType": _values(_GROUP_TYPES, ("Work", "BChatRoom")),
    "Role": _values(tuple(r.value for r in Role), ("member",)),
    "MemberRoleFilter": _values(tuple(r.value for r in Role)),
    "ApplyJoinOption": _values(tuple(o.value for o in JoinOption), ("Free",)),
    "InviteJoinOption": _values(tuple(o.value for o in InviteOption), ("Free",)),
    "MuteAllMember": _values(MUTE_ALL_VALUES, ("on",)),
    "ShutUpAllMember": _values(MUTE_ALL_VALUES),
    "MsgFlag": _values(MSG_FLAGS, ("Nope",)),
    "MsgType": _values(tuple(sorted(MSG_TYPES)), ("TIMNopeElem",)),
    "MsgPriority": _values(MSG_PRIORITIES, ("Urgent",)),
    "SendMsgControl": _values(("NoUnread", "NoLastMsg"), ("WithMuteNotifications",)),
    "ForbidCallbackControl": _values(("ForbidBeforeSendMsgCallback",
                                      "ForbidAfterSendMsgCallback")),
    "GroupBaseInfoFilter": _values(_GROUP_INFO_FIELDS),
    "MemberInfoFilter": _values(MEMBER_FIELDS, ("Nope",)),
    "SelfInfoFilter": _values(MEMBER_FIELDS, ("Nope",)),
    "AppDefinedDataFilter_Group": _values(_KEYS),
    "AppDefinedDataFilter_GroupMember": _values(_KEYS),
    "Key": _values(_KEYS, ("",)), "key": _values(_KEYS, ("",)),
    "Tag": _values(_PROFILE_TAGS, ("Tag_Profile_Custom_Nope", "Tag_SNS_IM_Remark", "")),
    "TagList": _values(_PROFILE_TAGS, ("Tag_Profile_Custom_Nope", "")),
    "MsgKey": lambda w: _often(_pick(w.msg_keys or ("1_2_3",)), _pick(("1_2_3", "x"))),
    "LastMsgKey": lambda w: _often(_pick(w.msg_keys or ("",)), _pick(("1_2_3", "", "x"))),
    "Next": lambda w: _often(_pick(w.next_tokens or ("",)), _pick(("", "x"))),
    "TopicId": _values(("",), ("@TGS#_@TGS#cX@TOPIC#_t",)),
    "MsgReadTime": lambda w: _pick((str(w.now), "", "x")),
}
_INT_HINTS: dict[str, Hint] = {
    "CreateTime": _times, "JoinTime": _times, "SendTime": _times, "MsgTimeStamp": _times,
    "MinTime": _times, "MaxTime": _times, "MsgReadTime": _times,
    "Marks": _values(_MARKS, (0, 499, 999, UINT32_MAX)),
    "Mark": _values(_MARKS, (0, 499, 999, UINT32_MAX)),
    "CommandType": _values((1, 2), (0, 3)),
    "MsgSeq": lambda w: _often(st.integers(1, 6), st.just(0), weight=4),
    "ReqMsgSeq": _small(6), "ReqMsgNumber": _small(25), "MaxCnt": _small(30),
    "Limit": lambda w: _often(st.integers(1, 30), st.integers(0, 6001), weight=4),
    "Offset": _small(5), "Next": _small(5), "Timestamp": _small(3), "UnreadMsgNum": _small(5),
    "MuteTime": _values((0, 60, 86400)), "ShutUpTime": _values((0, 60, 86400)),
    "Duration": _values((60, 86400), (0,)), "MsgLifeTime": _values((0, 60, 604800)),
    "MaxMemberCount": _values((10, 100, 2000), (0, 6001)),
    "MaxMemberNum": _values((10, 100, 2000), (0, 6001)),
    "SyncOtherMachine": _values((1, 2), (0, 3)), "SyncFromOldSystem": _values((2, 5), (0, 1)),
    "Random": lambda w: st.integers(0, UINT32_MAX),
    "MsgRandom": lambda w: st.integers(0, UINT32_MAX),
}
# 0/1 switches (anything else is the handler's to refuse).
for _flag in ("Silence", "SupportTopic", "WithRecalledMsg", "RecentContactFlag",
              "IsNeedDetail", "IsReturnInstid", "IsReturnCustomStatus", "WithHugeGroups",
              "WithNoActiveGroups", "SupportMessageExtension", "IsNeedReadReceipt",
              "PushFlag", "OnlineOnlyFlag"):
    _INT_HINTS[_flag] = _values((0, 1), (2,))


def _is_account_field(name: str) -> bool:
    return "Account" in name or name in ("UserID", "Identifier", "Operator")


def _msg_content(w: World) -> Strategy[dict[str, Json]]:
    return st.one_of(
        st.builds(lambda t: {"Text": t}, TEXT),
        st.builds(lambda d, s: {"Data": d, "Desc": s, "Ext": s}, TEXT, TEXT),
        st.builds(lambda i, d: {"Index": i, "Data": d}, st.integers(-1, 300), TEXT),
        st.builds(lambda d: {"Desc": "x", "Latitude": d, "Longitude": d},
                  st.floats(-200, 200, allow_nan=False)),
        st.dictionaries(st.text(max_size=6), JSON, max_size=3),
    )


def _profile_value(w: World) -> Strategy[Json]:
    choices = tuple(itertools.chain.from_iterable(t.choices for t in STANDARD.values()))
    return _often(st.one_of(_PLAIN_TEXT, _pick(choices)), st.one_of(st.integers(0, UINT32_MAX),
                                                                     JSON), weight=3)


def hint(name: str, kind: str, world: World) -> Strategy[Any] | None:
    """What a field called ``name`` usually holds, as a ``kind`` ("str", "int", "any")."""
    if kind == "str" and _is_account_field(name):
        return _accounts(world)
    if kind == "str" and name in _STR_HINTS:
        return _STR_HINTS[name](world)
    if kind == "int" and name in _INT_HINTS:
        return _INT_HINTS[name](world)
    if kind == "any":
        if name == "MsgContent":
            return _msg_content(world)
        if name == "Value":
            return _profile_value(world)
        if _is_account_field(name):
            return _often(_accounts(world), JSON)
    return None


# --- well-typed documents from a msgspec type ---------------------------------------------


def _ints(t: mi.IntType, name: str, world: World) -> Strategy[int]:
    lo = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else -(2**63))
    hi = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else INT64_MAX)
    edges = [v for v in (lo, hi, 2**31, 2**32) if lo <= v <= hi]
    generic = st.one_of(st.integers(max(lo, -2), min(hi, 10)), st.integers(lo, hi),
                        st.sampled_from(edges))
    hinted = hint(name, "int", world)
    if hinted is None:
        return generic
    return _often(hinted.filter(lambda v: lo <= v <= hi), generic)


def _strs(t: mi.StrType, name: str, world: World) -> Strategy[str]:
    if t.pattern is not None:
        return st.from_regex(t.pattern, fullmatch=True)
    lo, hi = t.min_length or 0, t.max_length
    bounded = bool(lo) or hi is not None
    generic = st.text(min_size=lo, max_size=hi if hi is not None else lo + 16) \
        if bounded else _often(_PLAIN_TEXT, TEXT, weight=3)
    hinted = hint(name, "str", world)
    if hinted is None:
        return generic
    if bounded:
        hinted = hinted.filter(lambda s: lo <= len(s) and (hi is None or len(s) <= hi))
    return _often(hinted, generic)


def for_type(t: mi.Type, name: str, world: World) -> Strategy[Json]:
    """Values of msgspec type ``t`` for a field called ``name`` (list items and dict values
    inherit their field's name, so ``Members_Account: list[str]`` gets accounts)."""
    if isinstance(t, mi.StructType):
        return struct_docs(t, world)
    if isinstance(t, mi.UnionType):
        real = [for_type(x, name, world) for x in t.types if not isinstance(x, mi.NoneType)]
        if not real:
            return st.none()
        # The first type mostly (``list[str] | str``: the list), null sometimes.
        value = real[0] if len(real) == 1 else _often(real[0], st.one_of(real[1:]), weight=4)
        return _often(value, st.none()) if len(real) < len(t.types) else value
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        items = for_type(t.item_type, name, world)
        lo = t.min_length or 0
        hi = t.max_length if t.max_length is not None else lo + 4
        # Mostly not empty (an empty list is refused before anything interesting).
        return _often(st.lists(items, min_size=max(lo, 1), max_size=max(min(hi, lo + 3), 1)),
                      st.lists(items, min_size=lo, max_size=min(hi, lo + 4)), weight=4)
    if isinstance(t, mi.TupleType):
        return st.tuples(*(for_type(x, name, world) for x in t.item_types)).map(list)
    if isinstance(t, mi.DictType):
        return st.dictionaries(st.text(max_size=8), for_type(t.value_type, name, world),
                               max_size=4)
    if isinstance(t, mi.IntType):
        return _ints(t, name, world)
    if isinstance(t, mi.StrType):
        return _strs(t, name, world)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.FloatType):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.EnumType):
        return st.sampled_from([m.value for m in t.cls])
    if isinstance(t, mi.AnyType):
        hinted = hint(name, "any", world)
        return JSON if hinted is None else hinted
    return JSON  # a type this module does not know yet: any JSON


def struct_docs(t: mi.StructType, world: World, skip: tuple[str, ...] = ()
                ) -> Strategy[dict[str, Json]]:
    """A Struct's JSON object: its required fields, and each optional one nine times in
    ten (handlers often need fields the Struct leaves optional; shrinking drops them)."""
    fields = [(f.encode_name, f.required, for_type(f.type, f.name, world))
              for f in t.fields if f.encode_name not in skip]

    @st.composite
    def doc(draw: st.DrawFn) -> dict[str, Json]:
        out = {}
        for name, required, values in fields:
            if required or draw(st.integers(0, 9)):
                out[name] = draw(values)
        return out

    return doc()


def bodies(request: type[msgspec.Struct], world: World,
           legacy_fields: tuple[tuple[str, str], ...] = ()) -> Strategy[dict[str, Json]]:
    """Well-typed bodies of ``request``; a field with a legacy name sometimes has it."""
    info = mi.type_info(request)
    assert isinstance(info, mi.StructType), request
    docs = struct_docs(info, world)
    if not legacy_fields:
        return docs

    @st.composite
    def renamed(draw: st.DrawFn) -> dict[str, Json]:
        doc = draw(docs)
        for old, new in legacy_fields:
            if new in doc and draw(st.booleans()):
                doc[old] = doc.pop(new)
        return doc

    return renamed()


# --- mutations ----------------------------------------------------------------------------

Path = tuple[str | int, ...]
WRONG: tuple[Json, ...] = (None, True, False, 0, -1, 1.5, -0.0, 1e308, "", "x", "a\x00b",
                           [], {}, [1], ["x"], {"k": "v"}, 2**63, -(2**63) - 1, 10**30,
                           "9" * 30, [[[[]]]])
HUGE_INTS = (2**63, 2**64, -(2**63) - 1, 10**30, -(10**40))
LONG_LENGTHS = (33, 49, 65, 129, 257, 501, 1025, 4097, 12289, 70_000)
UNKNOWN_KEYS = ("Unknown", "unknown_field", "GroupID", "x" * 200, "k\x00", "")


def paths(doc: Json, path: Path = ()) -> Iterator[tuple[Path, Json]]:
    """Every (path, value) in a document, containers included, the root excluded."""
    items: Any = doc.items() if isinstance(doc, dict) else \
        enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield (*path, key), value
        yield from paths(value, (*path, key))


def _copy(doc: Json) -> Json:
    return msgspec.json.decode(msgspec.json.encode(doc))


def _get(doc: Json, path: Path) -> Json:
    for key in path:
        doc = doc[key]
    return doc


def replaced(doc: Json, path: Path, value: Json) -> Json:
    out = _copy(doc)
    _get(out, path[:-1])[path[-1]] = value
    return out


def nested(depth: int, leaf: Json = None) -> Json:
    """Objects and arrays alternating, ``depth`` levels deep."""
    value: Json = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def _emptied(doc: Json) -> Json:
    if isinstance(doc, list):
        return []
    if isinstance(doc, dict):
        return {k: _emptied(v) for k, v in doc.items()}
    return doc


def raw_garbage(doc: Json) -> Strategy[bytes]:
    """Bodies (or frames) that are not a well-formed JSON object (``doc`` cut off or
    spoiled, or junk), or that nest around the decoder's limit."""
    encoded = msgspec.json.encode(doc)
    depth = st.sampled_from((950, 1000, 1100, 5000, 100_000))
    with_deep_field = (lambda d: encoded[:-1] + b',"Deep":' + b"[" * d + b"]" * d + b"}") \
        if len(encoded) > 2 else (lambda d: b'{"Deep":' + b"[" * d + b"]" * d + b"}")
    return st.one_of(
        st.binary(max_size=48),
        st.integers(1, max(1, len(encoded) - 1)).map(lambda n: encoded[:n]),
        st.sampled_from((b"", b" ", b"\n\t ", b"[]", b"[1]", b'"x"', b"1", b"null", b"true",
                         b"{", b"}", b"{}}", b'{"a":}', b"\xef\xbb\xbf{}", b'{"a":1,"a":2}',
                         b'{"\xff\xfe":1}', b'{"GroupId":"\xc3\x28"}', b"\x00", b"NaN",
                         b'{"a":1e999}', b'{"a":-}', b'{"a":"\\ud800"}')),
        depth.map(lambda d: b"[" * d + b"]" * d),
        depth.map(lambda d: b'{"k":' * d + b"1" + b"}" * d),
        depth.map(with_deep_field),
        st.just(encoded + b"garbage"),
        st.just(b" " * ((1 << 20) + 1)),  # past the default body limit (and any frame's)
    )


MUTATIONS = ("retype", "nul", "huge", "long", "deep", "unknown", "drop", "empty", "many",
             "raw")
# Lists longer than any limit: past the per-call caps (100, 300, 500, 6000) and past the
# databases' bound-parameter limits (32766 in SQLite, 32767 in asyncpg).
MANY = (101, 301, 501, 6001, 40_000)


def _many(items: list[Json], n: int) -> list[Json]:
    """``n`` items like ``items[0]``: distinct strings when it is one, else copies."""
    first = items[0] if items else "x"
    if isinstance(first, str):
        return [f"{first[:8]}{i}" for i in range(n)]
    return [first] * n


@st.composite
def mutated(draw: st.DrawFn, docs: Strategy[dict[str, Json]]) -> Json | bytes:
    """A well-typed document broken in one way (or raw bytes instead of a document)."""
    doc = draw(docs)
    every = list(paths(doc))
    strings = [p for p, v in every if isinstance(v, str)]
    ints = [p for p, v in every if type(v) is int]
    kind = draw(st.sampled_from(MUTATIONS))
    if kind == "retype" and every:
        path = draw(st.sampled_from([p for p, _ in every]))
        return replaced(doc, path, draw(st.one_of(st.sampled_from(WRONG), JSON)))
    if kind == "nul" and strings:
        path = draw(st.sampled_from(strings))
        value = _get(doc, path)
        at = draw(st.integers(0, len(value)))
        return replaced(doc, path, value[:at] + "\x00" + value[at:])
    if kind == "huge" and ints:
        return replaced(doc, draw(st.sampled_from(ints)), draw(st.sampled_from(HUGE_INTS)))
    if kind == "long" and strings:
        n = draw(st.sampled_from(LONG_LENGTHS))
        return replaced(doc, draw(st.sampled_from(strings)), draw(st.sampled_from("xé😀")) * n)
    if kind == "deep":
        value = nested(draw(st.sampled_from((33, 100, 400, 900))))
        if draw(st.booleans()) and every:
            return replaced(doc, draw(st.sampled_from([p for p, _ in every])), value)
        return {**doc, "Deep": value}
    if kind == "drop" and doc:
        out = _copy(doc)
        out.pop(draw(st.sampled_from(sorted(out))))
        return out
    if kind == "empty":
        return _emptied(doc)
    if kind == "many" and (lists := [p for p, v in every if isinstance(v, list)]):
        path = draw(st.sampled_from(lists))
        return replaced(doc, path, _many(_get(doc, path), draw(st.sampled_from(MANY))))
    if kind == "raw":
        return draw(raw_garbage(doc))
    # "unknown", and every kind the document has nothing for
    objects = [p for p, v in every if isinstance(v, dict)]
    key = draw(st.sampled_from(UNKNOWN_KEYS))
    value = draw(JSON)
    if draw(st.booleans()) and objects:
        path = draw(st.sampled_from(objects))
        return replaced(doc, path, {**_get(doc, path), key: value})
    return {**doc, key: value}


def payloads(request: type[msgspec.Struct], world: World,
             legacy_fields: tuple[tuple[str, str], ...] = ()) -> Strategy[Json | bytes]:
    """What a fuzz test sends: a well-typed body about three times in four, else a
    mutated one (a document, or raw bytes)."""
    docs = bodies(request, world, legacy_fields)
    return _often(docs, mutated(docs), weight=3)


def encoded(payload: Json | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else msgspec.json.encode(payload)


# --- gateway frames -----------------------------------------------------------------------

FRAME_IDS: Strategy[Json] = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1),
                                      st.text(max_size=64))
BAD_FRAME_IDS: tuple[Json, ...] = (1.5, True, [], {}, "x" * 65, 2**63, -(2**63) - 1, [1])


def frames(cmd: str, request: type[msgspec.Struct], world: World) -> Strategy[Json | bytes]:
    """Frames of gateway command ``cmd`` with ``request``'s fields: mostly well typed,
    with an ``id`` or none; sometimes mutated, or with an ``id`` the server won't echo."""
    info = mi.type_info(request)
    assert isinstance(info, mi.StructType), request
    fields = struct_docs(info, world, skip=("cmd", "id"))
    docs = st.builds(lambda d, i: {"cmd": cmd, **({"id": i} if i is not None else {}), **d},
                     fields, st.one_of(st.none(), FRAME_IDS))
    bad_id = st.builds(lambda d, i: {**d, "id": i}, docs, st.sampled_from(BAD_FRAME_IDS))
    return _often(docs, st.one_of(mutated(docs), bad_id), weight=3)


# --- running examples against a server on the test's event loop ---------------------------


async def fuzz(strategy: Strategy[Any], check: Callable[[Any], Coroutine[Any, Any, None]],
               profile: settings) -> None:
    """Run ``check(example)`` for the examples of ``strategy`` (hypothesis, ``profile``).

    Hypothesis drives its test from a worker thread and each example's ``check`` runs on
    the calling test's event loop, where the server and its stores live: so one async test
    can run a separate hypothesis search (its own budget, shrinking and report) for each
    command, against one server. Raises what the smallest failing example raised, with
    hypothesis' report of it in the exception's notes.
    """
    loop = asyncio.get_running_loop()

    def search() -> None:
        @profile
        @given(example=strategy)
        def run(example: Any) -> None:
            asyncio.run_coroutine_threadsafe(check(example), loop).result(120)

        run()

    await asyncio.to_thread(search)


def failure_text(exc: BaseException) -> str:
    """An exception from ``fuzz``, with the failing example hypothesis noted on it."""
    return "\n".join([f"{type(exc).__name__}: {exc}", *getattr(exc, "__notes__", [])])
