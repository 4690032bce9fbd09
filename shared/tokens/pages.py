"""The API Tokens pages, written once for both UIs: the portal and the partner hub.

A blueprint mounts them with its own URL prefix, layout and access guard:

    register_token_pages(bp, "/settings/api-tokens", layout="portal/layout.html",
                         guard=staff_page(Capability.MANAGE_OWN_TOKENS))

and gets the endpoints `<bp>.tokens`, `<bp>.token_new`, `<bp>.token_create`, … (see ROUTES).
The views here are thin: parse (shared.token_forms) → call a service (shared.tokens) →
render the shared partials in shared/templates/tokens/. The partials never name a blueprint:
they build every URL through `urls` (a TokenUrls for the blueprint serving the request).

One route, two renderings: an htmx request (HX-Request) gets only the fragment it swaps
(the results table, one row, the edit row); any other request gets the whole page. Every
action also works as a plain form POST that redirects, so the pages work without JavaScript.
The show-once secret is the one POST that renders instead of redirecting; it is sent with
`Cache-Control: no-store` and never placed in a URL, the session, a flash message or a log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from math import ceil
from urllib.parse import urlparse

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from shared.audit.record import Actor
from shared.core.errors import InvalidRequest, PermissionDenied, PlanRequired, ServiceError, TokenLimitReached
from shared.core.page_routes import mount_routes
from shared.core.validation import local_path
from shared.identity import roles
from shared.identity.roles import Capability
from shared.identity.signin import current_actor
from shared.models import TOKEN_TYPES, ApiToken, Plan
from shared.orgs.organizations import list_projects
from shared.tokens import access, incident, insight, lifecycle, queries
from shared.tokens import format as token_format
from shared.tokens import status as token_status
from shared.tokens.forms import (
    DEFAULT_GRACE,
    EXPIRATION_OPTIONS,
    GRACE_OPTIONS,
    KEEP_EXPIRY,
    TYPE_LABELS,
    TokenForm,
    filter_args,
    filters_from_args,
    grace_period_from,
    permission_choices,
    scope_choices,
)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Errors a form shows beside its fields; anything else (403, 404) is an error page.
FORM_ERRORS = (InvalidRequest, PlanRequired, TokenLimitReached)
FORM_ERROR_STATUS = 422  # htmx swaps it (see the htmx-config meta tag in base.html)

STATUS_LABELS = {"active": "Active", "inactive": "Inactive", "expired": "Expired",
                 "expiring": "Expires soon", "revoked": "Revoked"}
PERMISSION_HINTS = {"read": "GET: list and read", "write": "POST, PATCH, PUT: create and change",
                    "delete": "DELETE: remove"}
# What a revoked row says about why, when the reason is not simply "someone pressed Revoke".
REVOKED_NOTES = {lifecycle.REVOKED_EXPOSED: "Revoked: reported as exposed",
                 incident.BULK_REASON: "Revoked in a bulk revocation"}
SCOPE_HINTS = {"documents": "Documents and exports", "projects": "Projects of the organization",
               "templates": "Document templates", "analytics": "Usage analytics",
               "billing": "Credit balance and plan", "tokens": "Manage API tokens"}


# --------------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class TokenUrls:
    """Every URL of the token pages for one blueprint, so the partials never name one."""

    blueprint: str

    def _url(self, endpoint: str, **values) -> str:
        return url_for(f"{self.blueprint}.{endpoint}", **values)

    def index(self, **args) -> str:
        return self._url("tokens", **args)

    def new(self) -> str:
        return self._url("token_new")

    def create(self) -> str:
        return self._url("token_create")

    def row(self, token: ApiToken) -> str:
        return self._url("token_row", token_id=token.public_id)

    def detail(self, token: ApiToken) -> str:
        return self._url("token_detail", token_id=token.public_id)

    def edit(self, token: ApiToken) -> str:
        return self._url("token_edit", token_id=token.public_id)

    def update(self, token: ApiToken) -> str:
        return self._url("token_update", token_id=token.public_id)

    def deactivate(self, token: ApiToken) -> str:
        return self._url("token_deactivate", token_id=token.public_id)

    def reactivate(self, token: ApiToken) -> str:
        return self._url("token_reactivate", token_id=token.public_id)

    def confirm_regenerate(self, token: ApiToken) -> str:
        return self._url("token_confirm_regenerate", token_id=token.public_id)

    def regenerate(self, token: ApiToken) -> str:
        return self._url("token_regenerate", token_id=token.public_id)

    def confirm_revoke(self, token: ApiToken) -> str:
        return self._url("token_confirm_revoke", token_id=token.public_id)

    def revoke(self, token: ApiToken) -> str:
        return self._url("token_revoke", token_id=token.public_id)

    def confirm_end_grace(self, token: ApiToken) -> str:
        return self._url("token_confirm_end_grace", token_id=token.public_id)

    def end_grace(self, token: ApiToken) -> str:
        return self._url("token_end_grace", token_id=token.public_id)

    # The security team's pages (shared/security_pages.py), mounted beside these.

    def bulk_revoke(self, **args) -> str:
        return self._url("token_bulk_revoke_preview", **args)

    def narrow(self, token: ApiToken) -> str:
        return self._url("token_narrow", token_id=token.public_id)


# --------------------------------------------------------------------------- what a row shows


def _permits(actor: Actor, token: ApiToken, capability: Capability, action: str) -> bool:
    """Ask the very check the service will run, so a button shows exactly when it would work."""
    try:
        access.require_capability(actor, token, capability, action)  # the same rule as the service, one place
    except PermissionDenied:
        return False
    return True


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
    user = token.creator.user
    may_regenerate = live and _permits(actor, token, Capability.REGENERATE_ANY_TOKEN, "regenerate")
    grace_until = token_status.grace_until(token) if live else None
    return TokenRow(
        token=token,
        status=status,
        masked=token_format.mask(token),
        creator_name=user.display_name or user.email,
        partner_name=token.creator.partner.name if token_status.is_partner_token(token) else None,
        may_edit=live and _permits(actor, token, Capability.EDIT_ANY_TOKEN, "edit"),
        may_regenerate=may_regenerate,
        may_set_active=live and _permits(actor, token, Capability.DEACTIVATE_ANY_TOKEN, "deactivate"),
        may_revoke=live and _permits(actor, token, Capability.REVOKE_ANY_TOKEN, "revoke"),
        grace_until=grace_until,
        may_end_grace=grace_until is not None and may_regenerate,  # tokens.end_grace asks the same
        dormant=insight.is_dormant(token),
        new_network=insight.has_new_network(token),
    )


# --------------------------------------------------------------------------- request helpers


def wants_fragment() -> bool:
    """An htmx request that swaps part of the page (not a boosted navigation or a history restore)."""
    headers = request.headers
    return (headers.get("HX-Request") == "true" and headers.get("HX-Boosted") != "true"
            and headers.get("HX-History-Restore-Request") != "true")


def safe_list_url(urls: TokenUrls, target: str | None) -> str:
    """Where a plain form goes back to: the list it was posted from (any filters kept), never elsewhere."""
    index = urls.index()
    if local_path(target) and urlparse(target).path == index:
        return target
    return index


@dataclass(frozen=True)
class TokenPages:
    """The views, bound to one blueprint's name and layout."""

    blueprint: str
    layout: str

    @property
    def urls(self) -> TokenUrls:
        return TokenUrls(self.blueprint)

    # ------------------------------------------------------------------ rendering

    def _render(self, template: str, actor: Actor, **context) -> str:
        context.setdefault("list_url", safe_list_url(self.urls, request.values.get("next")))
        return render_template(template, layout=self.layout, urls=self.urls,
                               sees_all=roles.can(actor.role, Capability.SEE_ALL_TOKENS),
                               may_bulk_revoke=incident.may_bulk_revoke(actor),
                               status_labels=STATUS_LABELS, type_labels=TYPE_LABELS,
                               grace_options=GRACE_OPTIONS, **context)

    def _list_context(self, actor: Actor, filters: queries.TokenFilters) -> dict:
        items, total = queries.list_tokens(actor, filters)
        pages = max(1, ceil(total / filters.per_page))
        if filters.page > pages:  # a stale link past the end shows the last page
            filters.page = pages
            items, total = queries.list_tokens(actor, filters)
        start = (filters.page - 1) * filters.per_page
        return {
            "rows": [token_row(actor, token) for token in items],
            "filters": filters,
            "total": total,
            "pages": pages,
            "first_shown": start + 1 if items else 0,
            "last_shown": start + len(items),
            "filter_args": lambda **changes: filter_args(filters, **changes),
            "projects": list_projects(actor.organization_id),
            "statuses": [s for s in STATUS_LABELS if (s == "revoked") == (filters.tab == "deleted")],
            "token_types": TOKEN_TYPES,
            "filtered": bool(filters.name or filters.type or filters.status or filters.project_id),
            "list_url": self.urls.index(**filter_args(filters)),
        }

    def _index_page(self, actor: Actor, filters: queries.TokenFilters, **extra) -> str:
        org = actor.membership.organization
        return self._render("tokens/index.html", actor, plan_required=org.plan == Plan.NONE,
                            **self._list_context(actor, filters), **extra)

    def _form_context(self, actor: Actor, form: TokenForm, *, token: ApiToken | None = None,
                      error: ServiceError | None = None) -> dict:
        org = actor.membership.organization
        role = token.creator.role if token is not None else actor.role
        limit = current_app.config["KEYWARD_FREE_TOKEN_LIMIT"]
        fields = dict(error.fields) if error is not None else {}
        may_create_canary = token is None and roles.can(actor.role, Capability.CREATE_CANARY_TOKENS)
        shown = {"name", "description", "type", "project_id", "permissions", "scopes", "expiration",
                 "ip_allowlist"} | ({"canary"} if may_create_canary else set())
        form_error = None
        if error is not None:
            unplaced = [message for key, message in fields.items() if key not in shown]
            form_error = ("Please correct the fields marked below." if fields and not unplaced
                          else "; ".join(unplaced) if unplaced else error.message)
        return {
            "form": form,
            "token": token,
            "errors": fields,
            "form_error": form_error,
            "org": org,
            "plan_required": org.plan == Plan.NONE,
            "free_plan_usage": (access.active_token_count(actor.membership.id), limit)
            if org.plan == Plan.FREE and token is None else None,
            "token_types": roles.allowed_token_types(actor.role),
            "may_create_canary": may_create_canary,
            "projects": list_projects(actor.organization_id),
            "permission_choices": permission_choices(form),
            "scope_choices": scope_choices(form),
            "role_permissions": {p.value for p in roles.role_permissions(role)},
            "role_scopes": {s.value for s in roles.role_scopes(role)},
            "permission_hints": PERMISSION_HINTS,
            "scope_hints": SCOPE_HINTS,
            "expiration_options": EXPIRATION_OPTIONS,
            "keep_expiry": KEEP_EXPIRY,
        }

    # ------------------------------------------------------------------ list

    def index(self):
        """The list (GET). An htmx filter, search or page request gets only the results table."""
        actor = current_actor()
        filters = filters_from_args(request.args)
        if wants_fragment():
            html = self._render("tokens/_table.html", actor, **self._list_context(actor, filters))
        else:
            html = self._index_page(actor, filters)
        return html, 200, {"Vary": "HX-Request"}

    def row(self, token_id: str):
        """One row (the edit row's Cancel swaps it back)."""
        actor = current_actor()
        token = access.get_token_for(actor, token_id)
        return self._row_response(actor, token)

    def detail(self, token_id: str):
        """The token's page (SPEC 11 Insight): its fields, requests per day, networks, audit
        history and effective rights."""
        actor = current_actor()
        token = access.get_token_for(actor, token_id)
        narrowing = incident.narrowing_plan(token) if incident.may_narrow(actor, token) else None
        return self._render("tokens/detail.html", actor, row=token_row(actor, token),
                            insight=insight.insight_for(token), narrowing=narrowing)

    def _row_response(self, actor: Actor, token: ApiToken, **context):
        return self._render("tokens/_row.html", actor, row=token_row(actor, token), **context)

    # ------------------------------------------------------------------ create

    def new(self):
        actor = current_actor()
        return self._render("tokens/new.html", actor, **self._form_context(actor, TokenForm()))

    def create(self):
        """Create, then show the secret once: rendered by this POST (never a redirect), not stored."""
        actor = current_actor()
        form = TokenForm.from_request(request.form)
        try:
            token, secret = lifecycle.create_token(actor, form.to_create_input(), expiry_field="expiration")
        except FORM_ERRORS as error:
            context = self._form_context(actor, form, error=error)
            return self._render("tokens/new.html", actor, **context), FORM_ERROR_STATUS
        return self._show_once(actor, token, secret, regenerated=False)

    def _show_once(self, actor: Actor, token: ApiToken, secret: str, *, regenerated: bool):
        filters = filters_from_args({})
        html = self._index_page(actor, filters, secret=secret, secret_row=token_row(actor, token),
                                regenerated=regenerated)
        # The page now shows the list: a reload there (pushed by htmx for a boosted form) is a GET.
        return html, 200, {**NO_STORE, "HX-Push-Url": self.urls.index()}

    # ------------------------------------------------------------------ edit

    def edit(self, token_id: str):
        actor = current_actor()
        token = access.get_token_for(actor, token_id)
        if not token_row(actor, token).may_edit:
            raise PermissionDenied("Your role cannot edit this token")
        return self._edit_response(actor, token, TokenForm.from_token(token))

    def _edit_response(self, actor: Actor, token: ApiToken, form: TokenForm, error: ServiceError | None = None):
        context = self._form_context(actor, form, token=token, error=error)
        template = "tokens/_edit_row.html" if wants_fragment() else "tokens/edit.html"
        html = self._render(template, actor, row=token_row(actor, token), **context)
        return html, FORM_ERROR_STATUS if error is not None else 200

    def update(self, token_id: str):
        actor = current_actor()
        token = access.get_token_for(actor, token_id)
        form = TokenForm.from_request(request.form)
        try:
            lifecycle.update_token(actor, token, form.to_update_input(), expiry_field="expiration")
        except FORM_ERRORS as error:
            return self._edit_response(actor, token, form, error)
        return self._done(actor, token, f"Saved changes to “{token.name}”.")

    def _done(self, actor: Actor, token: ApiToken, message: str):
        """After an action: the changed row for htmx, else back to the list with a message."""
        if wants_fragment():
            return self._row_response(actor, token)
        flash(message)
        return redirect(safe_list_url(self.urls, request.form.get("next")))

    # ------------------------------------------------------------------ lifecycle

    def deactivate(self, token_id: str):
        actor = current_actor()
        token = lifecycle.set_active(actor, access.get_token_for(actor, token_id), False)
        return self._done(actor, token,
                          f"Deactivated “{token.name}”. Requests with it are refused until you reactivate it.")

    def reactivate(self, token_id: str):
        actor = current_actor()
        token = lifecycle.set_active(actor, access.get_token_for(actor, token_id), True)
        return self._done(actor, token, f"Reactivated “{token.name}”.")

    def confirm(self, token_id: str, action: str):
        """The confirmation page a browser without JavaScript gets instead of the dialog."""
        actor = current_actor()
        token = access.get_token_for(actor, token_id)
        row = token_row(actor, token)
        may = {"regenerate": row.may_regenerate, "revoke": row.may_revoke,
               "end-grace": row.may_regenerate}[action]
        if not may:
            raise PermissionDenied(f"Your role cannot {action.replace('-', ' ')} this token")
        if action == "end-grace" and row.grace_until is None:  # ended meanwhile: nothing to confirm
            flash(f"The old value of “{token.name}” no longer works.")
            return redirect(safe_list_url(self.urls, request.args.get("next")))
        return self._render("tokens/confirm.html", actor, row=row, action=action,
                            grace_choice=DEFAULT_GRACE, errors={})

    def confirm_regenerate(self, token_id: str):
        return self.confirm(token_id, "regenerate")

    def confirm_revoke(self, token_id: str):
        return self.confirm(token_id, "revoke")

    def confirm_end_grace(self, token_id: str):
        return self.confirm(token_id, "end-grace")

    def regenerate(self, token_id: str):
        """A new value, shown once; the old one stops now or after the chosen grace period."""
        actor = current_actor()
        token = access.get_token_for(actor, token_id)
        grace_period = grace_period_from(request.form)
        try:
            token, secret = lifecycle.regenerate_token(actor, token, grace_period)
        except FORM_ERRORS as error:
            return self._regenerate_refused(actor, token, grace_period, error)
        if wants_fragment():
            html = self._render("tokens/_row.html", actor, row=token_row(actor, token), row_secret=secret)
            return html, 200, NO_STORE
        return self._show_once(actor, token, secret, regenerated=True)

    def _regenerate_refused(self, actor: Actor, token: ApiToken, grace_period: str, error: ServiceError):
        """Nothing changed: the dialog (htmx: the row with its dialog reopened) or the confirmation
        page comes back with the choice as sent and the message beside the field."""
        errors = dict(error.fields or {})
        if not errors:
            errors["grace_period"] = error.message
        context = {"row": token_row(actor, token), "grace_choice": grace_period, "errors": errors}
        if wants_fragment():
            html = self._render("tokens/_row.html", actor, reopen_dialog="regenerate", **context)
        else:
            html = self._render("tokens/confirm.html", actor, action="regenerate", **context)
        return html, FORM_ERROR_STATUS

    def end_grace(self, token_id: str):
        """The previous value (kept by a regeneration with a grace period) stops working now."""
        actor = current_actor()
        token = lifecycle.end_grace(actor, access.get_token_for(actor, token_id))
        return self._done(actor, token, f"The old value of “{token.name}” no longer works.")

    def revoke(self, token_id: str):
        actor = current_actor()
        token = lifecycle.revoke_token(actor, access.get_token_for(actor, token_id))
        if wants_fragment():  # the row leaves the Active tab
            return self._render("tokens/_revoked_row.html", actor, row=token_row(actor, token))
        flash(f"Revoked “{token.name}”. It is listed under Deleted.")
        return redirect(safe_list_url(self.urls, request.form.get("next")))


