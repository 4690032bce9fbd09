"""The app, request and request globals being served, as the objects themselves.

Flask's `current_app`, `request` and `g` are proxies: each attribute read through one runs
Werkzeug's proxy machinery (a descriptor, a closure, a context-variable read, an attribute getter).
The API's hot path read them about thirty times per request, which cost it 15 % of its
instructions (bench/instructions.py). Code on that path takes the object here, once, and reads it;
everywhere else the proxies are the simpler choice.
"""

from __future__ import annotations

import flask

# LocalProxy._get_current_object: the object a proxy stands for in this context (RuntimeError
# outside one, as the proxy itself raises).
app = flask.current_app._get_current_object
request = flask.request._get_current_object
g = flask.g._get_current_object
