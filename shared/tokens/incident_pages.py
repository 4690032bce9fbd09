"""The security team's pages beside the API Tokens pages, for both UIs:

- bulk revoke: `Revoke selected` (the list's row checkboxes) and `Bulk revoke by rule`; each
  shows its dry run (count and list) first, and the confirmation revokes only what it listed;
- `Narrow to what it used` on a token's detail page, confirmed.

ONE blueprint, `incident`, that each UI registers beside the token pages with the same URL
prefix (`portal.incident.bulk_revoke`, `partner_hub.incident.narrow`); the UI's guard and layout
apply as to the token pages.

Thin views: parse → shared.tokens.incident → render the shared partials in shared/templates/tokens/.
With JavaScript, `Revoke selected` and `Narrow to what it used` open a native <dialog> (htmx fetches
the dry run into it); without, they are pages, and every action is a form that posts and redirects.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from flask import Blueprint, flash, redirect, request
from werkzeug.datastructures import MultiDict

from shared.core import validation
from shared.core.errors import InvalidRequest, PermissionDenied
from shared.identity.roles import Capability
from shared.identity.signin import current_actor, refuse_without, ui_url
from shared.tokens import access, incident
from shared.tokens.pages import FORM_ERROR_STATUS, list_url, render_page, wants_fragment
from shared.tokens.rows import token_row

bp = Blueprint("incident", __name__)

RULE_FIELDS = ("created_by", "partner_id", "created_before", "all")
# Revoking more tokens than this at once asks to type how many: a second look at a large blast radius.
TYPE_TO_CONFIRM_ABOVE = 10


def _whole_number(values: MultiDict, name: str, errors: validation.FieldErrors) -> int | None:
    raw = values.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 2**31 - 1:
        errors.add(name, "Choose one from the list")
        return None
    return int(raw)


def _start_of_day(values: MultiDict, errors: validation.FieldErrors) -> datetime | None:
    raw = values.get("created_before", "").strip()
    if not raw:
        return None
    try:
        return datetime.combine(date.fromisoformat(raw), time(0, 0), tzinfo=UTC)
    except ValueError:
        errors.add("created_before", "Enter a date as YYYY-MM-DD")
        return None


def bulk_rule_from(values: MultiDict) -> incident.BulkRule:
    """The rule form, the selected rows or a confirmation as a BulkRule; InvalidRequest with
    `fields` for anything unusable. A confirmation carries the ids its preview listed."""
    errors = validation.FieldErrors()
    rule = incident.BulkRule(
        token_ids=tuple(dict.fromkeys(values.getlist("token_ids"))),
        created_by=_whole_number(values, "created_by", errors),
        partner_id=_whole_number(values, "partner_id", errors),
        created_before=_start_of_day(values, errors),
        all=values.get("all") == "1",
        previewed=tuple(values.getlist("previewed")) if values.get("confirm") == "1" else None,
    )
    errors.raise_if_any()
    if values.get("selected") == "1" and not rule.token_ids:
        raise InvalidRequest("Select the tokens to revoke first",
                             fields={"token_ids": "Select the tokens to revoke first"})
    if not rule.token_ids and not rule.by_rule:
        raise InvalidRequest("Choose at least one rule",
                             fields={"rule": "Choose a member, a partner, a date or every token"})
    return rule


def _asks_for_preview(values: MultiDict) -> bool:
    return values.get("selected") == "1" or any(values.get(name) for name in RULE_FIELDS + ("token_ids",))


@bp.before_request
def _may_manage_tokens():
    """The token pages' own rule: only roles that manage API tokens (each view asks for more)."""
    refuse_without(Capability.MANAGE_OWN_TOKENS)


@bp.get("/bulk-revoke")
def bulk_preview():
    """GET: the rule form and, once something is chosen, the dry run: what would be revoked.
    An htmx request (Revoke selected) gets the dry run as a dialog."""
    actor = current_actor()
    if not incident.may_bulk_revoke(actor):
        raise PermissionDenied("Your role cannot revoke tokens in bulk")
    values = request.args
    preview = error = None
    if _asks_for_preview(values):
        try:
            rule = bulk_rule_from(values)
            preview = incident.bulk_revoke(actor, rule, dry_run=True)
        except InvalidRequest as failure:
            error = failure
    context = {"preview": preview, "values": values, "errors": error.fields if error else {},
               "type_to_confirm_above": TYPE_TO_CONFIRM_ABOVE,
               "error": error, "selection": values.get("selected") == "1" or bool(values.getlist("token_ids"))}
    if wants_fragment():
        return render_page("tokens/_bulk_dialog.html", actor, **context)
    return render_page("tokens/bulk_revoke.html", actor, choices=incident.rule_choices(actor), **context), \
        FORM_ERROR_STATUS if error else 200


@bp.post("/bulk-revoke")
def bulk_revoke():
    """POST: revoke what the confirmed dry run listed, then back to the list."""
    actor = current_actor()
    form = request.form
    count = len(form.getlist("previewed"))
    if count > TYPE_TO_CONFIRM_ABOVE and form.get("confirm_count", "").strip() != str(count):
        flash(f"Nothing was revoked: type {count} to revoke these {count} tokens.", "error")
        again = {name: form.getlist(name) for name in (*RULE_FIELDS, "token_ids", "selected") if form.get(name)}
        return redirect(ui_url("incident.bulk_preview", **again))
    try:
        result = incident.bulk_revoke(actor, bulk_rule_from(form), dry_run=False)
    except InvalidRequest as error:
        flash(error.message, "error")
        return redirect(ui_url("incident.bulk_preview"))
    if result.count:
        flash(f"Revoked {result.count} token{'' if result.count == 1 else 's'}. "
              f"{'It is' if result.count == 1 else 'They are'} listed under Deleted.")
    else:
        flash("No token was revoked: the tokens were revoked meanwhile.", "error")
    return redirect(list_url())


@bp.get("/<token_id>/narrow")
def confirm_narrow(token_id: str):
    """The confirmation a browser without JavaScript gets instead of the dialog."""
    actor = current_actor()
    token = access.get_token_for(actor, token_id)
    if not incident.may_narrow(actor, token):
        raise PermissionDenied("Your role cannot narrow this token")
    return render_page("tokens/narrow.html", actor, row=token_row(actor, token),
                       narrowing=incident.narrowing_plan(token))


@bp.post("/<token_id>/narrow")
def narrow(token_id: str):
    actor = current_actor()
    token = access.get_token_for(actor, token_id)
    before = dict(token.rights)
    try:
        token = incident.narrow_token(actor, token)
    except InvalidRequest as error:
        flash(error.message, "error")
    else:
        removed = [f"{scope} {permission}" for scope, held in before.items() for permission in held
                   if permission not in token.rights.get(scope, ())]
        flash(f"Narrowed “{token.name}”: removed {', '.join(removed)}." if removed
              else f"“{token.name}” already uses every right it has.")
    return redirect(ui_url("tokens.detail", token_id=token.public_id))