# (rule under the prefix, endpoint, method, TokenPages method)
ROUTES = (
    ("", "tokens", "GET", "index"),
    ("", "token_create", "POST", "create"),
    ("/new", "token_new", "GET", "new"),
    ("/<token_id>", "token_detail", "GET", "detail"),
    ("/<token_id>/row", "token_row", "GET", "row"),
    ("/<token_id>/edit", "token_edit", "GET", "edit"),
    ("/<token_id>/edit", "token_update", "POST", "update"),
    ("/<token_id>/deactivate", "token_deactivate", "POST", "deactivate"),
    ("/<token_id>/reactivate", "token_reactivate", "POST", "reactivate"),
    ("/<token_id>/regenerate", "token_confirm_regenerate", "GET", "confirm_regenerate"),
    ("/<token_id>/regenerate", "token_regenerate", "POST", "regenerate"),
    ("/<token_id>/revoke", "token_confirm_revoke", "GET", "confirm_revoke"),
    ("/<token_id>/revoke", "token_revoke", "POST", "revoke"),
    ("/<token_id>/end-grace", "token_confirm_end_grace", "GET", "confirm_end_grace"),
    ("/<token_id>/end-grace", "token_end_grace", "POST", "end_grace"),
)


def register_token_pages(bp: Blueprint, url_prefix: str, *, layout: str,
                         guard: Callable[[Callable], Callable]) -> TokenPages:
    """Mount the token pages on `bp` under `url_prefix`; `guard` decorates every view (sign-in, role)."""
    pages = TokenPages(blueprint=bp.name, layout=layout)
    mount_routes(bp, url_prefix, ROUTES, pages, guard)
    return pages
