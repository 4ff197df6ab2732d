import asyncio, time
from tests.conftest import LiveServer, Receiver, create_group, import_accounts, live_server

SVC = "group_open_http_svc"

async def test_probe(live: LiveServer, receiver: Receiver) -> None:
    app = await live.new_app(rate_limit=0, callback_url=receiver.url, callback_token="tok")
    async with live.client(app) as tim:
        await import_accounts(tim, "o", "a", "b", "u1")
        pub = await create_group(tim, "Public", Owner_Account="o", MemberList=[{"Member_Account": "a"}])
        await tim.ok(f"{SVC}/add_group_member", {"GroupId": pub, "Silence": 1, "MemberList": [{"Member_Account": "b"}]})
        await tim.ok(f"{SVC}/multiaccount_import".replace(SVC, "im_open_login_svc"), {"Accounts": ["zz"]})
        av = await create_group(tim, "AVChatRoom")
        async with live.connect(app, "u1") as s:
            await s.join_group(av)
            await asyncio.sleep(0.3)
            n = len(receiver.calls)
            await tim.ok(f"{SVC}/destroy_group", {"GroupId": av})
            await asyncio.sleep(0.5)
            print("after destroy:", [(c.query["CallbackCommand"], c.body) for c in receiver.calls[n:]])
            await tim.ok("group_open_avchatroom_http_svc/get_members", {"GroupId": pub, "Timestamp": 0}) if False else None
    await asyncio.sleep(0.5)
    for c in receiver.calls:
        print(c.query, c.body)
