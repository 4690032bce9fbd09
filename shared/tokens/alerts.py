"""What the API's hot path raises about a token, inside its own transaction:

- a first use from a network the token never used, after it was used from others (`token.anomaly`);
- a canary token presented (`token.canary_used`), which grants nothing.

Both write on the hot path's Core connection: the change, its audit record, its event and its
notifications commit together. The caller pokes the queue after the commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, update

from shared.audit import record as audit
from shared.events import outbox
from shared.identity.roles import Role
from shared.models import ApiToken
from shared.notifications import notices
from shared.tokens import summary

CANARY_WATCHERS = (Role.OWNER, Role.ADMIN, Role.SECURITY_MANAGER)


def flag_new_network(connection: Connection, token, network: str, client_ip: str, now: datetime) -> None:
    """`token` (an AuthenticatedToken) was just used from `network` for the first time."""
    connection.execute(update(ApiToken).where(ApiToken.id == token.id).values(new_network_at=now))
    audit.record(None, token.organization_id, "token.anomaly", "token", token.public_id,
                 {"name": token.name, "network": network}, source_ip=client_ip, connection=connection)
    outbox.emit("token.anomaly", token.organization_id, token.id,
                {"token": summary.token_summary(token), "network": network}, connection=connection)
    users = notices.recipients(token.organization_id, token.creator_user.id, token.type,
                                     connection=connection)
    notices.notify(users, token.organization_id, "anomaly",
                         notices.token_message("anomaly", token, network), token.id, connection=connection)


def canary_used(connection: Connection, token, client_ip: str, user_agent: str | None, path: str) -> None:
    """A canary was presented: count the trip and tell the people who watch for it."""
    connection.execute(update(ApiToken).where(ApiToken.id == token.id)
                       .values(canary_trips=ApiToken.canary_trips + 1))
    details = {"name": token.name, "path": path[:300]}
    audit.record(None, token.organization_id, "token.canary_used", "token", token.public_id, details,
                 source_ip=client_ip, user_agent=user_agent, connection=connection)
    outbox.emit("token.canary_used", token.organization_id, token.id,
                {"token": summary.token_summary(token), "source_ip": client_ip, "path": path[:300]},
                connection=connection)
    users = notices.org_user_ids(token.organization_id, CANARY_WATCHERS, connection=connection)
    notices.notify(users, token.organization_id, "canary_used",
                         notices.token_message("canary_used", token, f"from {client_ip} on {path[:200]}"),
                         token.id, connection=connection)
