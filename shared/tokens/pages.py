"""The API Tokens pages, written once for both UIs: ONE blueprint, `tokens`, that the portal and
the partner hub each register under their own blueprint (Flask nested blueprints):

    portal.register_blueprint(tokens_pages.bp, url_prefix="/settings/api-tokens")

gives the endpoints `portal.tokens.index`, `portal.tokens.detail`, … and `partner_hub.tokens.…`
alike. The parent's before_request admits its audience (staff or partner users) and sets the
layout (`g.layout`); this blueprint's own guard asks for the capability to manage tokens.
The views here are thin: parse (shared.tokens.forms) → call a service (shared.tokens) →
render the shared partials in shared/templates/tokens/. The partials never name a UI: they
build URLs relative to the blueprint serving the request (`url_for('.detail', ...)`), and
`ui_url('incident.narrow', ...)` for a sibling blueprint of the same UI.

One route, two renderings: an htmx request (HX-Request) gets only the fragment it swaps
(the results table, one row, the edit row); any other request gets the whole page. Every
action also works as a plain form POST that redirects, so the pages work without JavaScript.
The show-once secret is the one POST that renders instead of redirecting; it is sent with
`Cache-Control: no-store` and never placed in a URL, the session, a flash message or a log.
"""

from __future__ import annotations

import secrets
from math import ceil
from urllib.parse import parse_qsl, urlparse

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session
from werkzeug.datastructures import MultiDict

from shared.audit.record import Actor
from shared.core.errors import (
    InvalidRequest,
    PermissionDenied,
    PlanRequired,
    ServiceError,
    TokenLimitReached,
)
from shared.core.validation import local_path
from shared.identity import roles
from shared.identity.roles import Capability
from shared.identity.signin import current_actor, refuse_without, ui_url
from shared.models import TOKEN_TYPES, ApiToken, Plan
from shared.orgs.organizations import list_projects
from shared.tokens import access, incident, insight, lifecycle, queries
from shared.tokens import format as token_format
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
    rights_grid,
)
from shared.tokens.rows import STATUS_LABELS, TokenRow, token_row

bp = Blueprint("tokens", __name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Errors a form shows beside its fields; anything else (403, 404) is an error page.
FORM_ERRORS = (InvalidRequest, PlanRequired, TokenLimitReached)
FORM_ERROR_STATUS = 422  # htmx swaps it (see the htmx-config meta tag in base.html)

PERMISSION_HINTS = {"read": "GET: list and read", "write": "POST, PATCH, PUT: create and change",
                    "delete": "DELETE: remove"}
SCOPE_HINTS = {"documents": "Documents and exports", "projects": "Projects of the organization",
               "templates": "Document templates", "analytics": "Usage analytics",
               "billing": "Credit balance and plan", "tokens": "Manage API tokens"}


# --------------------------------------------------------------------------- what a row shows








# --------------------------------------------------------------------------- request helpers


@bp.before_request
def _may_manage_tokens():
    """Only roles that manage API tokens open these pages (the UI's own guard already admitted
    the signed-in member of its audience)."""
    refuse_without(Capability.MANAGE_OWN_TOKENS)


def wants_fragment() -> bool:
    """An htmx request that swaps part of the page (not a boosted navigation or a history restore)."""
    headers = request.headers
    return (headers.get("HX-Request") == "true" and headers.get("HX-Boosted") != "true"
            and headers.get("HX-History-Restore-Request") != "true")


def list_url(**args) -> str:
    """The token list of the UI serving this request (the portal's or the hub's)."""
    return ui_url("tokens.index", **args)


def safe_list_url(target: str | None) -> str:
    """Where a plain form goes back to: the list it was posted from (any filters kept), never elsewhere."""
    index = list_url()
    if local_path(target) and urlparse(target).path == index:
        return target
    return index


def safe_back_url(target: str | None) -> str:
    """Where a plain form goes back to: the list it was posted from (filters kept) or a token's page
    of this UI; anything else is the list."""
    if target:
        parts = urlparse(target)
        rest = parts.path.removeprefix(list_url() + "/")
        if (not parts.scheme and not parts.netloc and rest != parts.path
                and token_format.PUBLIC_ID.fullmatch(rest)):
            return parts.path
    return safe_list_url(target)


def is_list_url(target: str) -> bool:
    return urlparse(target).path == list_url()


# A create or regenerate form carries a one-time key, so posting it again (a reload of the page
# that showed the value, without JavaScript) shows no second value: the session remembers the
# keys it spent and which token each made.
FORM_KEYS = "spent_form_keys"
KEPT_FORM_KEYS = 20


def new_form_key() -> str:
    return secrets.token_urlsafe(16)


def spent_by(key: str) -> str | None:
    """The public id of the token a form with this key already created or regenerated, if any."""
    return dict(session.get(FORM_KEYS, [])).get(key) if key else None


def spend(key: str, token: ApiToken) -> None:
    if key:
        kept = [pair for pair in session.get(FORM_KEYS, []) if pair[0] != key]
        session[FORM_KEYS] = [*kept, [key, token.public_id]][-KEPT_FORM_KEYS:]


# --------------------------------------------------------------------------- rendering


def render_page(template: str, actor: Actor, **context) -> str:
    """A token page or fragment in the layout of the UI serving the request (set by its guard)."""
    context.setdefault("list_url", safe_list_url(request.values.get("next")))
    context.setdefault("back_url", safe_back_url(request.values.get("next")))
    return render_template(template, layout=g.layout,
                           sees_all=roles.can(actor.role, Capability.SEE_ALL_TOKENS),
                           may_bulk_revoke=incident.may_bulk_revoke(actor),
                           status_labels=STATUS_LABELS, type_labels=TYPE_LABELS,
                           grace_options=GRACE_OPTIONS, **context)


def _list_context(actor: Actor, filters: queries.TokenFilters) -> dict:
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
        "list_url": list_url(**filter_args(filters)),
    }


