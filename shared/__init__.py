"""Keyward's core: models, services and the pieces both UIs and the API share."""
