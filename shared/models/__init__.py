"""SQLAlchemy 2 typed models, one module per domain. Invariants that the database can hold, it holds.

Everything is importable from `shared.models`, so callers need not know which module holds a model.
"""

from shared.models.base import UTCDateTime, utc_now
from shared.models.events import (
    AuditEvent,
    DeliveryStatus,
    Event,
    Notification,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from shared.models.identity import Invitation, Membership, User, UserSession, membership_groups, membership_is_live
from shared.models.organizations import PLANS, Document, Organization, Partner, Plan, Project, Template, VisibilityGroup
from shared.models.publishers import OidcUsedJti, TrustedPublisher
from shared.models.tokens import (
    TOKEN_TYPES,
    ApiToken,
    TokenDailyUsage,
    TokenNetwork,
    TokenNotice,
    TokenScopeUsage,
    TokenType,
    UsageFlush,
)

__all__ = [
    "PLANS",
    "TOKEN_TYPES",
    "ApiToken",
    "AuditEvent",
    "DeliveryStatus",
    "Document",
    "Event",
    "Invitation",
    "Membership",
    "Notification",
    "OidcUsedJti",
    "Organization",
    "Partner",
    "Plan",
    "Project",
    "Template",
    "TokenDailyUsage",
    "TokenNetwork",
    "TokenNotice",
    "TokenScopeUsage",
    "TokenType",
    "TrustedPublisher",
    "UTCDateTime",
    "UsageFlush",
    "User",
    "UserSession",
    "VisibilityGroup",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "membership_groups",
    "membership_is_live",
    "utc_now",
]
