"""OpenAPI 3.1 (FastAPI's output) to 3.0.3 for Swagger UI 4, which renders no 3.1 schema."""

from __future__ import annotations

import copy
from typing import Any

_BOUNDS = (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum"))
# keys whose value maps names to schemas (a property may be called "const")
_MAPS = frozenset({"properties", "patternProperties", "schemas", "$defs", "definitions"})


def downgrade(schema: dict[str, Any]) -> dict[str, Any]:
    """A 3.0.3 copy of a 3.1 schema as FastAPI and pydantic write it: ``null`` in ``anyOf``
    / ``oneOf`` or in a ``type`` list becomes ``nullable``, numeric exclusive bounds become
    ``minimum``/``maximum`` with a boolean flag, ``const`` becomes a one-value ``enum``."""
    out = _walk(copy.deepcopy(schema))
    out["openapi"] = "3.0.3"
    return dict(out)


def _walk(node: Any) -> Any:
    if isinstance(node, list):
        return [_walk(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _walk_map(v) if k in _MAPS else _walk(v) for k, v in node.items()}
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [x for x in options if x != {"type": "null"}]
            node.pop(key)
            node["nullable"] = True
            if len(rest) == 1 and "$ref" in rest[0]:
                node["allOf"] = rest  # a $ref takes no siblings in 3.0
            elif len(rest) == 1:
                node = {**rest[0], **node}
            elif rest:
                node[key] = rest
    kind = node.get("type")
    if isinstance(kind, list) and "null" in kind:
        others = [t for t in kind if t != "null"]
        node["nullable"] = True
        if len(others) == 1:
            node["type"] = others[0]
        else:
            node.pop("type")
            node["anyOf"] = [{"type": t} for t in others]
    for exclusive, bound in _BOUNDS:
        value = node.get(exclusive)
        if isinstance(value, int | float) and not isinstance(value, bool):
            node[bound], node[exclusive] = value, True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node


def _walk_map(node: Any) -> Any:
    if not isinstance(node, dict):
        return _walk(node)
    return {name: _walk(schema) for name, schema in node.items()}
