"""Settings → API Tokens, Members, Partners, Organization, Audit log and Notifications (thin views).

Every portal page is for the organization's staff: the blueprint's guard admits a signed-in staff
member (partner users have the hub) and sets the portal's layout. The pages shared with the hub are
blueprints of their own, registered here under the portal (`portal.tokens.detail`): the API Tokens
pages and the security team's pages under /settings/api-tokens, Notifications under
/settings/notifications. The other pages parse the form, call a service in shared/
(organizations, partners, audit_log) and render.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import (
    Response,
    flash,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from portal.blueprint import bp
from shared.audit import export as audit_export
from shared.audit import log as audit_log
from shared.core.errors import InvalidRequest, ServiceError, TokenLimitReached
from shared.core.validation import parse_id
from shared.identity import invitations, roles
from shared.identity import members as member_admin
from shared.identity.roles import Capability
from shared.identity.signin import current_actor, member_page, refuse_page
from shared.models import Plan
from shared.notifications import pages as notification_pages
from shared.orgs import organizations, partners
from shared.tokens import incident, incident_pages
from shared.tokens import pages as token_pages
from shared.tokens.pages import FORM_ERROR_STATUS, wants_fragment

LAYOUT = "portal/layout.html"


def staff_page(capability: Capability) -> Callable[[Callable], Callable]:
    """Signed in as the organization's staff, with `capability`; else 403 (partner users have the hub)."""
    return member_page(capability, partner=False)


@bp.before_request
def staff_only():
    """Every portal page: a signed-in staff member of the organization (each page asks for its capability)."""
    g.layout = LAYOUT
    return refuse_page(None, partner=False)


bp.register_blueprint(token_pages.bp, url_prefix="/settings/api-tokens")
bp.register_blueprint(incident_pages.bp, url_prefix="/settings/api-tokens")
# Every staff member has their own notifications, whatever their role.
bp.register_blueprint(notification_pages.bp, url_prefix="/settings/notifications")


# --------------------------------------------------------------------------- members


