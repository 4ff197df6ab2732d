"""Tencent's own web SDK (``@tencentcloud/chat``) talking to OpenTIM (docs/tencent-sdk.md).

An app sets ``proxyServer: 'ws://HOST:PORT/sdk'`` in ``TencentCloudChat.create``; the SDK
then opens ``/sdk/binfo?…`` and speaks its JSON frames ``{"head": {…, "servcmd", "seq"},
"body": {…}}``. This package answers them with OpenTIM's own services:

- ``frames.py``: the frame shapes (pure): heads, replies, pushes, the login token.
- ``handlers.py``: what each ``servcmd`` does, on the stores and services the REST API
  and the client gateway use (``messaging/``, ``online.py``, ``marks.py``, the profile and
  member stores), with the connection's account as the caller.
- ``connection.py``: one SDK WebSocket as a gateway connection (``gateway/rooms.py``
  ``Pushable`` and ``gateway/commands.py`` ``Caller``): the same presence, rooms, pushes,
  kicks and webhooks as a ``/gateway`` connection.
- ``endpoint.py``: the Starlette WebSocket endpoint.
"""