def _index_page(actor: Actor, filters: queries.TokenFilters, **extra) -> str:
    org = actor.membership.organization
    return render_page("tokens/index.html", actor, plan_required=org.plan == Plan.NONE,
                       **_list_context(actor, filters), **extra)


def _form_context(actor: Actor, form: TokenForm, *, token: ApiToken | None = None,
                  error: ServiceError | None = None) -> dict:
    org = actor.membership.organization
    role = token.creator.role if token is not None else actor.role
    limit = current_app.config["KEYWARD_FREE_TOKEN_LIMIT"]
    fields = dict(error.fields) if error is not None else {}
    may_create_canary = token is None and roles.can(actor.role, Capability.CREATE_CANARY_TOKENS)
    shown = {"name", "description", "type", "project_id", "rights", "permissions", "scopes", "expiration",
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
        "rights_grid": rights_grid(form, role, org.policy_allowed_scopes, editing=token is not None),
        "whose_role": "the creator’s role" if token is not None else "your role",
        "form_key": new_form_key(),
        "permission_hints": PERMISSION_HINTS,
        "scope_hints": SCOPE_HINTS,
        "expiration_options": EXPIRATION_OPTIONS,
        "keep_expiry": KEEP_EXPIRY,
    }


def _row_response(actor: Actor, token: ApiToken, **context):
    return render_page("tokens/_row.html", actor, row=token_row(actor, token), **context)


# --------------------------------------------------------------------------- list


@bp.get("")
def index():
    """The list (GET). An htmx filter, search or page request gets only the results table."""
    actor = current_actor()
    filters = filters_from_args(request.args)
    if wants_fragment():
        html = render_page("tokens/_table.html", actor, **_list_context(actor, filters))
    else:
        html = _index_page(actor, filters)
    return html, 200, {"Vary": "HX-Request"}


@bp.get("/<token_id>/row")
def row(token_id: str):
    """One row (the edit row's Cancel swaps it back)."""
    actor = current_actor()
    token = access.get_token_for(actor, token_id)
    return _row_response(actor, token)


@bp.get("/<token_id>")
def detail(token_id: str):
    """The token's page: its fields, requests per day, networks, audit history and effective rights."""
    actor = current_actor()
    token = access.get_token_for(actor, token_id)
    narrowing = incident.narrowing_plan(token) if incident.may_narrow(actor, token) else None
    return render_page("tokens/detail.html", actor, row=token_row(actor, token),
                       insight=insight.insight_for(token), narrowing=narrowing, back_url=request.path)


