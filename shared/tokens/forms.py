"""The token form and the list filters as the browser sends them, for both UIs (portal and hub).

`TokenForm` keeps what the user typed, so a form with errors comes back exactly as it was sent,
and turns it into a `TokenInput` through the clean_* functions of shared.tokens: the form and
the API validate with the same code. Field names are the keys of `ServiceError.fields`, so an
error from a service lands beside the field that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict

from shared.core import validation
from shared.identity import roles
from shared.models import TOKEN_TYPES, ApiToken, TokenType
from shared.tokens import lifecycle, queries
from shared.tokens import payload as token_payload
from shared.tokens import rights as token_rights

EXPIRATION_OPTIONS = (  # (value, label); the values are what tokens.clean_expiry understands
    ("30", "1 month"),
    ("90", "3 months"),
    ("365", "1 year"),
    ("never", "No expiration"),
    ("custom", "Custom date"),
)
KEEP_EXPIRY = "keep"  # edit form: leave the expiry as it is
# Regenerate's "Keep the old value working for": (value, label), from the one table in shared.tokens.
GRACE_OPTIONS = tuple((value, label) for value, (label, _duration) in lifecycle.GRACE_PERIODS.items())
DEFAULT_GRACE = "none"  # a form without the field (an older page) regenerates as before
# The rights grid's default: only `documents read` checked, so Enter in the Name field makes a
# least-privilege token. A cell is sent as "<scope> <permission>" (labels never hold spaces).
DEFAULT_RIGHTS = ("documents read",)
TYPE_LABELS = {TokenType.PERSONAL: "Personal", TokenType.ORGANIZATION: "Organization",
               TokenType.PROJECT: "Project"}
PER_PAGE = 25


@dataclass
class TokenForm:
    """The raw fields of the create and edit forms (strings and lists of strings)."""

    name: str = ""
    description: str = ""
    type: str = TokenType.PERSONAL
    project_id: str = ""
    rights: list[str] = field(default_factory=lambda: list(DEFAULT_RIGHTS))  # the grid's checked cells
    # The older shape, from a form or script that posts lists (None: not sent).
    permissions: list[str] | None = None
    scopes: list[str] | None = None
    expiration: str = "365"
    expiration_date: str = ""
    ip_allowlist: str = ""
    canary: bool = False

    @classmethod
    def from_request(cls, form: MultiDict) -> TokenForm:
        return cls(
            name=form.get("name", ""),
            description=form.get("description", ""),
            type=form.get("type", TokenType.PERSONAL),
            project_id=form.get("project_id", ""),
            rights=form.getlist("rights"),
            permissions=form.getlist("permissions") if "permissions" in form else None,
            scopes=form.getlist("scopes") if "scopes" in form else None,
            expiration=form.get("expiration", "365"),
            expiration_date=form.get("expiration_date", ""),
            ip_allowlist=form.get("ip_allowlist", ""),
            canary=form.get("canary") == "1",
        )

    @classmethod
    def from_token(cls, token: ApiToken) -> TokenForm:
        """The edit form of an existing token: its current values, expiry kept."""
        return cls(
            name=token.name,
            description=token.description or "",
            type=token.type,
            project_id=str(token.project_id or ""),
            rights=[f"{scope} {permission}" for scope, held in token.rights.items() for permission in held],
            expiration=KEEP_EXPIRY,
            ip_allowlist="\n".join(token.ip_allowlist or []),
        )

    def to_create_input(self) -> token_payload.TokenInput:
        """Every field, cleaned; raises InvalidRequest with `fields` keyed by form field name."""
        errors = validation.FieldErrors()
        data = token_payload.TokenInput()
        data.name = token_payload.clean_name(self.name, errors)
        data.description = token_payload.clean_description(self.description, errors)
        data.type = self.type if self.type in TOKEN_TYPES else None
        if self.canary:  # the form's type is beside the point: a canary is an organization token
            data.project_id = None
            token_payload.clean_canary(data, True, explicit_type=None, errors=errors)
        elif data.type is None:
            errors.add("type", "Choose a token type")
        else:
            data.project_id = _project_id(self.project_id, errors) if data.type == TokenType.PROJECT else None
        self._clean_rights(data, errors, creating=True)
        self._clean_common(data, errors)
        errors.raise_if_any()
        return data

    def to_update_input(self) -> token_payload.TokenInput:
        """What an edit may change: everything but the secret, the type and the project."""
        errors = validation.FieldErrors()
        data = token_payload.TokenInput()
        data.name = token_payload.clean_name(self.name, errors)
        data.description = token_payload.clean_description(self.description, errors)
        self._clean_rights(data, errors, creating=False)
        self._clean_common(data, errors)
        errors.raise_if_any()
        return data

    def _clean_rights(self, data: token_payload.TokenInput, errors: validation.FieldErrors, *,
                      creating: bool) -> None:
        """The grid's cells; or, when no cell was sent but the older lists were, those lists."""
        lists = {name: value for name, value in (("scopes", self.scopes), ("permissions", self.permissions))
                 if value is not None}
        if not self.rights and lists:
            if creating:  # a list with nothing checked is not sent at all
                lists = {"scopes": self.scopes or [], "permissions": self.permissions or []}
            token_payload.clean_rights_or_lists(data, lists, errors, creating=creating)
            return
        chosen: dict[str, list[str]] = {}
        for cell in self.rights:
            parts = cell.split()
            if len(parts) != 2:
                errors.add("rights", "Choose rights from the grid")
                return
            chosen.setdefault(parts[0], []).append(parts[1])
        if not chosen:
            errors.add("rights", "Choose at least one permission on one scope")
            return
        data.rights = token_payload.clean_rights(chosen, errors)

    def _clean_common(self, data: token_payload.TokenInput, errors: validation.FieldErrors) -> None:
        if self.expiration != KEEP_EXPIRY:
            expiry = token_payload.clean_expiry(self.expiration, self.expiration_date, errors, name="expiration")
            if not errors.errors.get("expiration"):
                data.expires_at = expiry
        data.ip_allowlist = token_payload.clean_allowlist(self.ip_allowlist, errors)


