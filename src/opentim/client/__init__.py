"""Python clients: the gateway session (``connect``) and a REST helper (``rest.RestClient``)."""

from opentim.client.session import GatewayError, Session, connect

__all__ = ["GatewayError", "Session", "connect"]
