"""An organization's settings: names of organizations and projects on the command line, and the
Organization page's plan and scope rules; a refusal changes nothing."""

from __future__ import annotations

import pytest

from tests.pages import csrf, html, signed_in

ORGANIZATION = "/settings/organization"


@pytest.mark.parametrize("name", ["   ", "N" * 101])
def test_an_organization_needs_a_name_of_1_to_100_characters(runner, make, name):
    from shared.models import Organization

    result = runner.invoke(args=["orgs", "create", name])
    assert result.exit_code == 1 and "Organization name must be 1–100 characters" in result.output
    assert make.rows(Organization) == []
    assert runner.invoke(args=["orgs", "create", "N" * 100]).exit_code == 0


@pytest.mark.parametrize("name", ["   ", "P" * 101])
def test_a_project_needs_a_name_of_1_to_100_characters(runner, make, name):
    from shared.models import Project

    org = make.org()
    result = runner.invoke(args=["projects", "create", name, "--org", org.slug])
    assert result.exit_code == 1 and "Project name must be 1–100 characters" in result.output
    assert make.rows(Project) == []


def test_a_project_token_names_an_existing_project(runner, make):
    from shared.models import ApiToken

    org = make.org()
    member = make.member(org, "admin")
    make.project(org, "Website")
    result = runner.invoke(args=["tokens", "create", "--org", org.slug, "--user", member.email, "--name", "ci",
                                 "--scopes", "documents", "--permissions", "read", "--type", "project",
                                 "--project", "Webshop"])
    assert result.exit_code == 1 and f"No project named 'Webshop' in {org.slug}" in result.output
    assert make.rows(ApiToken) == []
    found = runner.invoke(args=["tokens", "create", "--org", org.slug, "--user", member.email, "--name", "ci",
                                "--scopes", "documents", "--permissions", "read", "--type", "project",
                                "--project", " website "])  # the name is matched trimmed, in any case
    assert found.exit_code == 0, found.output


def policy(make, slug: str) -> tuple:
    from shared.orgs import organizations

    org = make.run(lambda: organizations.get_organization(slug))
    return org.plan, org.policy_allowed_scopes


def test_the_organization_page_refuses_an_unknown_plan(client, make):
    org = make.org("business")
    signed_in(client, make.member(org, "owner"))
    response = client.post(ORGANIZATION, data={"csrf_token": csrf(client, ORGANIZATION), "plan": "platinum"})
    assert response.status_code == 422
    assert '<p class="field-error">Choose a plan</p>' in html(response)
    assert policy(make, org.slug) == ("business", None)
    assert not make.audit("organization.plan_changed")


def test_restricting_scopes_needs_at_least_one_scope(client, make):
    org = make.org("business")
    signed_in(client, make.member(org, "owner"))
    response = client.post(ORGANIZATION, data={"csrf_token": csrf(client, ORGANIZATION), "plan": "business",
                                               "restrict_scopes": "1"})
    assert response.status_code == 422
    assert '<p class="field-error">Choose at least one scope tokens may use</p>' in html(response)
    assert policy(make, org.slug) == ("business", None)
    assert not make.audit("organization.policy_changed")
