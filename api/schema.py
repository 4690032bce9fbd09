"""Request schemas that validate AND describe: the OpenAPI document is generated from these.

Every endpoint declares its query parameters and JSON body with the fields below through
`endpoint(...)`. The same objects parse the request (400 invalid_request with `fields`) and
render the OpenAPI 3 description, so the document cannot drift from what the code accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import g, request

from api.auth import token_required
from api.blueprint import bp
from shared.core import current, dates, ratelimits, validation
from shared.core.errors import InvalidRequest
from shared.core.netaddr import client_address

MISSING: Any = object()


class FieldError(ValueError):
    pass


@dataclass
class Field:
    description: str = ""
    nullable: bool = False
    default: Any = MISSING

    def openapi(self) -> dict:
        schema = self._schema()
        if self.description:
            schema["description"] = self.description
        if self.nullable:
            schema["nullable"] = True
        if self.default is not MISSING and self.default is not None:
            schema["default"] = self.default
        return schema

    def _schema(self) -> dict:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def from_json(self, value: Any) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise FieldError("Must not be null")
        return self._from_json(value)

    def _from_json(self, value: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def from_query(self, raw: str) -> Any:
        return self._from_json(raw)


@dataclass
class String(Field):
    min_length: int = 0
    max_length: int = 200
    choices: tuple[str, ...] | None = None

    def _schema(self) -> dict:
        schema: dict = {"type": "string", "maxLength": self.max_length}
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.choices:
            schema["enum"] = list(self.choices)
        return schema

    def _from_json(self, value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError("Must be a string")
        # Neither can be stored: PostgreSQL refuses NUL in text, and a lone surrogate (valid in JSON's
        # \uXXXX escapes) is not UTF-8. Refused here, they would reach the database and answer 500.
        if "\x00" in value:
            raise FieldError("Must not contain NUL characters")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise FieldError("Must be valid Unicode text (no lone surrogates)") from None
        if len(value) > self.max_length:
            raise FieldError(f"At most {self.max_length} characters")
        if len(value) < self.min_length:
            raise FieldError("Required" if self.min_length == 1 else f"At least {self.min_length} characters")
        if self.choices and value not in self.choices:
            raise FieldError(f"Must be one of {', '.join(self.choices)}")
        return value


@dataclass
class Integer(Field):
    minimum: int | None = None
    maximum: int | None = None

    def _schema(self) -> dict:
        schema: dict = {"type": "integer"}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema

    def _from_json(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError("Must be a whole number")
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise FieldError(f"Must be from {self.minimum} to {self.maximum}")
        return value

    def from_query(self, raw: str) -> int:
        if not re.fullmatch(r"-?\d{1,18}", raw.strip()):
            raise FieldError("Must be a whole number")
        return self._from_json(int(raw))


@dataclass
class Boolean(Field):
    def _schema(self) -> dict:
        return {"type": "boolean"}

    def _from_json(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise FieldError("Must be true or false")
        return value


@dataclass
class Moment(Field):
    """An ISO 8601 date (YYYY-MM-DD) or date-time; returned as given, parsed by the services."""

    def _schema(self) -> dict:
        return {"type": "string", "maxLength": 40,
                "description": "ISO 8601 date (YYYY-MM-DD) or date-time (UTC when no offset)"}

    def _from_json(self, value: Any) -> str:
        if not isinstance(value, str) or dates.parse_moment(value) is None:
            raise FieldError("Must be an ISO 8601 date or date-time")
        return value


@dataclass
class Array(Field):
    items: Field = field(default_factory=lambda: String(max_length=50))
    min_items: int = 0
    max_items: int = 50

    def _schema(self) -> dict:
        schema: dict = {"type": "array", "items": self.items.openapi(), "maxItems": self.max_items}
        if self.min_items:
            schema["minItems"] = self.min_items
        return schema

    def _from_json(self, value: Any) -> list:
        if not isinstance(value, list):
            raise FieldError("Must be a list")
        if len(value) < self.min_items:
            raise FieldError(f"At least {self.min_items} item{'s' if self.min_items != 1 else ''}")
        if len(value) > self.max_items:
            raise FieldError(f"At most {self.max_items} items")
        parsed = []
        for item in value:
            try:
                parsed.append(self.items.from_json(item))
            except FieldError as error:
                raise FieldError(f"Each item: {error}") from None
        return parsed


@dataclass
class Mapping(Field):
    """A JSON object of names to values (names are checked by the service that uses them)."""

    values: Field = field(default_factory=lambda: String(max_length=50))
    min_properties: int = 0
    max_properties: int = 50
    key_max_length: int = 50

    def _schema(self) -> dict:
        schema: dict = {"type": "object", "additionalProperties": self.values.openapi(),
                        "maxProperties": self.max_properties}
        if self.min_properties:
            schema["minProperties"] = self.min_properties
        return schema

    def _from_json(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise FieldError("Must be an object")
        if len(value) < self.min_properties:
            raise FieldError(f"At least {self.min_properties} "
                             f"entr{'ies' if self.min_properties != 1 else 'y'}")
        if len(value) > self.max_properties:
            raise FieldError(f"At most {self.max_properties} entries")
        names = String(max_length=self.key_max_length, min_length=1)
        parsed = {}
        for key, item in value.items():
            try:
                name = names.from_json(key)
            except FieldError as error:
                raise FieldError(f"Each name: {'must not be empty' if not key else error}") from None
            try:
                parsed[name] = self.values.from_json(item)
            except FieldError as error:
                raise FieldError(f"{name}: {error}") from None
        return parsed


@dataclass
class Body:
    """A JSON object body. `shapes`: alternative groups of fields that say the same thing in two
    ways (e.g. rights, or scopes + permissions); fields of two groups never come together, and with
    `shape_required` one group must be complete."""

    fields: dict[str, Field]
    required: tuple[str, ...] = ()
    name: str = ""
    optional: bool = False  # the request may have no body at all (then every field is absent)
    shapes: tuple[tuple[str, ...], ...] = ()
    shape_required: bool = False

    def openapi(self) -> dict:
        schema: dict = {"type": "object", "additionalProperties": False,
                        "properties": {key: f.openapi() for key, f in self.fields.items()}}
        if self.required:
            schema["required"] = list(self.required)
        if self.shapes:
            schema.update(self._shapes_openapi())
        return schema

    def _shapes_openapi(self) -> dict:
        def any_of(names: tuple[str, ...]) -> dict:
            return {"anyOf": [{"required": [name]} for name in names]}

        if self.shape_required:  # exactly one group, complete, and nothing of the others
            return {"oneOf": [{"required": list(group), "not": any_of(tuple(
                name for other in self.shapes if other is not group for name in other))}
                for group in self.shapes]}
        mixes = [{"allOf": [any_of(first), any_of(second)]}
                 for i, first in enumerate(self.shapes) for second in self.shapes[i + 1:]]
        return {"not": mixes[0] if len(mixes) == 1 else {"anyOf": mixes}}

    def _shape_error(self, payload: dict) -> tuple[str, str] | None:
        present = [group for group in self.shapes if any(name in payload for name in group)]
        if len(present) > 1:
            return self.shapes[0][0], f"Give {self._alternatives()}, not both"
        if self.shape_required and not (present and all(name in payload for name in present[0])):
            missing = [name for name in present[0] if name not in payload] if present else []
            if missing:
                return missing[0], "Required"
            return self.shapes[0][0], f"Give {self._alternatives()}"
        return None

    def _alternatives(self) -> str:
        return ", or ".join(" and ".join(group) for group in self.shapes)

    def parse(self, payload: Any) -> dict:
        if not isinstance(payload, dict):
            raise InvalidRequest("The body must be a JSON object", fields={"body": "Expected a JSON object"})
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}
        for key in payload:
            if key not in self.fields:
                errors[str(key)[:50]] = "Unknown field"
        if self.shapes and (shape_error := self._shape_error(payload)):
            errors[shape_error[0]] = shape_error[1]
        for key, spec in self.fields.items():
            if key not in payload:
                if key in self.required:
                    errors[key] = "Required"
                continue
            try:
                values[key] = spec.from_json(payload[key])
            except FieldError as error:
                errors[key] = str(error)
        if errors:
            raise InvalidRequest("Invalid request body", fields=errors)
        return values


def parse_query(params: dict[str, Field]) -> dict:
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for key in request.args:
        if key not in params:
            errors[key[:50]] = "Unknown parameter"
    for key, spec in params.items():
        raw = request.args.get(key)
        if raw is None or raw == "":
            if spec.default is not MISSING:
                values[key] = spec.default
            continue
        try:
            values[key] = spec.from_query(raw)
        except FieldError as error:
            errors[key] = str(error)
    if errors:
        raise InvalidRequest("Invalid query parameters", fields=errors)
    return values


# --------------------------------------------------------------------------- the registry


@dataclass
class Operation:
    method: str
    rule: str
    summary: str
    scope: str | None
    query: dict[str, Field]
    body: Body | None
    responses: dict[int, str]  # status -> component schema name (or "" for no body)
    tag: str
    authenticated: bool = True


OPERATIONS: list[Operation] = []


def endpoint(method: str, rule: str, *, summary: str, scope: str | None, tag: str,
             responses: dict[int, str], query: dict[str, Field] | None = None, body: Body | None = None,
             authenticated: bool = True, address_limit: str | None = None) -> Callable:
    """Register a JSON endpoint: route, token authentication, validation and its OpenAPI entry.

    The view receives the validated query as `query=` and body as `body=` keyword arguments.
    An unauthenticated endpoint may be limited per client address (`address_limit` names the
    KEYWARD_<NAME>_LIMIT setting); the limit counts before anything else, bad requests too.
    """
    operation = Operation(method, rule, summary, scope, query or {}, body, responses, tag, authenticated)
    OPERATIONS.append(operation)

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def validated(**kwargs):
            served = current.request()
            if operation.query or served.query_string:  # no parsing for a request without one
                kwargs["query"] = parse_query(operation.query)
            if operation.body is not None:
                payload = served.get_json(silent=True)
                if payload is None and operation.body.optional and not served.get_data(cache=True):
                    payload = {}
                if payload is None:
                    raise InvalidRequest("Send a JSON object with Content-Type: application/json",
                                         fields={"body": "Expected a JSON object"})
                kwargs["body"] = operation.body.parse(payload)
            current.g().operation = operation
            return view(**kwargs)

        def limited(**kwargs):
            g.rate_state = ratelimits.hit_address(address_limit, client_address())
            return validated(**kwargs)

        if authenticated:
            wrapped = token_required(scope)(validated)
        else:
            wrapped = wraps(view)(limited) if address_limit else validated
        bp.add_url_rule(rule, endpoint=view.__name__, view_func=wrapped, methods=[method])
        return wrapped

    return decorator


MAX_ID = validation.MAX_ID  # PostgreSQL integer; larger ids cannot exist
ID = f"int(min=1, max={MAX_ID})"  # URL converter for database ids in rules


def identifier(description: str, nullable: bool = False) -> Integer:
    return Integer(description, minimum=1, maximum=MAX_ID, nullable=nullable)


def pagination(default_per_page: int = 25) -> dict[str, Field]:
    return {
        "page": Integer("Page number, from 1", minimum=1, maximum=100_000, default=1),
        "per_page": Integer("Items per page (at most 100)", minimum=1, maximum=100, default=default_per_page),
    }
