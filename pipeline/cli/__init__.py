"""The app's commands, ``faust -A pipeline <command>``: one module per command group, as
faust's own ``faust/cli/``.

=================  ====================================================================
module             commands
=================  ====================================================================
``broker``         ``broker start|stop|status``: the brokers the project runs itself
``gateway``        ``gateway-doctor``: does WA-JS work on this WhatsApp Web
``rebuild``        ``rebuild-tables``: every table again from its changelog
``replay``         ``replay``, ``replay-report``: rerun recorded conversations
``db``             ``db``: the conversation store's schema
``archive``        ``archive``: the store's archive in a process of its own
``api``            ``api``: the operator API and dashboard
=================  ====================================================================
"""

from __future__ import annotations

from typing import Any

from pipeline.config.settings import Settings


def register_commands(app: Any, settings: Settings) -> None:
    """Add every command group to ``app``."""
    from pipeline.cli import api, archive, broker, db, gateway, rebuild, replay

    for group in (broker, gateway, rebuild, replay, db, archive, api):
        group.register(app, settings)
