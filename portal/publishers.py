"""Settings → Trusted publishers, for owners and admins: the CI identities that may exchange their
OIDC token for a short-lived token. Thin: parse the form, call shared.publishers, render.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from portal.blueprint import bp
from portal.views import staff_page
from shared.core.errors import InvalidRequest
from shared.core.oidc_issuers import BUILTIN_ISSUERS, issuer_label
from shared.identity import roles
from shared.identity.roles import Capability
from shared.identity.signin import current_actor
from shared.orgs.organizations import list_projects
from shared.publishers import service
from shared.tokens.pages import FORM_ERROR_STATUS

manager_page = staff_page(Capability.MANAGE_TRUSTED_PUBLISHERS)
MIN_CONDITION_ROWS = 3  # rows offered without JavaScript; one more appears after each filled one


def _condition_rows(form: MultiDict) -> list[tuple[str, str]]:
    claims, values = form.getlist("condition_claim"), form.getlist("condition_value")
    rows = [(claim.strip(), value.strip()) for claim, value in zip(claims, values, strict=False)]
    return [(claim, value) for claim, value in rows if claim or value]


def _conditions(rows: list[tuple[str, str]]) -> dict[str, str]:
    conditions: dict[str, str] = {}
    for claim, value in rows:
        if claim in conditions:
            message = f"The claim '{claim}' is listed twice; give it one value"
            raise InvalidRequest(message, fields={"conditions": message})
        conditions[claim] = value  # an empty claim name or value is refused by the service
    return conditions


def _rights(checked: list[str]) -> dict[str, list[str]]:
    rights: dict[str, list[str]] = {}
    for cell in checked:
        scope, _, permission = cell.partition(" ")
        rights.setdefault(scope, []).append(permission)
    return rights


def _number(raw: str | None, default):
    raw = (raw or "").strip()
    if not raw:
        return default
    return int(raw) if raw.isdigit() and len(raw) < 10 else raw  # anything else: the service says why


def _form_error(error: InvalidRequest | None) -> str | None:
    """What no field shows: an error about the whole form (`body`) or one without fields."""
    if error is None:
        return None
    return error.fields.get("body") or (error.message if not error.fields else None)


def _index(*, error: InvalidRequest | None = None, status: int = 200):
    actor = current_actor()
    form = request.form if error else MultiDict()
    rows = _condition_rows(form)
    rows += [("", "")] * max(MIN_CONDITION_ROWS - len(rows), 1 if rows else 0)
    checked = set(form.getlist("rights")) if error else {"documents read"}
    allowed = service.allowed_issuers()
    # GitHub Actions and GitLab first, then those this installation added.
    issuers = [i for i in BUILTIN_ISSUERS if i in allowed] + sorted(allowed - set(BUILTIN_ISSUERS))
    org = actor.membership.organization
    return render_template(
        "portal/trusted_publishers.html",
        listings=service.list_publishers(actor),
        issuers=[(issuer, issuer_label(issuer)) for issuer in issuers],
        issuer_label=issuer_label,
        scopes=service.GRANTABLE_SCOPES, permissions=roles.KNOWN_PERMISSIONS,
        blocked_scopes=set() if org.policy_allowed_scopes is None else
        {s for s in service.GRANTABLE_SCOPES if s not in org.policy_allowed_scopes},
        projects=list_projects(actor.organization_id),
        values={"name": form.get("name", ""), "issuer": form.get("issuer", issuers[0] if issuers else ""),
                "audience": form.get("audience", service.DEFAULT_AUDIENCE),
                "project_id": form.get("project_id", ""),
                "lifetime_minutes": form.get("lifetime_minutes", str(service.DEFAULT_LIFETIME_MINUTES)),
                "rows": rows[:service.MAX_CONDITIONS], "rights": checked},
        lifetime=(service.MIN_LIFETIME_MINUTES, service.MAX_LIFETIME_MINUTES),
        errors=error.fields if error else {},
        form_error=_form_error(error),
    ), status


@bp.get("/settings/trusted-publishers")
@manager_page
def trusted_publishers_page():
    return _index()


@bp.post("/settings/trusted-publishers")
@manager_page
def trusted_publisher_create():
    form = request.form
    try:
        publisher = service.register_publisher(
            current_actor(), name=form.get("name", ""), issuer=form.get("issuer", ""),
            audience=form.get("audience", "").strip(), conditions=_conditions(_condition_rows(form)),
            rights=_rights(form.getlist("rights")), project_id=_number(form.get("project_id"), None),
            lifetime_minutes=_number(form.get("lifetime_minutes"), service.DEFAULT_LIFETIME_MINUTES))
    except InvalidRequest as error:
        return _index(error=error, status=FORM_ERROR_STATUS)
    flash(f"Added the trusted publisher “{publisher.name}”. "
          "Its CI jobs can now exchange their identity token.")
    return redirect(url_for("portal.trusted_publishers_page"))


@bp.post("/settings/trusted-publishers/<publisher_id>/delete")
@manager_page
def trusted_publisher_delete(publisher_id: str):
    actor = current_actor()
    publisher, revoked = service.delete_publisher(actor, service.get_publisher_for(actor, publisher_id))
    count = len(revoked)
    flash(f"Deleted the trusted publisher “{publisher.name}”"
          + (f" and revoked its {count} live token{'s' if count != 1 else ''}." if count else "."))
    return redirect(url_for("portal.trusted_publishers_page"))
