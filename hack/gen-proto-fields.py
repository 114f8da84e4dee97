#!/usr/bin/env python3
"""Regenerate apiserver/openapi/proto-fields-v1.33.json.

Kubernetes clients (client-go >= 1.31, so kubectl's typed calls) send request bodies
as `application/vnd.kubernetes.protobuf`: the magic `k8s\\0`, then a `runtime.Unknown`
whose `raw` field holds the object in go-to-protobuf's encoding. Decoding that needs
every message's field numbers, which the OpenAPI document does not carry.

The field numbers come from the `k8s-pb` crate (kube-rs; prost code generated from
upstream's `generated.proto` files). This script reads its source, which cargo has
in its registry once `cargo info k8s-pb` (or a fetch) has run, and writes a table:

    { "<openapi definition name>": { "<tag>": [jsonName, kind, repeated, pointer, inline?] } }

`kind` is `string|int32|int64|bool|bytes|double`, `m:<definition>` for a message and
`map:<key kind>:<value kind>` for a map. `jsonName` is matched against the OpenAPI
definition's property names (prost renames `podIP` to `pod_ip`; the match ignores
case and underscores). `pointer` ("keep zero") marks the fields whose zero value
must survive decoding: Go pointer fields, which go-to-protobuf encodes only when set
(list in hack/go-pointer-fields.tsv, read off upstream's types.go), and fields
without omitempty, which Go's JSON always prints (openapi-gen lists them as
`required`). `inline` marks a Go struct
embedded with `json:",inline"` (Volume.VolumeSource): one field in protobuf, its
fields flattened into the parent in JSON.

Usage: python3 hack/gen-proto-fields.py [path/to/k8s-pb-x.y.z]
"""
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFS = os.path.join(ROOT, "apiserver/openapi/definitions-v1.33.json")
OUT = os.path.join(ROOT, "apiserver/openapi/proto-fields-v1.33.json")
POINTERS = os.path.join(ROOT, "hack/go-pointer-fields.tsv")

# Rust module paths → OpenAPI definition prefixes.
PREFIX = {
    "api": "io.k8s.api",
    "apimachinery": "io.k8s.apimachinery",
    "apiextensions_apiserver": "io.k8s.apiextensions-apiserver",
    "kube_aggregator": "io.k8s.kube-aggregator",
    "metrics": "io.k8s.metrics",
}


def crate_dir():
    if len(sys.argv) > 1:
        return sys.argv[1]
    found = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/k8s-pb-*")))
    if not found:
        sys.exit("k8s-pb is not in the cargo registry: run `cargo info k8s-pb` first")
    return found[-1]


def def_name(modpath, name):
    return ".".join([PREFIX[modpath[0]]] + modpath[1:] + [name])


def resolve(modpath, rust_type):
    """Turn a prost type path into (module path, type name)."""
    t = rust_type
    for wrap in ("::core::option::Option<", "::prost::alloc::boxed::Box<", "::prost::alloc::vec::Vec<"):
        while t.startswith(wrap):
            t = t[len(wrap):-1].strip()
    parts = [p for p in t.split("::") if p]
    mod = list(modpath)
    while parts and parts[0] == "super":
        mod.pop()
        parts.pop(0)
    return mod + parts[:-1], parts[-1]


