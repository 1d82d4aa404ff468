#!/usr/bin/env python3
"""Check server/openapi.json (stdlib only).

Usage: tools/check_openapi.py [PATH_OR_URL]   (default: server/openapi.json next to this tool)

Checks: the document parses as JSON; it is OpenAPI 3.0.3; it lists exactly ufbd's routes and
methods; every $ref resolves; POST routes accept a JSON body, may use the bearer scheme and
document x-compute-tokens; every response documents X-Request-Id and the timing headers; error
responses use the Error schema and 429 carries Retry-After; the ErrorType enum lists the
server's error types. Prints one line per failure and "openapi: N checks passed, M failed";
exit status 1 on any failure.
"""
import json
import os
import sys
import urllib.request

ROUTES = {
    "/": {"get"},
    "/openapi.json": {"get"},
    "/info": {"get"},
    "/health": {"get"},
    "/health/live": {"get"},
    "/health/ready": {"get"},
    "/metrics": {"get"},
    "/classify": {"post"},
    "/predict": {"post"},
    "/tokenize": {"post"},
}
TIMING = ("X-Request-Id", "x-queue-time", "x-compute-time", "x-total-time")
ERROR_TYPES = {"Validation", "Tokenizer", "Overloaded", "Unhealthy", "Unauthorized", "NotFound",
               "MethodNotAllowed", "PayloadTooLarge", "UnsupportedMediaType", "Timeout", "Internal"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


class Checker:
    def __init__(self, doc):
        self.doc = doc
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL - " + what)
        return cond

    def resolve(self, node, seen=()):
        """Follow a local $ref chain; None if it does not resolve."""
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/") or ref in seen:
                return None
            seen = seen + (ref,)
            cur = self.doc
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(cur, dict) or part not in cur:
                    return None
                cur = cur[part]
            node = cur
        return node


def walk_refs(node, path="#"):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield path, v
            else:
                yield from walk_refs(v, path + "/" + str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_refs(v, path + "/" + str(i))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "server", "openapi.json")
    try:
        if src.startswith(("http://", "https://")):
            with urllib.request.urlopen(src, timeout=10) as r:
                doc = json.loads(r.read().decode("utf-8"))
        else:
            with open(src, encoding="utf-8") as f:
                doc = json.load(f)
    except (OSError, ValueError) as e:
        print("FAIL - %s does not parse: %s" % (src, e))
        print("openapi: 0 checks passed, 1 failed")
        return 1

    c = Checker(doc)
    c.check(doc.get("openapi") == "3.0.3", "openapi version is 3.0.3 (got %r)" % doc.get("openapi"))
    c.check(isinstance(doc.get("info"), dict) and "title" in doc["info"] and "version" in doc["info"],
            "info has title and version")

    for where, ref in walk_refs(doc):
        c.check(c.resolve({"$ref": ref}) is not None, "%s: $ref %s resolves" % (where, ref))

    schemes = doc.get("components", {}).get("securitySchemes", {})
    bearer = [n for n, s in schemes.items() if s.get("type") == "http" and s.get("scheme") == "bearer"]
    c.check(bool(bearer), "components.securitySchemes has an http bearer scheme")

    paths = doc.get("paths", {})
    c.check(set(paths) == set(ROUTES), "paths are exactly %s (extra %s, missing %s)" % (
        sorted(ROUTES), sorted(set(paths) - set(ROUTES)), sorted(set(ROUTES) - set(paths))))
    op_ids = []
    for route, want in ROUTES.items():
        item = paths.get(route)
        if not isinstance(item, dict):
            continue
        methods = {m for m in item if m in HTTP_METHODS}
        c.check(methods == want, "%s methods are %s (got %s)" % (route, sorted(want), sorted(methods)))
        for m in methods:
            op = item[m]
            name = "%s %s" % (m.upper(), route)
            op_ids.append(op.get("operationId"))
            responses = op.get("responses", {})
            c.check("200" in responses, name + " documents 200")
            for code, resp in responses.items():
                r = c.resolve(resp)
                if not c.check(isinstance(r, dict), "%s %s response resolves" % (name, code)):
                    continue
                hdrs = r.get("headers", {})
                for h in TIMING:
                    c.check(h in hdrs, "%s %s documents header %s" % (name, code, h))
                if code.startswith(("4", "5")) and route not in ("/health", "/health/live", "/health/ready"):
                    sch = c.resolve(r.get("content", {}).get("application/json", {}).get("schema", {}))
                    c.check(isinstance(sch, dict) and "error" in sch.get("properties", {})
                            and "error_type" in sch.get("properties", {}),
                            "%s %s uses the Error schema" % (name, code))
                    ex = r.get("content", {}).get("application/json", {}).get("example")
                    if ex is not None:
                        c.check(ex.get("error_type") in ERROR_TYPES, "%s %s example error_type is known" % (name, code))
                if code == "429":
                    c.check("Retry-After" in hdrs, "%s %s documents Retry-After" % (name, code))
            if m == "post":
                body = op.get("requestBody", {})
                c.check("application/json" in body.get("content", {}), name + " takes an application/json body")
                sch = c.resolve(body.get("content", {}).get("application/json", {}).get("schema", {}))
                c.check(isinstance(sch, dict) and "inputs" in sch.get("required", []), name + " requires `inputs`")
                sec = op.get("security", doc.get("security", []))
                c.check(any(set(s) & set(bearer) for s in sec), name + " may use the bearer scheme")
                ok = c.resolve(responses.get("200", {})) or {}
                c.check("x-compute-tokens" in ok.get("headers", {}), name + " 200 documents x-compute-tokens")
                for code in ("400", "401", "413", "415", "422", "429", "500", "503"):
                    c.check(code in responses, "%s documents %s" % (name, code))
            else:
                sec = op.get("security", doc.get("security", []))
                c.check(not sec or {} in sec, name + " needs no credentials")
    c.check(len(op_ids) == len(set(op_ids)) and None not in op_ids, "operationIds are present and unique")

    # error types listed in the ErrorType enum
    et = c.resolve({"$ref": "#/components/schemas/ErrorType"}) or {}
    c.check(set(et.get("enum", [])) == ERROR_TYPES, "ErrorType enum is %s" % sorted(ERROR_TYPES))

    print("openapi: %d checks passed, %d failed" % (c.passed, c.failed))
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
