"""What this service offers, read from its OpenAPI document (``GET /schema/openapi.json``).

Clients and the simulator use optional routes (delays, gate changes, opt-outs, the watchlist) only
when the service lists them, so one client release works against older and newer services.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from touchpoints.transport import Transport

OPENAPI_PATH = "/schema/openapi.json"


@dataclass
class Capabilities:
    routes: dict[str, set[str]] = field(default_factory=dict)
    """path template → HTTP methods (upper case)."""
    document: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def load(cls, transport: Transport) -> Capabilities:
        doc = (await transport.request("GET", OPENAPI_PATH, repeatable=True)).json()
        return cls.from_document(doc)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Capabilities:
        routes = {path: {m.upper() for m in ops if m.lower() in {"get", "post", "put", "patch", "delete"}}
                  for path, ops in (doc.get("paths") or {}).items()}
        return cls(routes=routes, document=doc)

    def find(self, method: str, pattern: str) -> str | None:
        """The first path template (sorted, so the choice is stable) matching ``pattern`` that takes
        ``method``; ``{...}`` parameters in the template match ``\\{[^}]+\\}`` in the pattern."""
        rx = re.compile(pattern)
        for path in sorted(self.routes):
            if method.upper() in self.routes[path] and rx.fullmatch(path):
                return path
        return None

    def request_schema(self, method: str, path: str) -> dict[str, Any]:
        """The JSON request body schema of an operation, with ``$ref``s into components resolved
        one level (enough to read the property names)."""
        op = (self.document.get("paths", {}).get(path) or {}).get(method.lower()) or {}
        content = (op.get("requestBody") or {}).get("content") or {}
        schema = (content.get("application/json") or {}).get("schema") or {}
        return self._resolve(schema)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            return self.document.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1], {})
        for key in ("oneOf", "anyOf"):
            for option in schema.get(key, []):
                resolved = self._resolve(option)
                if resolved.get("properties"):
                    return resolved
        return schema


def fill_path(template: str, **values: object) -> str:
    """Put values into a template's ``{name}`` slots; a lone slot takes the first value given."""
    slots = re.findall(r"\{([^}:]+)(?::[^}]*)?\}", template)
    out = template
    for slot in slots:
        value = values.get(slot)
        if value is None and len(slots) == 1 and values:
            value = next(iter(values.values()))
        out = re.sub(r"\{" + re.escape(slot) + r"(?::[^}]*)?\}", str(value), out, count=1)
    return out
