"""Email notifications in PocketBase mode: sent by PocketBase with its own mail settings, here a real
SMTP server (aiosmtpd) on 127.0.0.1 set as PocketBase's SMTP through its settings API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from tests.pocketbase.conftest import PocketBase, free_port, sidecar, wait_for

pytestmark = pytest.mark.pocketbase

# Waits for the test to pull the trigger (a file), then fails for good.
FAILS_ON_CUE = """
import pathlib, sys, time
trigger = pathlib.Path(sys.argv[1])
while not trigger.exists():
    time.sleep(0.05)
print("giving up now", file=sys.stderr, flush=True)
sys.exit(7)
"""


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_a_process_that_gives_up_is_emailed_through_pocketbases_mail_settings(
    pocketbase: PocketBase, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    trigger = pocketbase.root / "fail-now"
    entry = sidecar("billing", FAILS_ON_CUE, maxRetries=0)
    entry["args"] = [*entry["args"], str(trigger)]
    config = {"processes": [entry], "notify": [{"email": "ops@example.com", "events": ["failed"]}]}
    pocketbase.install(json.dumps(config))
    pocketbase.start()
    pocketbase.wait_running("billing")
    settings = {
        "smtp": {"enabled": True, "host": "127.0.0.1", "port": port, "tls": False},
        "meta": {"senderAddress": "pocketbase@example.com", "senderName": "My app"},
    }
    response = pocketbase.http.patch("/api/settings", json=settings, headers=pocketbase.superuser())
    assert response.status_code == 200, response.text

    trigger.write_text("now")
    wait_for(lambda: inbox.messages, 30, "the notification email")
    message = inbox.messages[0]
    assert message["X-Envelope-To"] == "ops@example.com"
    assert "billing gave up" in message["Subject"]
    assert "pocketbase@example.com" in message["From"]
    parts = [
        part.get_payload(decode=True) for part in message.walk() if part.get_content_type() == "text/plain"
    ]
    text = b"".join(part for part in parts if isinstance(part, bytes))
    assert b"billing gave up" in text and b"giving up now" in text