# --------------------------------------------------------------------------- create


@bp.get("/new")
def new():
    actor = current_actor()
    return render_page("tokens/new.html", actor, **_form_context(actor, TokenForm()))


@bp.post("")
def create():
    """Create, then show the secret once: rendered by this POST (never a redirect), not stored."""
    actor = current_actor()
    form_key = request.form.get("form_key", "")
    if spent_by(form_key):
        return _already_done(actor, spent_by(form_key), "created")
    form = TokenForm.from_request(request.form)
    try:
        token, secret = lifecycle.create_token(actor, form.to_create_input(), expiry_field="expiration")
    except FORM_ERRORS as error:
        context = _form_context(actor, form, error=error)
        return render_page("tokens/new.html", actor, **context), FORM_ERROR_STATUS
    spend(form_key, token)
    return _show_once(actor, token, secret, regenerated=False)


def _show_once(actor: Actor, token: ApiToken, secret: str, *, regenerated: bool):
    filters = filters_from_args({})
    html = _index_page(actor, filters, secret=secret, secret_row=token_row(actor, token),
                       regenerated=regenerated)
    # The page now shows the list: a reload there (pushed by htmx for a boosted form) is a GET.
    return html, 200, {**NO_STORE, "HX-Push-Url": list_url()}


def _already_done(actor: Actor, public_id: str, done: str):
    """The same create or regenerate form posted again (a reload): the list and what happened the first
    time (`done`: created or regenerated), never a second token or value."""
    try:
        token = access.get_token_for(actor, public_id)
    except ServiceError:  # out of reach since (another organization now): name no token
        token = None
    html = _index_page(actor, filters_from_args({}), already_done=done, already_token=token)
    return html, 200, {**NO_STORE, "HX-Push-Url": list_url()}


# --------------------------------------------------------------------------- edit


@bp.get("/<token_id>/edit")
def edit(token_id: str):
    actor = current_actor()
    token = access.get_token_for(actor, token_id)
    lifecycle.refuse_if_from_trusted_publisher(token, "edited")
    if not token_row(actor, token).may_edit:
        raise PermissionDenied("Your role cannot edit this token")
    return _edit_response(actor, token, TokenForm.from_token(token))


def _edit_response(actor: Actor, token: ApiToken, form: TokenForm, error: ServiceError | None = None):
    context = _form_context(actor, form, token=token, error=error)
    template = "tokens/_edit_row.html" if wants_fragment() else "tokens/edit.html"
    html = render_page(template, actor, row=token_row(actor, token), **context)
    return html, FORM_ERROR_STATUS if error is not None else 200


@bp.post("/<token_id>/edit")
def update(token_id: str):
    actor = current_actor()
    token = access.get_token_for(actor, token_id)
    form = TokenForm.from_request(request.form)
    try:
        lifecycle.update_token(actor, token, form.to_update_input(), expiry_field="expiration")
    except FORM_ERRORS as error:
        return _edit_response(actor, token, form, error)
    return _done(actor, token, f"Saved changes to “{token.name}”.")


def _done(actor: Actor, token: ApiToken, message: str):
    """After an action: the changed row for htmx, else back to the list with a message."""
    if wants_fragment():
        return _row_response(actor, token, focus_actions=True)
    flash(message)
    return redirect(safe_back_url(request.form.get("next")))


# --------------------------------------------------------------------------- lifecycle


@bp.post("/<token_id>/deactivate")
def deactivate(token_id: str):
    actor = current_actor()
    token = lifecycle.set_active(actor, access.get_token_for(actor, token_id), False)
    return _done(actor, token,
                 f"Deactivated “{token.name}”. Requests with it are refused until you reactivate it.")


@bp.post("/<token_id>/reactivate")
def reactivate(token_id: str):
    actor = current_actor()
    token = lifecycle.set_active(actor, access.get_token_for(actor, token_id), True)
    return _done(actor, token, f"Reactivated “{token.name}”.")


