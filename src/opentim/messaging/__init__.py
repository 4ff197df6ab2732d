"""Messages: who hears a frame, and the services that send group and one-to-one messages.

- ``push_to_group`` / ``push_to_users``: emit a delivery (``events.GroupPush`` /
  ``events.UserPush``); ``gateway/relay.py`` carries it to the connections on every process,
  encoded once per process.
- ``group.GroupMessaging``: send_group_msg's path (REST and gateway alike).
- ``c2c``: one-to-one messages (openim).
- ``guards``: duplicate sends (Random) and the per-group rate, shared between processes
  when presence is Redis.
- ``before``: Tencent's "before" callbacks, asked and waited for (bounded) by a send.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentim.domain.groups import Group, GroupType
from opentim.events import NORMAL, EventBus, GroupPush, UserPush


async def push_to_group(events: EventBus, group: Group,
                        frame: dict[str, Any], *, priority: int = NORMAL, seq: int = 0,
                        to_accounts: Sequence[str] | None = None,
                        except_conn: str = "") -> None:
    """Deliver ``frame`` to the group's online audience.

    AVChatRoom: the connections that joined the room. Other types: every connection of
    every member (members hear group messages without joining), which each process
    resolves for itself (``gateway/audience.py``). ``to_accounts`` narrows the audience
    to those accounts (targeted messages).
    """
    accounts = None if to_accounts is None else tuple(to_accounts)
    await events.emit(GroupPush(group.sdkappid, group.group_id, frame,
                                group.type is GroupType.AVCHATROOM, accounts, priority, seq,
                                except_conn))


async def push_to_users(events: EventBus, sdkappid: int, accounts: Sequence[str],
                        frame: dict[str, Any], *, except_conn: str = "") -> None:
    """Deliver ``frame`` to every open connection of ``accounts``, on every process."""
    if accounts:
        await events.emit(UserPush(sdkappid, tuple(accounts), frame, except_conn))
