"""The benchmark's rows: what each one calls, with which data, against which baseline.

A scenario is one entry in SCENARIOS: a REST call with its setup and baseline, measured
under wrk on each of its backends; or, with ``special``, the name of a step in
bench/phases.py or bench/presence_phase.py that measures a row which is not one REST call.
docs/performance.md ("Adding a scenario") says how to add one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Apps every backend may get: rate limit off (used by default); one so high it never trips,
# to price the limiter; one sending member-state webhooks to a bare receiver.
APPS = {"off": 0, "high": 1_000_000, "hook": 0}
PRESENCE = ("memory", "redis")


@dataclass(frozen=True)
class Call:
    """A REST call: ``/v4/<path>`` with a JSON body, as app ``app``, answering ``expect``."""

    path: str
    body: dict[str, Any]
    app: str = "off"
    expect: int = 0  # the ErrorCode the answer must carry

    def key(self) -> str:
        return self.app + self.path + json.dumps(self.body, sort_keys=True)


@dataclass(frozen=True)
class Scenario:
    name: str
    call: Call | None = None  # a REST call under wrk; None: `special` measures the row
    alternate: Call | None = None  # wrk alternates `call` and this (set, then delete)
    # None: bare ASGI answering the same bytes; "reencode": bare ASGI re-encoding the same
    # document with msgspec per request; a Call: another OpenTIM call.
    baseline: Call | str | None = None
    redis_baseline: str = ""  # on the Redis backend: this bench/clients.py raw-Redis probe
    setup: tuple[Call, ...] = ()  # made once per backend before any load
    after_join: tuple[Call, ...] = ()  # made once the gateway members are online
    backends: tuple[str, ...] = ("sqlite", "postgresql")
    special: str = ""  # a phase step measuring the row (not one REST call under wrk)
    # Calls leave work behind (pushes): the rate counts until the server is idle again.
    drain: bool = False
    connections: int = 0  # wrk connections for this row (and its baseline); 0: --connections
    # A send: the request holds VARY once, which bench/vary.lua replaces in every request
    # (a repeated Random is a duplicate, answered without a send); answers are checked for
    # ErrorCode 0, not compared, and the bare app answers the recorded one for any body.
    varies: bool = False
    # The phase that measures it runs only when named (bench/run --only soak): its rows are
    # in the table of such runs only.
    only: str = ""


USERS = [f"bench_user_{i}" for i in range(10)]
GROUP = "bench_group"
IMPORT_USERS = Call("im_open_login_svc/multiaccount_import",
                    {"AccountList": [{"UserID": u} for u in USERS]})
CREATE_GROUP = Call("group_open_http_svc/create_group", {
    "Type": "Public", "Name": "bench", "GroupId": GROUP, "Owner_Account": USERS[0],
    "MemberList": [{"Member_Account": u} for u in USERS[1:]]})
ACCOUNT_CHECK = Call("im_open_login_svc/account_check", {"CheckItem": [{"UserID": USERS[0]}]})

AV, MARKS, CHURN = "bench_av", "bench_marks", "bench_churn"
# Members held online through real gateway connections: group -> (UserID prefix, count).
# get_members reads bench_av (Mark 1000 on 500 of its 1,000); modify_user_info changes the
# marks of bench_marks's 500, whose every call pushes marks_changed to those 500 connections.
HELD = {AV: ("bench_m_", 1000), MARKS: ("bench_k_", 500)}
MARKED, CHURNERS = 500, 64
GET_MEMBERS = "group_open_avchatroom_http_svc/get_members"


def import_accounts(prefix: str, count: int, app: str = "off") -> tuple[Call, ...]:
    """Accounts with a nick and an avatar URL, so a 500-row page is ~60 KB, as in real rooms."""
    return tuple(Call("im_open_login_svc/multiaccount_import", {"AccountList": [
        {"UserID": f"{prefix}{i}", "Nick": f"Viewer {i}",
         "FaceUrl": f"https://cdn.example.com/avatar/{i:07d}.png"}
        for i in range(start, min(start + 100, count))]}, app=app)
        for start in range(0, count, 100))


def av_group(group_id: str, app: str = "off") -> Call:
    return Call("group_open_http_svc/create_group",
                {"Type": "AVChatRoom", "Name": "bench", "GroupId": group_id}, app=app)


def marks(group: str, command: int, mark: int, members: range, prefix: str = "") -> Call:
    """modify_user_info of ``members`` (UserIDs ``prefix``<n>; by default the prefix of
    the group's HELD members)."""
    prefix = prefix or HELD[group][0]
    return Call("group_open_avchatroom_http_svc/modify_user_info", {
        "GroupId": group, "CommandType": command,
        "MemberList": [{"Member_Account": f"{prefix}{i}", "Marks": [mark]} for i in members]})


# portrait_get of 100 accounts (the most it takes), 4 tags each; one has other tags set.
PROFILE_USERS = [f"bench_p_{i}" for i in range(100)]
PORTRAIT_GET = Call("profile/portrait_get", {"To_Account": PROFILE_USERS, "TagList": [
    "Tag_Profile_IM_Nick", "Tag_Profile_IM_Image", "Tag_Profile_IM_Gender",
    "Tag_Profile_IM_Level"]})
PROFILE_SETUP = (*import_accounts("bench_p_", 100), Call("profile/portrait_set", {
    "From_Account": PROFILE_USERS[0], "ProfileItem": [
        {"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Female"},
        {"Tag": "Tag_Profile_IM_Level", "Value": 3}]}))

# Distinct groups: delivery keeps each group's callbacks in order (one in flight per
# group) and sends different groups in parallel.
HOOK_GROUPS = tuple(f"bench_hook_{i}" for i in range(8))
PRESENCE_SETUP = (*(c for prefix, n in HELD.values() for c in import_accounts(prefix, n)),
                  *import_accounts("bench_c_", CHURNERS), *(av_group(g) for g in HELD),
                  av_group(CHURN))
HOOK_SETUP = (*import_accounts("bench_c_", CHURNERS, app="hook"),
              *(av_group(g, app="hook") for g in HOOK_GROUPS))

# Sends under wrk (Scenario.varies): VARY is the Random each request replaces.
VARY = 4_000_000_001
# Groups of their own: a send moves its group's NextMsgSeq, which get_group_info shows.
SEND_AV, SEND_PUBLIC = "bench_send_av", "bench_send_public"
TEXT_BODY = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "what a goal!!! replay please"}}]