def _confirm(token_id: str, action: str):
    """The confirmation page a browser without JavaScript gets instead of the dialog."""
    actor = current_actor()
    token = access.get_token_for(actor, token_id)
    if action == "regenerate":
        lifecycle.refuse_if_from_trusted_publisher(token, "regenerated")
    row = token_row(actor, token)
    may = {"regenerate": row.may_regenerate, "revoke": row.may_revoke,
           "end-grace": row.may_regenerate}[action]
    if not may:
        raise PermissionDenied(f"Your role cannot {action.replace('-', ' ')} this token")
    if action == "end-grace" and row.grace_until is None:  # ended meanwhile: nothing to confirm
        flash(f"The old value of “{token.name}” no longer works.")
        return redirect(safe_back_url(request.args.get("next")))
    return _confirmation(actor, row, action, DEFAULT_GRACE, {})


def _confirmation(actor: Actor, row: TokenRow, action: str, grace_choice: str, errors: dict, status: int = 200):
    """The question before Regenerate, End grace period or Revoke: for htmx the page's dialog (its
    form swaps the row when asked from the list), else a page of its own."""
    back = safe_back_url(request.values.get("next"))
    context = {"row": row, "action": action, "grace_choice": grace_choice, "errors": errors,
               "back_url": back, "in_list": is_list_url(back), "form_key": new_form_key()}
    if wants_fragment():
        return render_page("tokens/_confirm_dialog.html", actor, **context), status, {
            "HX-Retarget": "#token-dialog", "HX-Reswap": "innerHTML"}
    return render_page("tokens/confirm.html", actor, **context), status


@bp.get("/<token_id>/regenerate")
def confirm_regenerate(token_id: str):
    return _confirm(token_id, "regenerate")


@bp.get("/<token_id>/revoke")
def confirm_revoke(token_id: str):
    return _confirm(token_id, "revoke")


@bp.get("/<token_id>/end-grace")
def confirm_end_grace(token_id: str):
    return _confirm(token_id, "end-grace")


@bp.post("/<token_id>/regenerate")
def regenerate(token_id: str):
    """A new value, shown once; the old one stops now or after the chosen grace period."""
    actor = current_actor()
    token = access.get_token_for(actor, token_id)
    form_key = request.form.get("form_key", "")
    if spent_by(form_key):
        return _already_done(actor, spent_by(form_key), "regenerated")
    grace_period = grace_period_from(request.form)
    try:
        token, secret = lifecycle.regenerate_token(actor, token, grace_period)
    except FORM_ERRORS as error:
        return _regenerate_refused(actor, token, grace_period, error)
    spend(form_key, token)
    if wants_fragment():  # the row, and the value in the panel above the list (out of band)
        row = token_row(actor, token)
        html = render_page("tokens/_regenerated.html", actor, row=row, secret=secret, secret_row=row,
                           regenerated=True)
        return html, 200, NO_STORE
    return _show_once(actor, token, secret, regenerated=True)


def _regenerate_refused(actor: Actor, token: ApiToken, grace_period: str, error: ServiceError):
    """Nothing changed: the dialog (htmx) or the confirmation page comes back with the choice as
    sent and the message beside the field."""
    errors = dict(error.fields or {})
    if not errors:
        errors["grace_period"] = error.message
    return _confirmation(actor, token_row(actor, token), "regenerate", grace_period, errors, FORM_ERROR_STATUS)


@bp.post("/<token_id>/end-grace")
def end_grace(token_id: str):
    """The previous value (kept by a regeneration with a grace period) stops working now."""
    actor = current_actor()
    token = lifecycle.end_grace(actor, access.get_token_for(actor, token_id))
    return _done(actor, token, f"The old value of “{token.name}” no longer works.")


@bp.post("/<token_id>/revoke")
def revoke(token_id: str):
    actor = current_actor()
    token = lifecycle.revoke_token(actor, access.get_token_for(actor, token_id))
    if wants_fragment():  # the row leaves the Active tab, and the count follows
        back = urlparse(safe_list_url(request.form.get("next")))
        filters = filters_from_args(MultiDict(parse_qsl(back.query)))
        return render_page("tokens/_revoked_row.html", actor, row=token_row(actor, token), oob=True,
                           **_list_context(actor, filters))
    flash(f"Revoked “{token.name}”. It is listed under Deleted.")
    return redirect(safe_back_url(request.form.get("next")))
