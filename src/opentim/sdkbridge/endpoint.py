"""``/sdk/binfo``: the WebSocket Tencent's web SDK opens when ``proxyServer`` is
``ws://HOST:PORT/sdk`` (docs/tencent-sdk.md)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from opentim.gateway.rooms import LocalRooms
from opentim.runtime import Runtime
from opentim.sdkbridge.connection import SdkConnection


async def sdk_endpoint(websocket: WebSocket) -> None:
    """The query (sdkappid, instanceid, platform, sdkversion, …) names nobody: the login
    frame carries the user and the UserSig."""
    runtime: Runtime = websocket.app.state.runtime
    rooms: LocalRooms = websocket.app.state.rooms
    await websocket.accept()
    client = websocket.client
    conn = SdkConnection(runtime, rooms, websocket, client.host if client else "")
    await conn.run()


SDK_HELP = (
    "This is OpenTIM's endpoint for Tencent's web SDK (@tencentcloud/chat). Create the SDK\n"
    "with  TencentCloudChat.create({SDKAppID, proxyServer: 'ws://HOST:PORT/sdk'})\n"
    "See docs/tencent-sdk.md.\n"
)


async def sdk_http(_request: Request) -> PlainTextResponse:
    """``/sdk/binfo`` without a WebSocket upgrade: say how to use it (426)."""
    return PlainTextResponse(SDK_HELP, status_code=426,
                             headers={"Upgrade": "websocket", "Connection": "Upgrade"})
