"""The invitation link's page, `/invite/<secret>`: accept as a new person (name and password) or as
the signed-in account of the invited email. Thin: shared.identity.invitations decides.

The page is the same for every link that cannot be accepted (unknown, used, revoked, replaced,
expired): it never says which. The link's secret is in the URL, so this page sends no Referer
anywhere (not even to our own static files, whose requests are logged).
"""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user

from shared.core.errors import InvalidRequest, NotFound, PermissionDenied
from shared.core.netaddr import client_address
from shared.identity import accounts, invitations, sessions
from shared.identity.signin import home_for

bp = Blueprint("invitations", __name__)
FORM_ERROR_STATUS = 422


@bp.after_request
def no_referrer(response):
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _mode(invitation) -> tuple[str, object]:
    """What the visitor can do: "new" (no account has that email: choose a name and password),
    "accept" (signed in as that account), "sign_in" (an account exists: sign in as it first)."""
    account = accounts.find_user(invitation.email)
    if account is None:
        return "new", None
    if current_user.is_authenticated and current_user.id == account.id:
        return "accept", account
    return "sign_in", account


def _page(secret: str, invitation, *, errors: dict | None = None, values: dict | None = None,
          message: str | None = None, status: int = 200):
    mode, _ = _mode(invitation)
    return render_template(
        "auth/invitation.html", invitation=invitation, mode=mode, secret=secret,
        role_label=invitations.role_label(invitation.role), errors=errors or {}, values=values or {},
        message=message, sign_in_url=url_for("auth.login", next=url_for("invitations.accept", secret=secret)),
    ), status


def _unusable():
    return render_template("auth/invitation_invalid.html"), 404


@bp.get("/invite/<secret>")
def accept_page(secret: str):
    invitation = invitations.find_pending(secret)
    if invitation is None:
        return _unusable()
    return _page(secret, invitation)


@bp.post("/invite/<secret>")
def accept(secret: str):
    invitation = invitations.find_pending(secret)
    if invitation is None:
        return _unusable()
    mode, account = _mode(invitation)
    org_name = invitation.organization.name
    where = {"ip": client_address(), "user_agent": request.headers.get("User-Agent")}
    try:
        if mode == "new":
            membership = invitations.accept_as_new_user(secret, request.form.get("name", ""),
                                                        request.form.get("password", ""), **where)
            if current_user.is_authenticated:  # whoever was signed in here is signed out first
                sessions.end_session(current_user.session_key)
            session.clear()  # a fresh session for the new account: no fixation
            login_user(sessions.start_session(membership.user_id))
        elif mode == "accept":
            membership = invitations.accept_as_user(secret, account, **where)
        else:
            return _page(secret, invitation, status=403,
                         message=f"Sign in as {invitation.email} to accept this invitation.")
    except NotFound:
        return _unusable()
    except (InvalidRequest, PermissionDenied) as error:
        fields = error.fields if isinstance(error, InvalidRequest) else {}
        shown = {key: value for key, value in fields.items() if key in ("name", "password")}
        return _page(secret, invitation, errors=shown, values={"name": request.form.get("name", "")},
                     message=None if shown else error.message, status=FORM_ERROR_STATUS)
    session["org_id"] = membership.organization_id
    g.pop("membership", None)
    flash(f"Welcome to {org_name}: you joined as {invitations.role_label(membership.role)}.")
    return redirect(home_for(membership))
