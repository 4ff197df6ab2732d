"""The web console in a real headless browser: Playwright driving Debian's Chromium.

Against a live server on SQLite with memory presence and on PostgreSQL with Redis: logging
in with a sig made by Tencent's ``tls-sig-api-v2`` and being refused with a bad one, a
room created from the groups page and filled by ``opentim crowd`` (its in-process entry
point), a member leaving and disappearing from the list within a second, marks and the
mark filter, robots, a refused change showing the code REST gives, a message sent
through REST appearing in the room, hostile names shown as text, the keyboard and the
phone width. The pages are found by their ``data-testid`` hooks (docs/console.md).

The SQLite run also saves the screenshots docs/console.md shows (docs/images/).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from TLSSigAPIv2 import TLSSigAPIv2

from opentim.crowd import CrowdOptions
from opentim.crowd import run as run_crowd
from opentim.domain.apps import App, new_secret_key
from tests.helpers import (
    LiveServer,
    create_group,
    import_accounts,
    members,
    unavailable,
)

SVC = "group_open_http_svc"
AV = "group_open_avchatroom_http_svc"
CHROMIUM = os.environ.get("OPENTIM_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
HOSTILE = "<img src=x onerror=window.__pwned=1>"
HOSTILE_NAME = "<img src=x onerror=__pwned=2>"  # (a group's Name takes 30 bytes)
CROWD = 50
BOUND = 30_000  # ms: how long a locator may take on a loaded machine (a bound, not a pace)
SLACK = 0.5  # s: scheduling on a loaded two-core machine, past the one-second batch window
NAV = ["nav-overview", "nav-app", "nav-accounts", "nav-groups", "nav-webhooks"]


def sig(app: App, identifier: str = "administrator") -> str:
    return TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig(identifier)


def text(value: str) -> list[dict[str, Any]]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": value}}]


@pytest.fixture
def live(live_both: LiveServer) -> LiveServer:
    """A live server on SQLite with memory presence, then on PostgreSQL with Redis."""
    return live_both


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> bool:
    """Whether this run saves the screenshots (the SQLite one: one set, not two)."""
    return bool(request.node.callspec.id.startswith("sqlite"))


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("Chromium", "the `playwright` package is not installed "
                    "(pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        unavailable("Chromium", f"{CHROMIUM} is missing (apt-get install -y chromium)")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


class Page:
    """A browser page on the console, with what it logged: script errors fail the test."""

    def __init__(self, page: Any, url: str) -> None:
        self.page = page
        self.url = url
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)
        page.on("response", self._response)
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))

    def _console(self, msg: Any) -> None:
        # (asking for the session before a login is answered 401, which Chromium logs)
        if msg.type == "error" and "status of 401" not in msg.text:
            self.errors.append(f"console: {msg.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 500:
            self.errors.append(f"HTTP {response.status}: {response.url}")

    def id(self, testid: str) -> Any:
        return self.page.get_by_test_id(testid)

    def row(self, account: str) -> Any:
        return self.page.locator(f'[data-testid="room-member-row"][data-account="{account}"]')

    async def goto(self, route: str) -> None:
        await self.page.goto(f"{self.url}/console/{route}")

    async def log_in(self, app: App, usersig: str | None = None) -> None:
        from playwright.async_api import expect

        await self.goto("")
        await self.id("login-sdkappid").fill(str(app.sdkappid))
        await self.id("login-identifier").fill("administrator")
        await self.id("login-usersig").fill(usersig if usersig is not None else sig(app))
        await self.id("login-submit").click()
        if usersig is None:
            await expect(self.id("session-info")).to_have_text(
                f"administrator @ {app.sdkappid}", timeout=BOUND)

    async def shoot(self, name: str, enabled: bool, show: str = "") -> None:
        """docs/images/console-<name>-desktop.png and -phone.png: the viewport only,
        scrolled to the card holding the element ``show`` (a data-testid) if given."""
        if not enabled:
            return
        IMAGES.mkdir(parents=True, exist_ok=True)
        await self.page.evaluate("() => document.activeElement && document.activeElement.blur()")
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            await self.page.set_viewport_size(size)
            if show:  # (its card's top at the top of the viewport)
                await self.id(show).evaluate(
                    "(el) => (el.closest('section') || el).scrollIntoView({block: 'start'})")
            await asyncio.sleep(0.3)  # (the overview's chart redraws on resize)
            await self.page.screenshot(path=str(IMAGES / f"console-{name}-{label}.png"))
        await self.page.set_viewport_size(DESKTOP)
        await self.page.evaluate("() => window.scrollTo(0, 0)")

    async def overflows(self) -> bool:
        """Whether the page is wider than the viewport (a horizontal scroll bar)."""
        return bool(await self.page.evaluate(
            "() => document.documentElement.scrollWidth > document.documentElement.clientWidth"))

    async def watch_removal(self, account: str) -> None:
        """Have the page note (``window.__removedAt``, ms) when the row leaves the list."""
        await self.page.evaluate("""(account) => {
            const list = document.querySelector('[data-testid="room-members"]');
            window.__removedAt = null;
            new MutationObserver((_, observer) => {
                if (!list.querySelector(`[data-account="${account}"]`)) {
                    window.__removedAt = Date.now();
                    observer.disconnect();
                }
            }).observe(list, {childList: true});
        }""", account)

    async def assert_inert(self) -> None:
        """Nothing hostile ran or became markup: no <img> in the page, no window.__pwned."""
        assert await self.page.locator("img").count() == 0
        assert await self.page.evaluate("() => typeof window.__pwned") == "undefined"

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors


@pytest.fixture
async def page(browser: Any, live: LiveServer) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=DESKTOP)
    try:
        console = Page(await context.new_page(), live.url)
        yield console
        console.assert_clean()
    finally:
        await context.close()


async def focused(page: Page) -> str:
    return str(await page.page.evaluate("() => document.activeElement.dataset.testid || ''"))


# --- login ------------------------------------------------------------------------------


async def test_login_with_a_tls_sig_by_keyboard_refused_with_a_bad_one(
        live: LiveServer, page: Page, shots: bool) -> None:
    from playwright.async_api import expect

    app = await live.new_app(rate_limit=0)
    await page.goto("")
    await expect(page.id("login-form")).to_be_visible(timeout=BOUND)
    await expect(page.id("login-identifier")).to_have_value("administrator")
    await expect(page.id("error-banner")).to_have_count(0)  # (not logged in yet: no error)
    await page.shoot("login", shots)

    # A sig signed with another key: refused with the code REST gives for it.
    bad = TLSSigAPIv2(app.sdkappid, new_secret_key()).gen_sig("administrator")
    async with live.client(app, usersig=bad) as tim:
        rest = await tim.call("im_open_login_svc/account_check",
                              {"CheckItem": [{"UserID": "administrator"}]})
    assert rest["ErrorCode"] == 70009, rest
    await page.log_in(app, bad)
    banner = page.id("error-banner").last
    await expect(banner).to_have_attribute("data-code", "70009", timeout=BOUND)
    await expect(banner).to_contain_text(f"ErrorCode 70009 {rest['ErrorInfo']}")
    await expect(page.id("nav-overview")).to_be_hidden()

    # By keyboard: the page focuses the SDKAppID; Tab goes through the fields in order.
    await page.goto("")
    await expect(page.id("login-sdkappid")).to_be_focused(timeout=BOUND)
    await page.page.keyboard.type(str(app.sdkappid))
    await page.page.keyboard.press("Tab")
    await expect(page.id("login-identifier")).to_be_focused()
    await page.page.keyboard.press("Tab")
    await expect(page.id("login-usersig")).to_be_focused()
    await page.page.keyboard.type(sig(app))
    await page.page.keyboard.press("Tab")
    await expect(page.id("login-submit")).to_be_focused()
    await page.page.keyboard.press("Enter")
    await expect(page.id("session-info")).to_have_text(f"administrator @ {app.sdkappid}",
                                                       timeout=BOUND)
    await expect(page.id("nav-overview")).to_have_attribute("aria-current", "page")

    # The nav links are reached with the keyboard (back from the page's content) and
    # followed with Enter.
    reached: list[str] = []
    for _ in range(10):
        await page.page.keyboard.press("Shift+Tab")
        reached.append(await focused(page))
        if reached[-1] == NAV[0]:
            break
    print("Shift+Tab from the page reached", reached)
    assert set(NAV) <= set(reached), reached
    await page.id("nav-groups").focus()
    await page.page.keyboard.press("Enter")
    await expect(page.id("nav-groups")).to_have_attribute("aria-current", "page",
                                                          timeout=BOUND)
    await expect(page.id("groups-create-form")).to_be_visible()

    # Logging out shows the login form; the old session is gone.
    await page.id("nav-logout").click()
    await expect(page.id("login-form")).to_be_visible(timeout=BOUND)
    await page.goto("#/overview")
    await expect(page.id("login-form")).to_be_visible(timeout=BOUND)


# --- the live room --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def crowd(live: LiveServer, app: App, group_id: str, users: int) -> AsyncIterator[Any]:
    """``opentim crowd`` in this process (its async entry point): ``users`` viewers."""
    options = CrowdOptions(server=live.url, sdkappid=app.sdkappid, key=app.secret_key,
                           admin="administrator", group=group_id, users=users, create=False)
    stop = asyncio.Event()
    task = asyncio.create_task(run_crowd(options, stop=stop, out=io.StringIO()))
    try:
        yield task
    finally:
        stop.set()
        await task


async def test_a_room_from_the_groups_page_fills_with_a_crowd_and_is_run_from_the_console(
        live: LiveServer, page: Page, shots: bool) -> None:
    from playwright.async_api import expect

    app = await live.new_app(rate_limit=0)
    room = "friday-stream"
    async with live.client(app) as tim:
        await import_accounts(tim, "host", "leaver", "ghost", "bot-1")
        # (the crowd imports its viewers again, as it always does: their nicks stay)
        await import_accounts(tim, *(f"viewer-{i}" for i in range(1, CROWD + 1)))
        for name, group_type in (("Team", "Public"), ("Fans", "Community"),
                                 ("Support", "Private")):
            await create_group(tim, group_type, Name=name, Owner_Account="host")
        await page.log_in(app)

        # Create the room from the groups page: it opens the live room.
        await page.id("nav-groups").click()
        await expect(page.id("groups-create-type")).to_have_value("AVChatRoom", timeout=BOUND)
        await page.id("groups-create-name").fill("Friday stream")
        await page.id("groups-create-id").fill(room)
        await page.id("groups-create-submit").click()
        await expect(page.id("room-title")).to_have_text(room, timeout=BOUND)
        await expect(page.id("room-live-status")).to_have_attribute("data-state", "live",
                                                                    timeout=BOUND)
        await expect(page.id("room-type")).to_have_text("AVChatRoom")
        await expect(page.id("room-online-count")).to_have_text("0")
        info = (await tim.ok(f"{SVC}/get_group_info", {"GroupIdList": [room]}))["GroupInfo"][0]
        assert (info["Type"], info["Name"]) == ("AVChatRoom", "Friday stream")

        async with crowd(live, app, room, CROWD) as running:
            await expect(page.id("room-online-count")).to_have_text(str(CROWD), timeout=BOUND)
            await expect(page.id("room-member-row")).to_have_count(CROWD, timeout=BOUND)
            await expect(page.id("room-members-shown")).to_have_text(f"{CROWD} shown")
            # (members announced by members_changed get their nicks from portrait_get)
            await expect(page.row("viewer-7").get_by_test_id("room-member-nick")).to_have_text(
                "nick-viewer-7", timeout=BOUND)
            assert not running.done()

            # The overview and the groups list with the room full, for the screenshots.
            await page.id("nav-overview").click()
            await expect(page.id("overview-online")).to_have_text(str(CROWD), timeout=BOUND)
            await expect(page.id("overview-connections")).to_have_text(str(CROWD))
            if shots:  # (a few more seconds of the chart)
                await asyncio.sleep(3)
            await page.shoot("overview", shots)
            await page.id("nav-groups").click()
            await expect(page.id("groups-row")).to_have_count(4, timeout=BOUND)
            await expect(page.id("groups-total")).to_have_text("4 groups")
            listed = page.page.locator(f'[data-testid="groups-row"][data-group="{room}"]')
            await expect(listed.get_by_test_id("groups-row-name")).to_have_text("Friday stream")
            await page.shoot("groups", shots, show="groups-table")
            await listed.get_by_test_id("groups-row-room").click()
            await expect(page.id("room-member-row")).to_have_count(CROWD, timeout=BOUND)
            await expect(page.id("room-online-count")).to_have_text(str(CROWD), timeout=BOUND)

            # A message sent through REST appears in the room; so does one the console sends.
            await tim.ok(f"{SVC}/send_group_msg", {"GroupId": room, "From_Account": "host",
                                                   "Random": 1, "MsgBody": text("hello, room")})
            shown = page.page.locator('[data-testid="room-message"][data-from="host"]')
            await expect(shown.get_by_test_id("room-message-text")).to_have_text(
                "hello, room", timeout=BOUND)
            await page.id("room-send-text").fill("welcome, everyone")
            await page.id("room-send-submit").click()
            await expect(page.id("room-message-text")).to_have_text(
                ["hello, room", "welcome, everyone"], timeout=BOUND)
            await page.shoot("room", shots)

            # Phone width: the room page fits (no horizontal scrolling).
            await page.page.set_viewport_size(PHONE)
            await expect(page.id("room-online-count")).to_be_visible()
            assert not await page.overflows()
            await page.page.set_viewport_size(DESKTOP)

            # A member joins (at the top) and leaves: gone from the list within a second of
            # its quit's reply. members_changed goes out at once after a quiet second, and
            # otherwise waits out the rest of its one-second window: leaving right after
            # the join's batch is that worst case (up to 1 s, plus delivery and drawing).
            async with live.connect(app, "leaver") as leaver:
                for settle, bound in ((1.2, 1.0), (0.0, 1.0 + SLACK)):
                    await leaver.join_group(room)
                    await expect(page.id("room-member-row").first).to_have_attribute(
                        "data-account", "leaver", timeout=BOUND)
                    await page.watch_removal("leaver")
                    await asyncio.sleep(settle)
                    await leaver.quit_group(room)
                    quit_at = time.time()
                    await expect(page.row("leaver")).to_have_count(0, timeout=BOUND)
                    took = await page.page.evaluate("() => window.__removedAt") / 1000 - quit_at
                    print(f"after {settle} s quiet, gone {took:.3f} s after the quit's reply")
                    assert took < bound, f"gone {took:.3f} s after the quit's reply"
            await expect(page.id("room-member-row")).to_have_count(CROWD)

            # Marks set from the console show on the row; the filter lists only their holders.
            await page.id("room-marks-account").fill("viewer-7")
            await page.id("room-marks-values").fill("1000, 1001")
            await page.id("room-marks-set").click()
            await expect(page.id("ok-banner").last).to_contain_text("Marks set", timeout=BOUND)
            await expect(page.row("viewer-7").get_by_test_id("room-member-marks")).to_have_text(
                "1000, 1001", timeout=BOUND)
            marked, _ = await members(tim, room, Mark=1000)
            assert [m["Member_Account"] for m in marked] == ["viewer-7"]
            await page.id("room-mark-filter").fill("1000")
            await page.id("room-mark-filter-apply").click()
            await expect(page.id("room-member-row")).to_have_count(1, timeout=BOUND)
            await expect(page.row("viewer-7")).to_have_count(1)
            await expect(page.id("room-members-shown")).to_have_text("1 shown with mark 1000")
            await page.id("room-mark-filter-clear").click()
            await expect(page.id("room-member-row")).to_have_count(CROWD, timeout=BOUND)

            # A change REST refuses is refused with the same code: marks on a member who is
            # not online.
            body = {"GroupId": room, "CommandType": 1,
                    "MemberList": [{"Member_Account": "ghost", "Marks": [1000]}]}
            refused = await tim.call(f"{AV}/modify_user_info", body)
            assert refused["ErrorCode"] != 0, refused
            await page.id("room-marks-account").fill("ghost")
            await page.id("room-marks-values").fill("1000")
            await page.id("room-marks-set").click()
            banner = page.id("error-banner").last
            await expect(banner).to_have_attribute("data-code", str(refused["ErrorCode"]),
                                                   timeout=BOUND)
            await expect(banner).to_contain_text(
                f"ErrorCode {refused['ErrorCode']} {refused['ErrorInfo']}")

            # A robot added is listed online with mark 500; removed, it is gone.
            await page.id("room-robot-account").fill("bot-1")
            await page.id("room-robot-add").click()
            await expect(page.id("ok-banner").last).to_contain_text("Robots added", timeout=BOUND)
            await expect(page.row("bot-1")).to_have_count(1, timeout=BOUND)
            await expect(page.id("room-online-count")).to_have_text(str(CROWD + 1),
                                                                    timeout=BOUND)
            robots, _ = await members(tim, room, Mark=500)
            assert [m["Member_Account"] for m in robots] == ["bot-1"]
            await page.id("room-robot-remove").click()
            await expect(page.id("ok-banner").last).to_contain_text("Robots removed",
                                                               timeout=BOUND)
            await expect(page.row("bot-1")).to_have_count(0, timeout=BOUND)
            await expect(page.id("room-online-count")).to_have_text(str(CROWD), timeout=BOUND)

        # The crowd stopped (every viewer logged out): the room empties.
        await expect(page.id("room-member-row")).to_have_count(0, timeout=BOUND)
        await expect(page.id("room-online-count")).to_have_text("0", timeout=BOUND)


# --- hostile data -----------------------------------------------------------------------------


async def test_hostile_names_are_shown_as_text(live: LiveServer, page: Page) -> None:
    # A nickname, a group name and a message text written as markup: every page shows
    # the characters, and none of them becomes an element or runs.
    from playwright.async_api import expect

    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "mallory", "early", nick=HOSTILE)
        room = await create_group(tim, "AVChatRoom", Name=HOSTILE_NAME,
                                  GroupId="hostile-room")
        async with live.connect(app, "early") as early:
            await early.join_group(room)
            await page.log_in(app)
            await page.id("nav-groups").click()
            await expect(page.id("groups-row-name")).to_have_text(HOSTILE_NAME, timeout=BOUND)
            await expect(page.page.get_by_text(HOSTILE_NAME)).to_be_visible()
            await page.assert_inert()

            await page.id("groups-row-room").click()
            # "early" is read with get_members; "mallory" joins while the page is open
            # (its nick read with portrait_get) and sends the text as a message.
            await expect(page.row("early").get_by_test_id("room-member-nick")).to_have_text(
                HOSTILE, timeout=BOUND)
            async with live.connect(app, "mallory") as mallory:
                await mallory.join_group(room)
                await expect(page.row("mallory").get_by_test_id("room-member-nick")) \
                    .to_have_text(HOSTILE, timeout=BOUND)
                await mallory.send_group_message(room, text(HOSTILE))
                await expect(page.id("room-message-text")).to_have_text(HOSTILE,
                                                                        timeout=BOUND)
            await expect(page.page.get_by_text(HOSTILE).first).to_be_visible()
            await page.assert_inert()

            await page.id("nav-accounts").click()
            await page.id("accounts-search").fill("mallory")
            await page.id("accounts-search-submit").click()
            await expect(page.id("account-nick")).to_have_text(HOSTILE, timeout=BOUND)
            await expect(page.id("account-nick")).to_be_visible()
            await page.assert_inert()

            await page.page.goto(f"{live.url}/console/#/groups/{room}")
            await expect(page.id("group-title")).to_have_text(HOSTILE_NAME, timeout=BOUND)
            await expect(page.page.locator('[data-testid="group-info"] dd[data-field="Name"]')) \
                .to_have_text(HOSTILE_NAME)
            await page.assert_inert()
