"""Sign in, sign out and switching organization: the only views in shared/."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from urllib.parse import parse_qsl, urlencode, urlparse

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user, logout_user
from flask_login.config import EXEMPT_METHODS
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.routing import BuildError
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from shared.audit.record import Actor
from shared.core import ratelimits
from shared.core.db import write_transaction
from shared.core.extensions import db, login_manager
from shared.core.netaddr import client_address
from shared.core.ratelimits import RateLimited
from shared.core.validation import local_path
from shared.identity import accounts, roles, sessions
from shared.identity.roles import Capability
from shared.models import Membership
from shared.notifications import notices

bp = Blueprint("auth", __name__)
login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to continue."
login_manager.session_protection = None  # sessions are server-side rows; see accounts.start_session


@login_manager.user_loader
def load_user(session_key: str):
    return sessions.user_for_session(session_key)


def return_path() -> str | None:
    """Where a signed-out browser goes back to after signing in: the page it was on.

    An htmx request (a row's action) returns to the page that made it (HX-Current-URL), a filter
    typed or a page turned to that page with its new query; a plain form post to the page it came
    from (its `next` field, else the Referer); a page load to itself. Only a path of this site.
    """
    if request.headers.get("HX-Request") == "true":
        page = _same_site_path(request.headers.get("HX-Current-URL"))
        if request.method == "GET" and page and urlparse(page).path == request.path:
            # The same page with new filters (typed, paged), without the empty ones.
            query = urlencode([(key, value) for key, value in parse_qsl(request.query_string.decode())
                               if value])
            return _safe_next(request.path + (f"?{query}" if query else ""))
        return page
    if request.method == "GET":
        return _safe_next(request.full_path.rstrip("?"))
    return _safe_next(request.form.get("next")) or _same_site_path(request.referrer)


def _same_site_path(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlparse(url)
    if parts.netloc and parts.netloc != request.host:
        return None
    return _safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))


@login_manager.unauthorized_handler
def sign_in_first():
    """A signed-out browser (never signed in, signed out elsewhere, or its session ended) asks for a
    page: to the sign-in page, and back here afterwards. For htmx that is `HX-Redirect`, so the
    whole page goes there instead of the sign-in page being swapped into a fragment."""
    target = url_for("auth.login", next=return_path())
    had_session = request.cookies.get(current_app.config["SESSION_COOKIE_NAME"]) is not None
    flash("Your session has ended. Sign in to continue." if had_session else "Please sign in to continue.")
    if request.headers.get("HX-Request") == "true":
        return "", 401, {"HX-Redirect": target}
    return redirect(target)


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def live_memberships(user) -> list[Membership]:
    return list(db.session.scalars(
        select(Membership).where(Membership.user_id == user.id, Membership.removed_at.is_(None))
        .order_by(Membership.id)).all())


def current_membership() -> Membership | None:
    """The signed-in user's membership in the organization they are working in."""
    if "membership" in g:
        return g.membership
    membership = None
    if current_user.is_authenticated:
        choices = [m for m in live_memberships(current_user) if m.is_live]
        wanted = session.get("org_id")
        membership = next((m for m in choices if m.organization_id == wanted), None)
        membership = membership or (choices[0] if choices else None)
    g.membership = membership
    return membership


def current_actor() -> Actor | None:
    membership = current_membership()
    if membership is None:
        return None
    return Actor(membership=membership, ip=client_address(), user_agent=request.headers.get("User-Agent"))


# Where each kind of member lands after signing in: staff in the portal, partner users in their hub.
HOME_ENDPOINTS = {"staff": "portal.tokens.index", "partner": "partner_hub.tokens.index"}
# Each audience's Notifications page (shared/notifications/pages.py), linked from the navigation.
NOTIFICATION_ENDPOINTS = {"staff": "portal.notifications.index", "partner": "partner_hub.notifications.index"}


def audience_of(membership: Membership) -> str:
    return "partner" if roles.is_partner_role(membership.role) else "staff"


def home_for(membership: Membership | None) -> str:
    if membership is None:
        return url_for("auth.no_organization")
    if not roles.can(membership.role, Capability.MANAGE_OWN_TOKENS):
        return url_for("auth.home")  # e.g. a viewer: nothing to manage, a plain welcome page
    try:
        return url_for(HOME_ENDPOINTS[audience_of(membership)])
    except BuildError:  # that UI is not installed in this app
        return url_for("auth.home")


@bp.app_template_global()
def ui_url(endpoint: str, **values) -> str:
    """The URL of `endpoint` in the UI serving this request: `ui_url("tokens.detail", ...)` is
    `portal.tokens.detail` in the portal and `partner_hub.tokens.detail` in the hub. The shared
    pages link to their sibling blueprints with it (a relative `.name` reaches only their own)."""
    return url_for(f"{request.blueprints[-1]}.{endpoint}", **values)


def refuse_page(capability: Capability | None, *, partner: bool) -> ResponseReturnValue | None:
    """Why this request may not open a page of one UI, as the response to send (None: it may).

    Signed in, working in an organization, in that UI's audience, with `capability` (None: any
    member of the audience, e.g. their own notifications). `partner=False` is the staff portal,
    `partner=True` the partner hub. A member of the other audience, or without the capability,
    gets 403; nobody is redirected across (a bookmarked portal page must not quietly become the hub).
    """
    if request.method in EXEMPT_METHODS:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    membership = current_membership()
    if membership is None:
        return redirect(url_for("auth.no_organization"))
    if roles.is_partner_role(membership.role) != partner:
        abort(403, "Your role does not give access to this page.")
    refuse_without(capability)
    return None


def refuse_without(capability: Capability | None) -> None:
    """403 unless the working membership's role has `capability`: the guard of a shared page
    blueprint, which runs after its UI's guard has admitted a signed-in member of its audience."""
    membership = current_membership()
    if capability is not None and (membership is None or not roles.can(membership.role, capability)):
        abort(403, "Your role does not give access to this page.")


def member_page(capability: Capability | None, *, partner: bool) -> Callable[[Callable], Callable]:
    """Guard one view as refuse_page does (the UIs guard their whole blueprint with it too)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            refusal = refuse_page(capability, partner=partner)
            return refusal if refusal is not None else view(*args, **kwargs)

        return wrapper

    return decorator


@bp.app_context_processor
def navigation_context() -> dict:
    """What the layout's navigation needs: the working membership, the others, capability checks.

    Callables, so pages that never show the navigation (and error pages rendered while the
    database is down) never query for it.
    """

    def signed_in_membership() -> Membership | None:
        try:
            return current_membership() if current_user.is_authenticated else None
        except SQLAlchemyError:
            db.session.rollback()
            return None

    def switchable_memberships() -> list[Membership]:
        if signed_in_membership() is None:
            return []
        return [m for m in live_memberships(current_user) if m.is_live]

    def can(capability: str) -> bool:
        membership = signed_in_membership()
        return membership is not None and roles.can(membership.role, Capability(capability))

    def notifications_nav() -> dict | None:
        """The navigation's Notifications link: its URL, the unread count, whether it is this page."""
        membership = signed_in_membership()
        if membership is None:
            return None
        endpoint = NOTIFICATION_ENDPOINTS[audience_of(membership)]
        try:
            url = url_for(endpoint)
            unread = notices.unread_count(membership.user_id, membership.organization_id)
        except BuildError:  # that UI is not installed in this app
            return None
        except SQLAlchemyError:
            db.session.rollback()
            return None
        # The page itself and its POSTs (whose htmx answers swap this link).
        current = request.blueprint == endpoint.rpartition(".")[0]
        return {"url": url, "unread": unread, "current": current}

    return {"signed_in_membership": signed_in_membership, "switchable_memberships": switchable_memberships,
            "can": can, "notifications_nav": notifications_nav}


def _safe_next(target: str | None) -> str | None:
    return local_path(target)


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    error = None
    status = 200
    headers = {}
    if form.validate_on_submit():
        # Guessing is throttled per address and per account: many addresses trying one account
        # (a botnet) are stopped as surely as one address trying many. The account's bucket is
        # keyed by the email as typed (normalized), whether or not it has an account, so the
        # refusal reveals nothing.
        buckets = (("login", client_address()), ("login_account", ratelimits.bucket_name(
            accounts.normalize_email(form.email.data))))
        try:
            for kind, bucket in buckets:
                ratelimits.refuse_if_failing(kind, bucket)
            verified = accounts.authenticate(form.email.data, form.password.data)
            if verified:
                session.clear()  # a fresh session on sign-in: no fixation
                with write_transaction():
                    accounts.save_rehash(verified)
                    user = sessions.start_session(verified.user_id)
                login_user(user)
                membership = current_membership()
                if membership:
                    session["org_id"] = membership.organization_id
                return redirect(_safe_next(request.args.get("next")) or home_for(membership))
            for kind, bucket in buckets:
                ratelimits.count_failure(kind, bucket)
            error = "Incorrect email or password."
            status = 401
        except RateLimited as limited:
            minutes = -(-limited.state.retry_after // 60)
            error = (f"Too many failed sign-ins. Try again in {minutes} minute{'' if minutes == 1 else 's'}.")
            status = 429
            headers["Retry-After"] = str(limited.state.retry_after)
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form, error=error), status, headers


def login_form_expired():
    """The sign-in form posted without its CSRF token (its session cookie expired meanwhile): the
    form again, with a fresh token and a word on what happened."""
    form = LoginForm(formdata=None)
    form.email.data = request.form.get("email", "")[:254]
    return render_template("auth/login.html", form=form,
                           error="The sign-in form expired. Sign in again."), 400


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        sessions.end_session(current_user.session_key)
    logout_user()
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("auth.login"))


@bp.post("/switch-organization")
@login_required
def switch_organization():
    wanted = request.form.get("organization_id", type=int)
    membership = next((m for m in live_memberships(current_user) if m.organization_id == wanted and m.is_live), None)
    if membership is not None:
        session["org_id"] = membership.organization_id
        g.pop("membership", None)
    return redirect(home_for(membership or current_membership()))


@bp.get("/")
@login_required
def home():
    membership = current_membership()
    target = home_for(membership)
    if target != url_for("auth.home"):
        return redirect(target)
    return render_template("auth/home.html", membership=membership)


@bp.get("/no-organization")
@login_required
def no_organization():
    return render_template("auth/no_organization.html"), 403
