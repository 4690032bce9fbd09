"""Trusted publishers: a CI job trades its platform's OIDC token for a short-lived Keyward token."""