def _members_page(form_values: dict | None = None, error: ServiceError | None = None, status: int = 200,
                  issued: invitations.Issued | None = None):
    """The Members page; after an invitation (or a resend) its link, shown this once."""
    actor = current_actor()
    return render_template(
        "portal/members.html",
        members=member_admin.list_members(actor),
        departures=incident.departures(actor),
        transfer_candidates=incident.transfer_candidates(actor),
        roles_for=lambda membership=None: member_admin.assignable_roles(actor, membership),
        partners=organizations.list_partners(actor.organization_id),
        pending=invitations.pending_invitations(actor),
        may_handle=lambda invitation: invitations.may_handle(actor, invitation),
        is_expired=invitations.is_expired,
        issued=issued,
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
def invite_member():
    """Invite someone; the page answers with the link (shown once), never a redirect that would lose it."""
    form = request.form
    raw_partner = form.get("partner_id", "").strip()
    try:
        partner_id = parse_id(raw_partner)
        if raw_partner and partner_id is None:
            raise InvalidRequest("No such partner", fields={"partner_id": "No such partner"})
        issued = invitations.invite(current_actor(), form.get("email", ""), form.get("role", ""),
                                    partner_id=partner_id)
    except InvalidRequest as error:
        values = {key: form.get(key, "") for key in ("email", "role", "partner_id")}
        return _members_page(values, error, FORM_ERROR_STATUS)
    return _members_page(issued=issued)


@bp.post("/settings/members/invitations/<int:invitation_id>/resend")
@staff_page(Capability.MANAGE_MEMBERS)
def resend_invitation(invitation_id: int):
    actor = current_actor()
    issued = invitations.resend(actor, invitations.get_invitation_for(actor, invitation_id))
    return _members_page(issued=issued)


@bp.post("/settings/members/invitations/<int:invitation_id>/revoke")
@staff_page(Capability.MANAGE_MEMBERS)
def revoke_invitation(invitation_id: int):
    actor = current_actor()
    invitation = invitations.revoke(actor, invitations.get_invitation_for(actor, invitation_id))
    flash(f"Revoked the invitation for {invitation.email}: its link no longer works.")
    return redirect(url_for("portal.members"))


@bp.post("/settings/members/<int:membership_id>/role")
@staff_page(Capability.MANAGE_MEMBERS)
def change_role(membership_id: int):
    actor = current_actor()
    membership = member_admin.get_member(actor, membership_id)
    try:
        member_admin.change_role(actor, membership, request.form.get("role", ""))
    except InvalidRequest as error:
        flash(error.message, "error")
        return redirect(url_for("portal.members"))
    flash(f"{membership.user.email} is now {membership.role.replace('_', ' ')}.")
    return redirect(url_for("portal.members"))


@bp.get("/settings/members/<int:membership_id>/remove")
@staff_page(Capability.MANAGE_MEMBERS)
def confirm_remove_member(membership_id: int):
    """The removal dialog as a page, for a browser without JavaScript."""
    actor = current_actor()
    membership = member_admin.get_member(actor, membership_id)
    return render_template("portal/member_remove.html", membership=membership,
                           departure=incident.departures(actor).get(membership.id),
                           candidates=incident.transfer_candidates(actor, membership))


@bp.post("/settings/members/<int:membership_id>/remove")
@staff_page(Capability.MANAGE_MEMBERS)
def remove_member(membership_id: int):
    """Remove the member, first transferring their organization and project tokens when asked."""
    actor = current_actor()
    membership = member_admin.get_member(actor, membership_id)
    email, org_name = membership.user.email, membership.organization.name
    raw_target = request.form.get("transfer_to", "").strip()
    try:
        target = parse_id(raw_target)
        if raw_target and target is None:
            raise InvalidRequest("No such member", fields={"transfer_to": "No such member"})
        moved = incident.transfer_and_remove(actor, membership, target)
    except (InvalidRequest, TokenLimitReached) as error:
        flash(f"{email} was not removed: {error.message}", "error")
        return redirect(url_for("portal.members"))
    kept = (f" {len(moved)} token{'' if len(moved) == 1 else 's'} now belong{'s' if len(moved) == 1 else ''} to "
            f"{moved[0].creator.user.email} and keep{'s' if len(moved) == 1 else ''} working." if moved else "")
    flash(f"Removed {email}.{kept} Their other tokens stopped working and they can no longer open "
          f"{org_name}.")
    return redirect(url_for("portal.members"))


# --------------------------------------------------------------------------- partners


def _partners_page(open_form: int | str | None = None, error: ServiceError | None = None,
                   issued: invitations.Issued | None = None):
    """The Partners page; after a failed form, that form open with its values and errors; after an
    invitation (or a resend), its link, shown this once."""
    actor = current_actor()
    return render_template(
        "portal/partners.html",
        cards=partners.list_partner_cards(actor),
        partner_roles=partners.partner_roles(),
        pending=invitations.pending_invitations(actor),
        may_handle=lambda invitation: invitations.may_handle(actor, invitation),
        is_expired=invitations.is_expired,
        issued=issued,
        open_form=open_form,
        values=request.form if error else {},
        errors=error.fields if error else {},
        form_error=error.message if error and not error.fields else None,
    ), FORM_ERROR_STATUS if error else 200


def _back_to_partners(message: str):
    flash(message)
    return redirect(url_for("portal.partners_page"))


@bp.get("/settings/partners")
@staff_page(Capability.MANAGE_PARTNERS)
def partners_page():
    return _partners_page()


@bp.post("/settings/partners")
@staff_page(Capability.MANAGE_PARTNERS)
def partner_create():
    try:
        partner = partners.create_partner(current_actor(), request.form.get("name", ""))
    except InvalidRequest as error:
        return _partners_page("new", error)
    return _back_to_partners(f"Created the partner {partner.name}. Invite its users so they can use the "
                             "partner hub.")


@bp.post("/settings/partners/<int:partner_id>/users")
@staff_page(Capability.MANAGE_PARTNERS)
def partner_user_invite(partner_id: int):
    actor = current_actor()
    partner = partners.get_partner(actor, partner_id)
    try:
        issued = partners.invite_partner_user(actor, partner, request.form.get("email", ""),
                                              request.form.get("role", ""))
    except InvalidRequest as error:
        return _partners_page(partner.id, error)
    return _partners_page(issued=issued)


@bp.post("/settings/partners/<int:partner_id>/invitations/<int:invitation_id>/resend")
@staff_page(Capability.MANAGE_PARTNERS)
def partner_invitation_resend(partner_id: int, invitation_id: int):
    actor = current_actor()
    partner = partners.get_partner(actor, partner_id)
    issued = invitations.resend(actor, invitations.get_invitation_for(actor, invitation_id, partner.id))
    return _partners_page(issued=issued)


@bp.post("/settings/partners/<int:partner_id>/invitations/<int:invitation_id>/revoke")
@staff_page(Capability.MANAGE_PARTNERS)
def partner_invitation_revoke(partner_id: int, invitation_id: int):
    actor = current_actor()
    partner = partners.get_partner(actor, partner_id)
    invitation = invitations.revoke(actor, invitations.get_invitation_for(actor, invitation_id, partner.id))
    return _back_to_partners(f"Revoked the invitation for {invitation.email}: its link no longer works.")


@bp.post("/settings/partners/<int:partner_id>/users/<int:membership_id>/remove")
@staff_page(Capability.MANAGE_PARTNERS)
def partner_user_remove(partner_id: int, membership_id: int):
    actor = current_actor()
    partner = partners.get_partner(actor, partner_id)
    membership = partners.get_partner_user(actor, partner, membership_id)
    partners.remove_partner_user(actor, membership)
    return _back_to_partners(f"Removed {membership.user.email} from {partner.name}. Their tokens stopped "
                             "working and they can no longer open the partner hub.")


@bp.post("/settings/partners/<int:partner_id>/remove")
@staff_page(Capability.MANAGE_PARTNERS)
def partner_remove(partner_id: int):
    actor = current_actor()
    partner = partners.get_partner(actor, partner_id)
    users = partners.remove_partner(actor, partner)
    return _back_to_partners(f"Removed the partner {partner.name} and its {len(users)} "
                             f"user{'' if len(users) == 1 else 's'}. Their tokens stopped working and they "
                             "can no longer open the partner hub; its pending invitations no longer work.")


# --------------------------------------------------------------------------- organization


@bp.route("/settings/organization", methods=["GET", "POST"])
@staff_page(Capability.MANAGE_PLAN_AND_POLICY)
def organization():
    actor = current_actor()
    org = actor.membership.organization
    error = confirm_stop = None
    if request.method == "POST":
        try:
            wanted = organizations.parse_policy_form(request.form)
        except InvalidRequest as failure:
            error = failure
        else:
            stopping = organizations.working_token_count(org.id) if (
                wanted.plan == Plan.NONE and org.plan != Plan.NONE) else 0
            # "No plan" stops every token at once: say how many, and save only once confirmed.
            if stopping and request.form.get("confirm_stop") != str(stopping):
                confirm_stop = stopping
            else:
                before = organizations.policy_of(org)
                organizations.update_plan_and_policy(actor, wanted)
                flash(_what_changed(before, wanted, stopping))
                return redirect(url_for("portal.organization"))
    return render_template(
        "portal/organization.html", org=org, policy=organizations.policy_of(org), form=request.form,
        submitted=request.method == "POST", errors=error.fields if error else {},
        plans=organizations.PLAN_LABELS, known_scopes=roles.KNOWN_SCOPES, confirm_stop=confirm_stop,
    ), FORM_ERROR_STATUS if error else 200


def _what_changed(before: organizations.PolicyInput, after: organizations.PolicyInput, stopped: int) -> str:
    """The flash after saving: what the change did, in the words of its consequence."""
    said = []
    if after.plan != before.plan:
        label = organizations.PLAN_LABELS[after.plan]
        if after.plan == Plan.NONE:
            tokens = f"{stopped} token{'' if stopped == 1 else 's'}"
            said.append(f"The plan is now {label}: {tokens} stopped working, "
                        "and no token can be created or used until you choose a plan.")
        else:
            said.append(f"The plan is now {label}.")
    policy = {name: value for name, value in vars(after).items() if name != "plan"}
    if policy != {name: value for name, value in vars(before).items() if name != "plan"}:
        said.append("Saved the token policy: tokens created or edited from now on follow it"
                    + ("; the unused-token rule applies to every token." if after.deactivate_unused_days
                       != before.deactivate_unused_days else "."))
    return " ".join(said) or "Nothing changed."


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


@bp.get("/settings/audit/export")
@staff_page(Capability.READ_AUDIT_LOG)
def audit_export_download():
    """What the audit page's filters show, as a streamed CSV or JSON Lines download."""
    actor = current_actor()
    export = audit_export.download(actor, audit_log.filters_from_args(request.args),
                                   request.args.get("format", "csv"), actor.membership.organization.slug)
    return Response(stream_with_context(export.chunks), content_type=export.content_type,
                    headers={"Content-Disposition": f'attachment; filename="{export.filename}"'})
