"""The token object: what the API answers and webhooks carry for a token. Never a hash or a secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.core.dates import iso
from shared.models import ApiToken
from shared.tokens import rights
from shared.tokens.format import mask
from shared.tokens.status import grace_until, status_of

if TYPE_CHECKING:
    from shared.tokens.authn import AuthenticatedToken


def token_summary(token: ApiToken | AuthenticatedToken) -> dict[str, Any]:
    """The API's token object. Never the secret."""
    creator_user = token.creator_user
    return {
        "id": token.public_id,
        "name": token.name,
        "description": token.description,
        "type": token.type,
        "project_id": token.project_id,
        "rights": {scope: list(held) for scope, held in token.rights.items()},
        # The older shape, derived, for integrations written before rights per scope.
        "permissions": rights.permissions_of(token.rights),
        "scopes": rights.scopes_of(token.rights),
        "ip_allowlist": list(token.ip_allowlist or []),
        "masked": mask(token),
        "status": status_of(token).value,
        "is_active": token.is_active,
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "last_used_at": iso(token.last_used_at),
        "last_used_ip": token.last_used_ip,
        "usage_count": token.usage_count,
        "documents_processed": token.documents_processed,
        "revoked_at": iso(token.revoked_at),
        "revoked_reason": token.revoked_reason,
        "previous_expires_at": iso(grace_until(token)),
        "canary": token.is_canary,
        "canary_trips": token.canary_trips,
        "created_by": {"id": creator_user.id, "email": creator_user.email},
    }