def send_group_msg(group: str) -> Call:
    return Call("group_open_http_svc/send_group_msg", {
        "GroupId": group, "Random": VARY, "From_Account": USERS[0], "MsgBody": TEXT_BODY})


# admin_getroammsg reads the newest page of one conversation (bench/history.py fills it).
HISTORY_PAIR = ("bench_h_a", "bench_h_b")
HISTORY_PAGE = 100

# get_joined_group_list of one account in 1,000 Public groups; get_role_in_group of 100
# accounts (the 10 members of bench_group and 90 others).
JOINER, JOINED_GROUPS = "bench_joiner", 1000
JOINED_SETUP = (
    Call("im_open_login_svc/multiaccount_import", {"AccountList": [{"UserID": JOINER}]}),
    *(Call("group_open_http_svc/create_group", {
        "Type": "Public", "Name": "joined", "GroupId": f"bench_j_{i}",
        "MemberList": [{"Member_Account": JOINER}]}) for i in range(JOINED_GROUPS)))
ROLE_ACCOUNTS = USERS + [f"bench_nobody_{i}" for i in range(90)]

SCENARIOS = [
    Scenario("REST edge: account_check, 1 UserID (auth, dispatch, envelope, 1 SELECT)",
             ACCOUNT_CHECK, setup=(IMPORT_USERS,)),
    Scenario("get_group_info, 1 Public group of 10 members (2 SELECTs)",
             Call("group_open_http_svc/get_group_info", {"GroupIdList": [GROUP]}),
             setup=(IMPORT_USERS, CREATE_GROUP)),
    Scenario("portrait_get, 100 accounts × 4 tags (1 SELECT)", PORTRAIT_GET,
             setup=PROFILE_SETUP),
    Scenario(f"get_joined_group_list, an account in {JOINED_GROUPS:,} groups, with base "
             "info and SelfInfo (1 SELECT)",
             Call("group_open_http_svc/get_joined_group_list", {
                 "Member_Account": JOINER, "ResponseFilter": {
                     "GroupBaseInfoFilter": ["Type", "Name", "MemberNum"],
                     "SelfInfoFilter": ["Role", "JoinTime", "UnreadMsgNum"]}}),
             # ~100 ms a call: two in flight keep wrk's requests inside its timeout, so
             # the server is idle again for the rows after this one.
             setup=JOINED_SETUP, connections=2),
    Scenario("get_role_in_group, 100 accounts of a group of 10 (2 SELECTs)",
             Call("group_open_http_svc/get_role_in_group",
                  {"GroupId": GROUP, "User_Account": ROLE_ACCOUNTS}),
             setup=(IMPORT_USERS, CREATE_GROUP)),
    # No command yet answers without the store, so the edge alone is priced on an unknown
    # command: fully authenticated, then refused with 10003 before any store access.
    Scenario("edge only: group_open_http_svc/no_such_command → 10003",
             Call("group_open_http_svc/no_such_command", {}, expect=10003)),
    Scenario("rate limiter: account_check at 1,000,000/s (baseline: limit off)",
             Call(ACCOUNT_CHECK.path, ACCOUNT_CHECK.body, app="high"), baseline=ACCOUNT_CHECK,
             setup=(IMPORT_USERS,)),
    Scenario("get_members, 500-row page of 1,000 online (gateway), without Mark",
             Call(GET_MEMBERS, {"GroupId": AV, "Timestamp": 0}), baseline="reencode",
             setup=PRESENCE_SETUP, after_join=(marks(AV, 1, 1000, range(MARKED)),),
             backends=PRESENCE),
    Scenario("get_members, Mark 1000: the 500 of 1,000 online holding it",
             Call(GET_MEMBERS, {"GroupId": AV, "Timestamp": 0, "Mark": 1000}),
             baseline="reencode", backends=PRESENCE),
    Scenario("get_online_member_num, 1,000 online",
             Call("group_open_http_svc/get_online_member_num", {"GroupId": AV}),
             backends=PRESENCE),
    *(Scenario(f"modify_user_info, 500 online accounts: set mark 1001, then delete it, "
               f"{n} at a time; calls/s include pushing marks_changed to the 500 connections",
               marks(MARKS, 1, 1001, range(500)), alternate=marks(MARKS, 2, 1001, range(500)),
               redis_baseline="redis-marks", backends=PRESENCE, drain=True, connections=n)
      for n in (8, 1)),
    Scenario("send_group_msg, AVChatRoom, nobody in it (guards, MsgSeq, push to no one)",
             send_group_msg(SEND_AV), setup=(IMPORT_USERS, av_group(SEND_AV)), varies=True),
    Scenario("send_group_msg, Public group of 10, none online (stores the message)",
             send_group_msg(SEND_PUBLIC), setup=(IMPORT_USERS, Call(
                 CREATE_GROUP.path, {**CREATE_GROUP.body, "GroupId": SEND_PUBLIC})),
             varies=True),
    Scenario("openim/sendmsg, recipient offline (stores it, counts it unread)",
             Call("openim/sendmsg", {"SyncOtherMachine": 1, "From_Account": USERS[0],
                                     "To_Account": USERS[1], "MsgRandom": VARY,
                                     "MsgBody": TEXT_BODY}),
             setup=(IMPORT_USERS,), varies=True),
    # {history}: the size this run measures (Suite.history_messages); filled by
    # bench/history.py between the baseline's rounds and the row's own.
    Scenario(f"openim/admin_getroammsg, newest {HISTORY_PAGE} of a conversation, "
             "{history} messages stored (a tenth of them its own; baseline: the same call "
             "at 10k, all its own)",
             Call("openim/admin_getroammsg", {
                 "Operator_Account": HISTORY_PAIR[0], "Peer_Account": HISTORY_PAIR[1],
                 "MaxCnt": HISTORY_PAGE}),
             setup=(Call("im_open_login_svc/multiaccount_import",
                         {"AccountList": [{"UserID": u} for u in HISTORY_PAIR]}),),
             # 8, not 64: the read's own cost, without a queue whose tail (p99 of seconds
             # on a busy machine) nears wrk's 5 s timeout
             special="history", connections=8),
    # Group messages through the gateway (bench/messages_phase.py, bench/fanout.py); the
    # baseline is bench/bare_ws.py broadcasting the frame OpenTIM pushed to as many
    # connections.
    Scenario("fan-out: send_group_msg into an AVChatRoom of 1,000 gateway connections, one "
             "process (deliveries/s, 4 messages in flight)", special="fanout_1k",
             backends=("memory",)),
    Scenario("fan-out: the same, 10,000 connections", special="fanout_10k",
             backends=("memory",)),
    Scenario("fan-out: the same, 1,000 connections over two processes", special="fanout_2p",
             backends=("redis",)),
    Scenario("100 messages/s for {rate_s} s into 1,000 connections: latency from "
             "send_group_msg to receipt",
             special="fanout_rate", backends=("memory",)),
    Scenario("import_group_member, 300 per call, 8 clients (bench/import_members.py)",
             special="imports", backends=("sqlite, one group", "sqlite, many groups",
                                          "postgresql, one group", "postgresql, many groups")),
    Scenario("gateway edge: 2 heartbeat round trips, 64 connections", special="heartbeats",
             backends=("memory",)),
    Scenario("gateway churn: join_group + quit_group round trips, 64 connections "
             "(members/s)", special="churn", backends=PRESENCE),
    # bench/cluster_phase.py: the same server on a local 3-master Redis Cluster against
    # one Redis (the baseline), in the same run.
    Scenario("get_members, 500-row page of 1,000 online (gateway), without Mark, on a "
             "3-master Redis Cluster (baseline: one Redis)", special="cluster_get_members",
             backends=("redis-cluster",)),
    Scenario("get_members, Mark 1000, 500 of 1,000 online, on a 3-master Redis Cluster "
             "(baseline: one Redis)", special="cluster_get_members_mark",
             backends=("redis-cluster",)),
    Scenario("gateway churn: join_group + quit_group round trips, 64 connections "
             "(members/s), on a 3-master Redis Cluster (baseline: one Redis)",
             special="cluster_churn", backends=("redis-cluster",)),
    Scenario("join + quit latency, paced, with member-state webhooks on (baseline: off)",
             special="hook_latency", backends=("memory",)),
    Scenario("webhook delivery: Group.CallbackOnMemberStateChange to a local receiver",
             special="webhooks", setup=HOOK_SETUP, backends=("memory",)),
    # Name-only phases (Scenario.only): bench/soak_phase.py and bench/abuse_phase.py.
    # {soak}: the run's --soak-minutes.
    Scenario("soak: server RSS over {soak} min of gateway churn, marks and group messages "
             "(result: at the end; baseline: after the warm-up)", special="soak_rss",
             backends=("Redis presence, SQLite",), only="soak"),
    Scenario("soak: Redis used_memory (the whole Redis server) over the same minutes",
             special="soak_redis", backends=("Redis presence, SQLite",), only="soak"),
    Scenario("soak: MEMORY USAGE of the keys in the run's Redis database, same minutes",
             special="soak_keys", backends=("Redis presence, SQLite",), only="soak"),
    *(Scenario(f"abuse: {what}: a normal client's latency (baseline: the same client, "
               "quiet, just before)", special=f"abuse_{kind}",
               backends=("REST get_online_member_num", "gateway heartbeat"), only="abuse")
      for kind, what in (
          ("unauth", "3,000 WebSockets at a time upgrading with no or a bad UserSig, each "
                     "reopened when closed"),
          ("slowloris", "3,000 TCP connections at a time trickling a request line or "
                        "headers (1 byte/s), each reopened when closed"),
          ("bigframe", "50 connections sending 512 KiB frames (4× max_frame_bytes), "
                       "reconnecting when closed"),
          ("noread", "50 connections in the room that never read, 100 messages/s of 2 KB "
                     "pushed to it"))),
    # {idle}, {store}: the sizes this run measures (Suite.idle_count, Suite.store_members).
    Scenario("{idle} idle gateway connections: server memory per connection", special="idle",
             backends=("memory",)),
    Scenario("{store} online in one group: memory per member (store in process, no sockets)",
             special="store_memory", backends=PRESENCE),
    Scenario("{store} online in one group: 500-row page latency (store in process)",
             special="store_page", backends=PRESENCE),
]


def count_label(n: int) -> str:
    """10000 -> "10k", 1000000 -> "1M"; a count that is not whole thousands is written out
    (1,500)."""
    if n and n % 1_000_000 == 0:
        return f"{n // 1_000_000:,}M"
    return f"{n // 1000:,}k" if n and n % 1000 == 0 else f"{n:,}"
