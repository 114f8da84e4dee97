#!/usr/bin/env python3
"""Regenerates apiserver/openapi/definitions-v1.33.json, the OpenAPI definitions the
apiserver serves, validates against and reads patch strategies from.

Source: the `kubernetes-validate` wheel from PyPI (Apache-2.0), which ships upstream's
swagger definitions for each release converted to JSON Schema
(`kubernetes-json-schema/v1.33.0-local/_definitions.json`). This script reverses that
conversion so the result is upstream's swagger `definitions` again:
  - `"type": [T, "null"]` becomes `"type": T` (upstream has no nullable types);
  - IntOrString and Quantity become upstream's `{"type": "string", "format": ...}`;
  - the `enum` added to every `apiVersion`/`kind` property is dropped;
  - `$ref`s point at `#/definitions/...`.
Every `x-kubernetes-*` extension (group-version-kind, patch strategy and merge key,
list and map types) is upstream's, unchanged.

Usage: pip download --no-deps kubernetes-validate==1.37.0 && unzip it, then
  python3 hack/gen-openapi-defs.py path/to/_definitions.json
"""
import json
import sys

SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "type": "string",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.",
        "type": "string",
    },
}


def fix(node, prop=None):
    if isinstance(node, list):
        return [fix(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "type" and isinstance(v, list):
            v = [t for t in v if t != "null"]
            v = v[0] if len(v) == 1 else v
        elif k == "$ref":
            v = v.replace("#/$defs/", "#/definitions/")
        elif k == "enum" and prop in ("apiVersion", "kind"):
            continue
        elif k == "properties":
            v = {name: fix(p, name) for name, p in v.items()}
            out[k] = v
            continue
        else:
            v = fix(v)
        out[k] = v
    return out


def main():
    src = json.load(open(sys.argv[1]))["$defs"]
    defs = {}
    for name, schema in sorted(src.items()):
        defs[name] = SPECIAL.get(name) or fix(schema)
    with open("apiserver/openapi/definitions-v1.33.json", "w") as f:
        json.dump({"definitions": defs}, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")


main()
