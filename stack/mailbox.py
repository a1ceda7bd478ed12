"""The demo's mailbox: a loopback SMTP server that keeps every message it receives in a Maildir.

The demo e-mails the site manager's shift report at each shift's end (registry/shift_reports). Nobody's mail
server is configured on a fresh machine, so the demo receives the mail itself, on 127.0.0.1 only, and says where
to read it; with ``SITEPULSE_SMTP_HOST`` set, reports go to that server instead and no mailbox is started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

from sitepulse.embedded.ports import free_port

DEMO_MANAGER = "site.manager@demo-quarry.example"
DEMO_SENDER = "sitepulse@demo-quarry.example"


@dataclass
class DemoMailbox:
    """A running loopback SMTP server and the Maildir it writes to."""

    folder: Path
    port: int
    controller: Controller

    def environment(self) -> dict[str, str]:
        """The settings that send the API's scheduled reports here."""
        return {"SITEPULSE_SMTP_HOST": "127.0.0.1", "SITEPULSE_SMTP_PORT": str(self.port),
                "SITEPULSE_SMTP_TLS": "none", "SITEPULSE_SMTP_FROM": DEMO_SENDER}

    def close(self) -> None:
        self.controller.stop()


def open_mailbox(folder: Path) -> DemoMailbox:
    """Start the SMTP server on a free loopback port, writing into the Maildir ``folder``."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    controller = Controller(Mailbox(folder), hostname="127.0.0.1", port=port)
    controller.start()
    return DemoMailbox(folder, port, controller)