def split_top(s):
    """Split a generic argument list at top-level commas."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


ATTR = re.compile(r"#\[prost\((.*?)\)\]\s*pub\s+(?:r#)?(\w+)\s*:\s*", re.S)


def parse_file(path, modpath, messages):
    text = open(path).read()
    for m in re.finditer(r"::prost::Message\)\]\s*pub struct (\w+) \{", text):
        name = m.group(1)
        body_start = m.end()
        # Find the struct's closing brace (fields hold no braces).
        end = text.index("\n}", body_start)
        body = text[body_start:end]
        fields = []
        pos = 0
        while True:
            a = ATTR.search(body, pos)
            if not a:
                break
            attr, field = a.group(1), a.group(2)
            # The type runs to the first top-level comma.
            i, depth = a.end(), 0
            while True:
                ch = body[i]
                if ch == "<":
                    depth += 1
                elif ch == ">":
                    depth -= 1
                elif ch == "," and depth == 0:
                    break
                i += 1
            rust_type = " ".join(body[a.end():i].split())
            pos = i
            tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
            kind = attr.split(",")[0].split("=")[0].strip()
            repeated = "repeated" in attr.split(",")[1:3] or " repeated" in attr
            if kind.startswith("btree_map") or kind.startswith("map"):
                kv = re.search(r'map = "(\w+), (\w+)"', attr)
                k, v = kv.group(1), kv.group(2)
                if v == "message":
                    inner = rust_type[rust_type.index("<") + 1 : rust_type.rindex(">")]
                    vt = split_top(inner)[1]
                    mp, tn = resolve(modpath, vt)
                    v = "m:" + def_name(mp, tn)
                kind = f"map:{k}:{v}"
                repeated = False
            elif kind == "message":
                mp, tn = resolve(modpath, rust_type)
                kind = "m:" + def_name(mp, tn)
            fields.append((tag, field, kind, repeated))
        messages[def_name(modpath, name)] = fields


def json_name(props, field):
    """Match a prost snake_case name against the OpenAPI property names."""
    key = field.replace("_", "").lower()
    for p in props:
        if p.replace("_", "").replace("-", "").replace("$", "").lower() == key:
            return p
    head, *rest = field.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def main():
    src = os.path.join(crate_dir(), "src")
    messages = {}
    for path in glob.glob(os.path.join(src, "**/mod.rs"), recursive=True):
        rel = os.path.relpath(os.path.dirname(path), src)
        if rel == "." or rel.split(os.sep)[0] not in PREFIX:
            continue
        parse_file(path, rel.split(os.sep), messages)
    defs = json.load(open(DEFS))["definitions"]
    # prost renames `PodIP` to `PodIp`; OpenAPI keeps upstream's spelling.
    spelled = {d.lower(): d for d in defs}

    def canon(n):
        return spelled.get(n.lower(), n)

    messages = {
        canon(n): [(t, f, "m:" + canon(k[2:]) if k.startswith("m:") else re.sub(r"m:(.*)$", lambda m: "m:" + canon(m.group(1)), k), r) for t, f, k, r in fs]
        for n, fs in messages.items()
    }
    pointers = set()
    if os.path.exists(POINTERS):
        for line in open(POINTERS):
            if line.startswith("#") or not line.strip():
                continue
            d, f, *_ = line.rstrip("\n").split("\t")
            pointers.add((d, f))
    out = {}
    inline_parent = {}
    unmatched_ptr = set(pointers)
    for name, fields in sorted(messages.items()):
        props = defs.get(name, {}).get("properties", {})
        table = {}
        required = set(defs.get(name, {}).get("required", []))
        for tag, field, kind, repeated in fields:
            jn = json_name(props, field)
            # A zero is meaningful for a Go pointer, and printed for a field without
            # omitempty (which openapi-gen lists as required).
            ptr = (name, jn) in pointers or jn in required
            unmatched_ptr.discard((name, jn))
            entry = [jn, kind, repeated, ptr]
            # Go embeds some structs with `json:",inline"` (Volume.VolumeSource,
            # Probe.ProbeHandler, IngressRule.IngressRuleValue): in protobuf they are
            # one field, in JSON their fields sit in the parent.
            if props and jn not in props and kind.startswith("m:"):
                sub = messages.get(kind[2:], [])
                inside = sum(json_name(props, f) in props for _, f, _, _ in sub)
                # Most of an embedded struct's fields show in the parent (a newer field
                # may not); a field newer than the definitions matches none.
                if sub and 2 * inside > len(sub):
                    entry.append(True)
                    inline_parent[kind[2:]] = (name, props)
            table[str(tag)] = entry
        out[name] = table
    # Messages that exist only inline (VolumeSource, EphemeralContainerCommon) have no
    # definition of their own: their JSON names are the parent's.
    # Pointer fields of embedded structs are listed under the outer definition.
    for sub, (parent, props) in inline_parent.items():
        for tag, field, _, _ in messages[sub]:
            entry = out[sub][str(tag)]
            if sub not in defs:
                entry[0] = json_name(props, field)
            parent_required = set(defs.get(parent, {}).get("required", []))
            entry[3] = entry[3] or (parent, entry[0]) in pointers or entry[0] in parent_required
            unmatched_ptr.discard((parent, entry[0]))
    for d, f in sorted(unmatched_ptr):
        print(f"warning: pointer field {d}.{f} matches no proto field", file=sys.stderr)
    with open(OUT, "w") as fh:
        json.dump(out, fh, separators=(",", ":"), sort_keys=True)
        fh.write("\n")
    print(f"{len(out)} messages, {sum(len(t) for t in out.values())} fields -> {OUT}")


if __name__ == "__main__":
    main()
