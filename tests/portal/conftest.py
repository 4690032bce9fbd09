"""The organization and people the portal page tests share."""

from __future__ import annotations

import pytest


@pytest.fixture
def org(make):
    return make.org("business", name="Acme")


@pytest.fixture
def owner(make, org):
    return make.member(org, "owner")


@pytest.fixture
def editor(make, org):
    return make.member(org, "editor")
