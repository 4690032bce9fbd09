"""What a token's row and detail page show, and which of its actions the viewer may take.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.audit.record import Actor
from shared.identity.roles import Capability
from shared.models import ApiToken
from shared.tokens import access, incident, insight, lifecycle
from shared.tokens import format as token_format
from shared.tokens import status as token_status
from shared.tokens.forms import (
    TYPE_LABELS,
)

STATUS_LABELS = {"active": "Active", "inactive": "Inactive", "expired": "Expired",
                 "expiring": "Expires soon", "revoked": "Revoked"}


# What a revoked row says about why, when the reason is not simply "someone pressed Revoke".
REVOKED_NOTES = {lifecycle.REVOKED_EXPOSED: "Revoked: reported as exposed",
                 incident.BULK_REASON: "Revoked in a bulk revocation"}


def may_act(actor: Actor, token: ApiToken, capability: Capability, action: str) -> bool:
    """Ask the very check the service will run, so a button shows exactly when it would work."""
    return access.may(actor, token, capability)


@dataclass(frozen=True)
class TokenRow:
    """One token as a row of the list: its status and the actions this actor may take on it."""

    token: ApiToken
    status: str  # a key of STATUS_LABELS
    masked: str
    creator_name: str
    partner_name: str | None  # the creator's partner company: a partner token
    may_edit: bool
    may_regenerate: bool
    may_set_active: bool
    may_revoke: bool
    grace_until: datetime | None  # until when the previous value still works (after Regenerate)
    may_end_grace: bool
    dormant: bool = False  # unused for insight.DORMANT_AFTER_DAYS
    new_network: bool = False  # used from a new network lately (insight.NEW_NETWORK_WINDOW)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def is_partner(self) -> bool:
        return self.partner_name is not None

    @property
    def type_label(self) -> str:
        return TYPE_LABELS.get(self.token.type, self.token.type)

    @property
    def has_actions(self) -> bool:
        return (self.may_edit or self.may_regenerate or self.may_set_active or self.may_revoke
                or self.may_end_grace)

    @property
    def revoked_note(self) -> str | None:
        return REVOKED_NOTES.get(self.token.revoked_reason) if self.token.revoked_at is not None else None


def token_row(actor: Actor, token: ApiToken) -> TokenRow:
    status = token_status.status_of(token).value
    if token_status.expires_soon(token):
        status = "expiring"
    live = token.revoked_at is None
    reshapable = live and not lifecycle.from_trusted_publisher(token)  # the services refuse the rest
    user = token.creator.user
    may_regenerate = reshapable and may_act(actor, token, Capability.REGENERATE_ANY_TOKEN, "regenerate")
    grace_until = token_status.grace_until(token) if live else None
    return TokenRow(
        token=token,
        status=status,
        masked=token_format.mask(token),
        creator_name=user.display_name or user.email,
        partner_name=token.creator.partner.name if token_status.is_partner_token(token) else None,
        may_edit=reshapable and may_act(actor, token, Capability.EDIT_ANY_TOKEN, "edit"),
        may_regenerate=may_regenerate,
        may_set_active=live and may_act(actor, token, Capability.DEACTIVATE_ANY_TOKEN, "deactivate"),
        may_revoke=live and may_act(actor, token, Capability.REVOKE_ANY_TOKEN, "revoke"),
        grace_until=grace_until,
        may_end_grace=grace_until is not None and may_regenerate,  # tokens.end_grace asks the same
        dormant=insight.is_dormant(token),
        new_network=insight.has_new_network(token),
    )
