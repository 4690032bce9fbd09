"""A real SMTP server for tests: aiosmtpd on a free loopback port.

A plain module (neither a test module nor a conftest): the tests import from here.
"""

from __future__ import annotations

import email
from dataclasses import dataclass, field
from email import policy

from tests.conftest import free_port


@dataclass
class SmtpServer:
    """aiosmtpd on a free loopback port; `messages` are the parsed emails it received."""

    port: int = field(default_factory=free_port)
    envelopes: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
        self.envelopes.append(envelope)
        return "250 OK"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(e.original_content, policy=policy.default) for e in self.envelopes]

    def raw(self) -> str:
        return "\n".join(e.original_content.decode("utf-8", "replace") for e in self.envelopes)
