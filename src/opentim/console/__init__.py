"""The web console at ``/console`` (docs/console.md): pages in ``static/``, served by
``routes.py``; sessions in ``auth.py``; the JSON API and the REST bridge in ``api.py``;
the live room WebSocket in ``live.py``; the overview's counters in ``stats.py``."""

from opentim.console.routes import console_routes

__all__ = ["console_routes"]
