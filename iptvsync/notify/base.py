"""What every WhatsApp gateway offers (``Gateway``) and the values that cross that line.

A gateway takes plain values (URL, instance, token), never the config. ``caps`` tells the
rest of iptvsync what it can do, so nothing outside ``notify/`` names a gateway.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class Caps(NamedTuple):
    #: only pre-approved templates may start a conversation (Meta Cloud API): the gateway gets
    #: the kind's template name and its parameters instead of rendered text
    templates_only: bool = False
    #: the ``[whatsapp]`` keys it needs besides the gateway name
    needs: tuple[str, ...] = ()
    #: the secrets it needs from the environment
    secrets: tuple[str, ...] = ("WHATSAPP_TOKEN",)
    #: a WhatsApp session that can be disconnected (a phone paired by QR code)
    has_session: bool = True


class Outgoing(NamedTuple):
    """One message: ``to`` in E.164 (``+5511987654321``); ``text`` for text gateways;
    ``template`` and ``params`` (body variables, in order) for template-only ones."""
    to: str
    kind: str
    text: str = ""
    template: str = ""
    language: str = "pt_BR"
    params: tuple[str, ...] = ()


class Receipt(NamedTuple):
    """The gateway acknowledged the message: its id for it, and the raw answer's key facts."""
    message_id: str
    detail: str = ""


class Health(NamedTuple):
    reachable: bool
    authorized: bool
    connected: bool
    detail: str


class Gateway(Protocol):
    caps: Caps
    label: str

    def send(self, message: Outgoing) -> Receipt:
        """Send one message; ``NotifyError`` (permanent / ambiguous / neither) otherwise."""

    def health(self) -> Health:
        """Reachable, credentials accepted, session connected? Never raises for those."""