def grace_period_from(form: MultiDict) -> str:
    """The chosen grace period as sent; tokens.regenerate_token refuses an unknown one
    (InvalidRequest with fields["grace_period"]) before changing anything."""
    return form.get("grace_period", DEFAULT_GRACE)


def _project_id(value: str, errors: validation.FieldErrors) -> int | None:
    if not value:
        errors.add("project_id", "Choose a project for a project token")
        return None
    project_id = validation.parse_id(value)
    if project_id is None:
        errors.add("project_id", "No such project")
    return project_id


@dataclass(frozen=True)
class GridCell:
    """One checkbox of the rights grid, named "<scope> <permission>" for people and assistive tech."""

    scope: str
    permission: str
    checked: bool
    reason: str | None  # why the creator's role or the policy cannot grant it: then disabled
    known: bool  # an unknown label is kept and shown, and grants nothing

    @property
    def value(self) -> str:
        return f"{self.scope} {self.permission}"

    @property
    def label(self) -> str:
        return self.value

    @property
    def disabled(self) -> bool:
        return self.reason is not None


@dataclass(frozen=True)
class RightsGrid:
    permissions: list[str]  # the columns
    rows: list[tuple[str, list[GridCell]]]  # (scope, one cell per permission)
    reasons: list[str]  # every distinct reason a cell is disabled, shown under the grid

    def reason_index(self, cell: GridCell) -> int:
        return self.reasons.index(cell.reason) + 1

    @property
    def held_but_refused(self) -> bool:
        """The token holds a pair its creator's role or the policy no longer allows (an edit)."""
        return any(cell.checked and cell.disabled for _, cells in self.rows for cell in cells)


def rights_grid(form: TokenForm, role: str, allowed_scopes: list[str] | None, *, editing: bool) -> RightsGrid:
    """The grid the create and edit forms show: a row per known scope (then any unknown scope the
    form holds), a column per known permission (then any unknown one). A cell the creator's role or
    the organization's policy cannot grant is disabled, with the reason, never offered and then
    refused; the rules are shared.tokens.rights', the very ones the service applies."""
    chosen: dict[str, list[str]] = {}
    for cell in form.rights:
        parts = cell.split()
        if len(parts) == 2:
            chosen.setdefault(parts[0], []).append(parts[1])
    if not form.rights and (form.scopes or form.permissions):  # an older-shape post, shown as its pairs
        chosen = token_rights.cross_product(form.scopes or [], form.permissions or [])
    permissions = list(roles.KNOWN_PERMISSIONS) + [p for p in token_rights.permissions_of(chosen)
                                                    if p not in roles.KNOWN_PERMISSIONS]
    scopes = list(roles.KNOWN_SCOPES) + [s for s in chosen if s not in roles.KNOWN_SCOPES]
    whose = "The creator’s role" if editing else "Your role"
    reasons: list[str] = []
    rows = []
    for scope in scopes:
        cells = []
        for permission in permissions:
            pair = (scope, permission)
            refused = (token_rights.role_refusal(role, pair, whose)
                       or token_rights.policy_refusal(allowed_scopes, pair))
            reason = refused.message if refused else None
            if reason and reason not in reasons:
                reasons.append(reason)
            cells.append(GridCell(scope, permission, permission in chosen.get(scope, ()), reason,
                                  token_rights.is_known(pair)))
        rows.append((scope, cells))
    return RightsGrid(permissions, rows, reasons)


# --------------------------------------------------------------------------- list filters


def _int_arg(args: MultiDict, name: str, default: int | None) -> int | None:
    """A whole number from 1 to validation.MAX_ID (ids, page numbers), else `default`."""
    value = validation.parse_id(args.get(name))
    return default if value is None else value


def filters_from_args(args: MultiDict) -> queries.TokenFilters:
    """The list's query string as TokenFilters. The UI drops what it does not understand
    (a hand-edited URL shows the unfiltered list rather than an error page)."""
    tab = "deleted" if args.get("tab") == "deleted" else "active"
    kind = args.get("type", "")
    status = args.get("status", "")
    allowed_statuses = ("revoked",) if tab == "deleted" else tuple(
        s for s in queries.LIST_STATUSES if s != "revoked")
    return queries.TokenFilters(
        tab=tab,
        name=args.get("name", "").strip()[:100],
        type=kind if kind in TOKEN_TYPES else "",
        status=status if status in allowed_statuses else "",
        project_id=_int_arg(args, "project_id", None),
        page=min(_int_arg(args, "page", 1), 100_000),
        per_page=PER_PAGE,
    )


def filter_args(filters: queries.TokenFilters, **changes: Any) -> dict[str, Any]:
    """The query string of a list view (for links: tabs, pages), without empty values."""
    values = {
        "tab": filters.tab if filters.tab != "active" else None,
        "name": filters.name or None,
        "type": filters.type or None,
        "status": filters.status or None,
        "project_id": filters.project_id,
        "page": filters.page if filters.page != 1 else None,
    }
    values.update(changes)
    return {key: value for key, value in values.items() if value not in (None, "")}
