"""Property tests: random histories against a tiny reference model, on every backend."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opentim.presence import PresenceStore

from .conftest import T0
from .helpers import is_online

pytestmark = pytest.mark.asyncio(loop_scope="function")

APP = 1400000001
_groups = itertools.count()

# (op, account index, connection index); small pools so that histories collide a lot.
OPS = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave", "hide", "unhide", "mark", "robot", "unrobot"]),
        st.integers(0, 9),
        st.integers(0, 2),
    ),
    max_size=60,
)
# Same-second histories (no 500 expiry here: robots get a long ttl).
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@dataclass
class Model:
    """What the contract says, in the plainest possible form."""

    seq: int = 0
    online: dict[str, int] = field(default_factory=dict)  # account -> join seq
    conns: dict[str, set[str]] = field(default_factory=dict)
    marks: dict[str, set[int]] = field(default_factory=dict)

    def newest(self, keep: set[str] | None = None, drop: set[str] | None = None) -> list[str]:
        accs = [
            a
            for a in self.online
            if (keep is None or a in keep) and (drop is None or a not in drop)
        ]
        return sorted(accs, key=lambda a: -self.online[a])

    def with_mark(self, m: int) -> set[str]:
        return {a for a, ms in self.marks.items() if m in ms}

    def become_online(self, a: str) -> None:
        self.seq += 1
        self.online[a] = self.seq
        self.marks[a] = set()


async def apply(s: PresenceStore, group: str, model: Model, op: str, a: str, c: str) -> None:
    if op == "join":
        new = a not in model.online
        joined = await s.join(APP, group, a, c, nick="", avatar="", now=T0)
        assert joined.became_online is new
        if new:
            model.become_online(a)
        model.conns.setdefault(a, set()).add(c)
    elif op == "leave":
        had = c in model.conns.get(a, set())
        gone = await s.leave(APP, group, a, c, now=T0)
        if had:
            model.conns[a].discard(c)
        expect_gone = had and not model.conns[a] and 500 not in model.marks[a]
        assert gone is expect_gone
        if had and not model.conns[a]:
            if expect_gone:
                del model.online[a], model.marks[a]
            else:
                model.marks[a] = {500}
    elif op in ("hide", "mark", "robot"):
        m = {"hide": 600, "mark": 1000, "robot": 500}[op]
        res = await s.set_marks(APP, group, [(a, [m])], now=T0)
        if a in model.online or m == 500:
            if a not in model.online:
                model.become_online(a)
            model.marks[a].add(m)
        assert [(x.account, set(x.marks)) for x in res.members] == (
            [(a, model.marks[a])] if a in model.online else []
        )
    else:  # unhide / unrobot
        m = 600 if op == "unhide" else 500
        await s.delete_marks(APP, group, [(a, [m])], now=T0)
        if a in model.online:
            model.marks[a].discard(m)
            if not model.conns.get(a) and 500 not in model.marks[a]:
                del model.online[a], model.marks[a]


async def pages(s: PresenceStore, group: str, mark: int | None, limit: int, cap: int) -> list[str]:
    out: list[str] = []
    cursor = 0
    for _ in range(cap + 2):
        p = await s.page(APP, group, cursor=cursor, mark=mark, limit=limit, cap=cap, now=T0)
        assert p.count <= limit
        out += [r["Member_Account"] for r in json.loads(p.rows)]
        cursor = p.next_cursor
        if not cursor:
            return out
    raise AssertionError("paging did not terminate")


@SETTINGS
@given(ops=OPS, limit=st.integers(1, 4), cap=st.integers(1, 12))
async def test_paging_matches_model(
    store: PresenceStore, ops: list[tuple[str, int, int]], limit: int, cap: int
) -> None:
    group = f"prop-{next(_groups)}"
    model = Model()
    for op, ai, ci in ops:
        await apply(store, group, model, op, f"u{ai}", f"u{ai}-c{ci}")
    assert await store.count(APP, group, now=T0) == len(model.online)
    hidden = model.with_mark(600)
    assert await pages(store, group, None, limit, cap) == model.newest(drop=hidden)[:cap]
    for m in (500, 600, 1000):
        assert (
            await pages(store, group, m, limit, cap) == model.newest(keep=model.with_mark(m))[:cap]
        )
    for a in [f"u{i}" for i in range(10)]:
        assert await is_online(store, APP, group, a, now=T0) is (a in model.online)


@SETTINGS
@given(
    before=OPS,
    between=st.lists(
        st.tuples(st.sampled_from(["join", "leave"]), st.integers(0, 14), st.integers(0, 2)),
        max_size=20,
    ),
    limit=st.integers(1, 4),
)
async def test_members_online_throughout_appear_exactly_once(
    store: PresenceStore,
    before: list[tuple[str, int, int]],
    between: list[tuple[str, int, int]],
    limit: int,
) -> None:
    """Mutations between pages never duplicate or skip a member online the whole time."""
    group = f"prop-{next(_groups)}"
    model = Model()
    for op, ai, ci in before:
        await apply(store, group, model, op, f"u{ai}", f"u{ai}-c{ci}")
    first_order = model.newest(drop=model.with_mark(600))
    start_seq = dict(model.online)
    stayed = set(first_order)  # listed at the start and never offline since
    seen: list[str] = []
    p = await store.page(APP, group, cursor=0, limit=limit, now=T0)
    seen += [r["Member_Account"] for r in json.loads(p.rows)]
    steps = iter(between)
    while p.next_cursor:
        if (step := next(steps, None)) is not None:
            op, ai, ci = step
            await apply(store, group, model, op, f"u{ai}", f"u{ai}-c{ci}")
            stayed = {a for a in stayed if model.online.get(a) == start_seq[a]}
        p = await store.page(APP, group, cursor=p.next_cursor, limit=limit, now=T0)
        seen += [r["Member_Account"] for r in json.loads(p.rows)]
    assert len(seen) == len(set(seen))
    assert stayed <= set(seen)
    # members who joined after the first page (newer than the cursor) never show up
    assert set(seen) <= set(first_order)
