"""The message rules of domain/messages.py, as functions of their inputs."""

from __future__ import annotations

import pytest

from opentim import errors
from opentim.domain import messages as rules
from opentim.domain.groups import Group, GroupType


def group(kind: GroupType) -> Group:
    return Group(sdkappid=1, group_id="@TGS#2X", type=kind, name="g", owner=None,
                 create_time=0, max_member_num=None)


def text(value: str) -> list[dict]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": value}}]


def test_priorities_by_name_in_any_case() -> None:
    assert [rules.priority_index(n) for n in ("High", "normal", "LOW", "Lowest")] == [0, 1, 2, 3]
    assert rules.priority_index(None) == rules.priority_index("") == 1
    with pytest.raises(errors.InvalidParameter):
        rules.priority_index("Urgent")


def test_a_lagging_connection_sheds_the_lowest_priorities_first() -> None:
    backlog = 1000
    shed = {queued: [p for p in range(4) if rules.sheds(p, queued, backlog)]
            for queued in (0, 250, 251, 501, 751, 10_000)}
    assert shed == {0: [], 250: [], 251: [3], 501: [2, 3], 751: [1, 2, 3],
                    10_000: [1, 2, 3]}  # High is never shed: the backlog limit closes it


def test_targets_are_distinct_bounded_and_not_for_live_groups() -> None:
    public = group(GroupType.PUBLIC)
    assert rules.check_targets(public, None) is None
    assert rules.check_targets(public, ["a", "b", "a"]) == ("a", "b")
    for bad in ([], [f"u{i}" for i in range(51)]):
        with pytest.raises(errors.InvalidParameter):
            rules.check_targets(public, bad)
    for kind in (GroupType.AVCHATROOM, GroupType.COMMUNITY):
        with pytest.raises(errors.InvalidParameter):
            rules.check_targets(group(kind), ["a"])


def test_which_messages_take_a_seq() -> None:
    av, public = group(GroupType.AVCHATROOM), group(GroupType.PUBLIC)
    assert rules.takes_seq(av, online_only=True, targeted=False)
    assert rules.takes_seq(public, online_only=False, targeted=False)
    assert not rules.takes_seq(public, online_only=True, targeted=False)
    assert not rules.takes_seq(public, online_only=False, targeted=True)


def test_before_send_verdicts() -> None:
    assert rules.before_send_verdict(None) == rules.ALLOW
    assert rules.before_send_verdict({"ErrorCode": 0}) == rules.ALLOW
    assert rules.before_send_verdict({"ErrorCode": 1}).allow is False
    dropped = rules.before_send_verdict({"ErrorCode": 2})
    assert (dropped.allow, dropped.silent) == (False, True)
    assert rules.before_send_verdict({"ErrorCode": 77}) == rules.ALLOW  # unknown: allow
    replaced = rules.before_send_verdict({"ErrorCode": 0, "MsgBody": text("new"),
                                          "CloudCustomData": "c"})
    assert replaced.msg_body == text("new") and replaced.cloud_custom_data == "c"
    for bad in ([], [{"MsgType": "x"}], text("y" * 13_000), "body"):
        assert rules.before_send_verdict({"ErrorCode": 0, "MsgBody": bad}).msg_body is None


def test_an_oversized_replacement_of_cloud_custom_data_is_ignored() -> None:
    verdict = rules.before_send_verdict({"ErrorCode": 0, "CloudCustomData": "x" * 13_000})
    assert verdict.cloud_custom_data is None and verdict.allow
