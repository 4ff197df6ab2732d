"""What can stop the server or an ``opentim app`` command before it starts, said in one line.

A database that is not running or does not exist, an address that cannot be listened on,
an unreachable Redis: each is a ``StartupError`` whose text names what failed and what to
do, with any password in a URL hidden. The CLI prints it on stderr and exits non-zero,
instead of a traceback with the cause on its last line.
"""

from __future__ import annotations

import errno
import re
import socket
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import make_url


class StartupError(Exception):
    """A start-up failure; its text is the whole message for the user."""


def safe_db_url(url: str) -> str:
    """The database URL with its password hidden (as ``***``)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: still hide anything between // and @
        return re.sub(r"//[^/@]*@", "//***@", url)


def safe_redis_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:" if parts.username else ":"
        return urlunsplit(parts._replace(netloc=f"{user}***@{netloc}"))
    except ValueError:
        return re.sub(r"//[^/@]*@", "//***@", url)


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- the database ------------------------------------------------------------------------


def describe_db_error(url: str, exc: BaseException) -> str:
    """One line for a failure to open or migrate the database at ``url``."""
    shown = safe_db_url(url)
    try:
        parsed = make_url(url)
    except Exception:
        return f"cannot use database {shown}: {_first_line(exc)}"
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ":memory:"
        cause = next((c for c in _causes(exc) if type(c).__module__ == "sqlite3"), exc)
        if "unable to open" in str(cause):
            return (f"cannot open SQLite database {path}: {_first_line(cause)} (does its "
                    f"directory exist, and may this user write there?)")
        hint = " (another process holds it: one server process per SQLite file)" \
            if "locked" in str(cause) else ""
        return f"cannot use SQLite database {path}: {_first_line(cause)}{hint}"
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    for cause in _causes(exc):
        name = type(cause).__name__
        if name == "InvalidCatalogNameError":
            user = f" -U {parsed.username}" if parsed.username else ""
            return (f"PostgreSQL database {parsed.database!r} does not exist on {where}: "
                    f"create it first (createdb -h {parsed.host or 'localhost'} -p "
                    f"{parsed.port or 5432}{user} {parsed.database})")
        if name in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
            return (f"PostgreSQL on {where} refused the login of user "
                    f"{parsed.username!r}: {_first_line(cause)} (check the user and password "
                    f"in --db / OPENTIM_DB)")
        if isinstance(cause, socket.gaierror):
            return (f"cannot connect to PostgreSQL at {where}: unknown host "
                    f"{parsed.host!r} (check --db / OPENTIM_DB)")
        if isinstance(cause, ConnectionRefusedError):
            return (f"cannot connect to PostgreSQL at {where}: connection refused. "
                    f"Is PostgreSQL running at {where}?")
        if isinstance(cause, TimeoutError):
            return (f"cannot connect to PostgreSQL at {where}: no answer (timed out). Is "
                    f"PostgreSQL running at {where}, and does a firewall let us in?")
        if isinstance(cause, OSError) and cause.errno is not None:
            return f"cannot connect to PostgreSQL at {where}: {cause.strerror}"
    return f"cannot use database {shown}: {_first_line(_causes(exc)[-1])}"


# --- Redis -------------------------------------------------------------------------------


async def check_redis(url: str) -> None:
    """Connect to Redis and PING it; a StartupError says why that failed."""
    import redis.asyncio as aioredis
    from redis import exceptions

    shown = safe_redis_url(url)
    try:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    except ValueError as exc:
        raise StartupError(f"cannot use Redis URL {shown}: {_first_line(exc)}") from None
    try:
        await client.ping()
    except exceptions.AuthenticationError as exc:
        raise StartupError(f"Redis at {shown} refused our login: {_first_line(exc)} "
                           f"(check the password in --redis / OPENTIM_REDIS)") from None
    except (exceptions.RedisError, OSError) as exc:
        causes = _causes(exc)
        if any(isinstance(c, ConnectionRefusedError) for c in causes):
            reason = "connection refused"
        elif any(isinstance(c, socket.gaierror) for c in causes):
            reason = "unknown host"
        elif any(isinstance(c, TimeoutError) for c in causes):
            reason = "no answer (timed out)"
        else:
            reason = _first_line(exc).rstrip(".")
        raise StartupError(
            f"cannot reach Redis at {shown}: {reason}. Is Redis running there? (Without "
            f"--redis, presence is kept in this one process.)") from None
    finally:
        await client.aclose()


# --- listening ---------------------------------------------------------------------------


def listen_socket(host: str, port: int, option: str = "--port") -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening), or a StartupError."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise StartupError(f"cannot listen on {where}: unknown host {host!r} "
                           f"({getattr(exc, 'strerror', None) or exc}); use an address of "
                           f"this machine, such as 127.0.0.1 or 0.0.0.0") from None
    except OverflowError:
        raise StartupError(f"cannot listen on {where}: {option} must be 0-65535") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As asyncio does for the servers it binds: a restart may reuse a port that still
        # has connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"cannot listen on {where}: port {port} is in use (another "
                               f"server running? stop it, or choose another {option})"
                               ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise StartupError(f"cannot listen on {where}: {host} is not an address of this "
                               f"machine (use 127.0.0.1, 0.0.0.0 or one of its own "
                               f"addresses)") from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"cannot listen on {where}: permission denied (ports below "
                               f"1024 need privileges; choose another {option})") from None
        raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return sock
