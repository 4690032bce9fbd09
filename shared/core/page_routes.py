"""Mounting a set of shared pages on a blueprint: the pattern behind register_*_pages.

A shared page module (notification_pages, and the token pages' ROUTES alike) lists its routes as
(rule under the prefix, endpoint, method, view method name) and each UI mounts them with its own
URL prefix and access guard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Blueprint

Route = tuple[str, str, str, str]


def mount_routes(bp: Blueprint, url_prefix: str, routes: Iterable[Route], views: object,
                 guard: Callable[[Callable], Callable]) -> None:
    """Add each route to `bp` under `url_prefix`, its view `views.<name>` wrapped in `guard`."""
    for rule, endpoint, method, name in routes:
        bp.add_url_rule(url_prefix + rule, endpoint, guard(getattr(views, name)), methods=[method])
