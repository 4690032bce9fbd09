"""Settings → API Tokens, Members, Organization and Audit log (thin views).

The API Tokens pages are shared with the partner hub and live in shared/token_pages.py; this
module mounts them under /settings/api-tokens for staff. The other pages parse the form, call a
service in shared/ (organizations, audit_log) and render.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import login_required

from portal import bp
from shared import audit_log, organizations, roles
from shared.auth import current_actor, current_membership
from shared.errors import InvalidRequest, ServiceError
from shared.roles import Capability
from shared.token_pages import FORM_ERROR_STATUS, register_token_pages, wants_fragment

LAYOUT = "portal/layout.html"


def staff_page(capability: Capability) -> Callable[[Callable], Callable]:
    """Signed in, working in an organization as staff, with `capability`; else 403.

    Partner users have their own hub; the portal is for the organization's staff.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapper(*args, **kwargs):
            membership = current_membership()
            if membership is None:
                return redirect(url_for("auth.no_organization"))
            if roles.is_partner_role(membership.role) or not roles.can(membership.role, capability):
                abort(403, "Your role does not give access to this page.")
            return view(*args, **kwargs)

        return wrapper

    return decorator


register_token_pages(bp, "/settings/api-tokens", layout=LAYOUT, guard=staff_page(Capability.MANAGE_OWN_TOKENS))


# --------------------------------------------------------------------------- members


def _members_page(form_values: dict | None = None, error: ServiceError | None = None, status: int = 200):
    actor = current_actor()
    return render_template(
        "portal/members.html",
        members=organizations.list_members(actor),
        roles_for=lambda membership=None: organizations.assignable_roles(actor, membership),
        partners=organizations.list_partners(actor.organization_id),
        values=form_values or {},
        errors=error.fields if error else {},
        form_error=error.message if error and not error.fields else None,
        open_invite=error is not None,
    ), status


@bp.get("/settings/members")
@staff_page(Capability.MANAGE_MEMBERS)
def members():
    return _members_page()


@bp.post("/settings/members")
@staff_page(Capability.MANAGE_MEMBERS)
def add_member():
    form = request.form
    partner_id = form.get("partner_id", type=int)
    try:
        membership = organizations.add_member(
            current_actor(), form.get("email", ""), form.get("role", ""),
            display_name=form.get("display_name", "").strip(), password=form.get("password", ""),
            partner_id=partner_id)
    except InvalidRequest as error:
        values = {key: form.get(key, "") for key in ("email", "display_name", "role", "partner_id")}
        return _members_page(values, error, FORM_ERROR_STATUS)
    flash(f"Added {membership.user.email} as {membership.role.replace('_', ' ')}.")
    return redirect(url_for("portal.members"))


@bp.post("/settings/members/<int:membership_id>/role")
@staff_page(Capability.MANAGE_MEMBERS)
def change_role(membership_id: int):
    actor = current_actor()
    membership = organizations.get_member(actor, membership_id)
    try:
        organizations.change_role(actor, membership, request.form.get("role", ""))
    except InvalidRequest as error:
        flash(error.message, "error")
        return redirect(url_for("portal.members"))
    flash(f"{membership.user.email} is now {membership.role.replace('_', ' ')}.")
    return redirect(url_for("portal.members"))


@bp.post("/settings/members/<int:membership_id>/remove")
@staff_page(Capability.MANAGE_MEMBERS)
def remove_member(membership_id: int):
    actor = current_actor()
    membership = organizations.get_member(actor, membership_id)
    organizations.remove_member(actor, membership)
    flash(f"Removed {membership.user.email}. Their tokens stopped working and their sessions ended.")
    return redirect(url_for("portal.members"))


# --------------------------------------------------------------------------- organization


@bp.route("/settings/organization", methods=["GET", "POST"])
@staff_page(Capability.MANAGE_PLAN_AND_POLICY)
def organization():
    actor = current_actor()
    org = actor.membership.organization
    error = None
    if request.method == "POST":
        try:
            organizations.update_plan_and_policy(actor, organizations.parse_policy_form(request.form))
        except InvalidRequest as failure:
            error = failure
        else:
            flash("Saved the plan and token policy. New and edited tokens follow it from now on.")
            return redirect(url_for("portal.organization"))
    return render_template(
        "portal/organization.html", org=org, policy=organizations.policy_of(org), form=request.form,
        submitted=error is not None, errors=error.fields if error else {}, plans=organizations.PLAN_LABELS,
        known_scopes=roles.KNOWN_SCOPES,
    ), FORM_ERROR_STATUS if error else 200


# --------------------------------------------------------------------------- audit log


@bp.get("/settings/audit")
@staff_page(Capability.READ_AUDIT_LOG)
def audit():
    actor = current_actor()
    filters = audit_log.filters_from_args(request.args)
    events, total = audit_log.list_events(actor, filters)
    pages = max(1, -(-total // filters.per_page))
    template = "portal/_audit_table.html" if wants_fragment() else "portal/audit.html"
    return render_template(template, events=events, total=total, filters=filters, pages=pages,
                           actions=audit_log.actions_in(actor), actors=audit_log.actors_in(actor)), \
        200, {"Vary": "HX-Request"}
