#!/usr/bin/env bash
# Schema-validate the Kubernetes manifests in docker/k8s/ and check the deployment rules this
# project relies on. Validator: kubernetes-validate (PyPI), which bundles the Kubernetes
# OpenAPI JSON schemas, so after the one-time pip install nothing here needs the network.
# It is installed into a venv at $UFBD_KV_VENV (default /var/tmp/ufbd-kv).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${UFBD_KV_VENV:-/var/tmp/ufbd-kv}
PKG=kubernetes-validate==1.37.0
KUBE_VERSIONS=${UFBD_KUBE_VERSIONS:-"1.29.0 1.37.0"}   # oldest and newest clusters targeted

if ! "$VENV/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null \
   || [ "$("$VENV/bin/python" -c 'import kubernetes_validate.version as v; print(v.__version__)' 2>/dev/null)" != "${PKG#*==}" ]; then
    echo "validate-k8s: installing $PKG into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "$PKG" || { echo "validate-k8s: pip install $PKG failed"; exit 1; }
fi

files=(docker/k8s/*.yaml)
fail=0
for v in $KUBE_VERSIONS; do
    out=$("$VENV/bin/kubernetes-validate" --strict -k "$v" "${files[@]}" 2>&1) || fail=1
    echo "$out"
    # The only kind without a bundled schema may be the Prometheus Operator's ServiceMonitor
    # (a CRD); checked structurally below.
    if grep -v 'kind ServiceMonitor with api version monitoring.coreos.com/v1' <<< "$out" \
            | grep -q "Couldn't find schema"; then
        echo "validate-k8s: a manifest has a kind with no schema"; fail=1
    fi
done

# Rules beyond the schema (see docker/README.md).
"$VENV/bin/python" - "${files[@]}" <<'PY' || fail=1
import sys, yaml
docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]
kinds = {d["kind"]: d for d in docs}
errors = []
def need(cond, msg):
    if not cond: errors.append(msg)
for k in ("Deployment", "Service", "HorizontalPodAutoscaler", "ServiceMonitor"):
    need(k in kinds, f"missing a {k}")
dep = kinds["Deployment"]; pod = dep["spec"]["template"]["spec"]
c = next(c for c in pod["containers"] if c["name"] == "ufbd")
env = {e["name"]: e.get("value") for e in c.get("env", [])}
need(pod.get("enableServiceLinks") is False, "enableServiceLinks must be false (ufbd refuses injected UFBD_PORT=tcp://...)")
need(env.get("UFBD_HOST") == "0.0.0.0", "UFBD_HOST must be 0.0.0.0")
for p in ("startupProbe", "livenessProbe", "readinessProbe"):
    need(p in c, f"container needs a {p}")
need(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/health/live", "liveness must use /health/live")
need(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/health/ready", "readiness must use /health/ready")
pre = c.get("lifecycle", {}).get("preStop", {})
cmd = pre.get("exec", {}).get("command", [])
pre_s = int(pre["sleep"]["seconds"]) if "sleep" in pre else (int(cmd[1]) if cmd[:1] == ["sleep"] else 0)
need(5 <= pre_s <= 10, f"preStop sleep should be 5-10 s (is {pre_s})")
drain = int(env.get("UFBD_DRAIN_TIMEOUT_S") or 30)
grace = pod.get("terminationGracePeriodSeconds", 30)
need(grace > pre_s + drain, f"terminationGracePeriodSeconds {grace} must exceed preStop {pre_s} + drain {drain}")
psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
need(psc.get("runAsNonRoot") or csc.get("runAsNonRoot"), "runAsNonRoot")
need(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
need(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
need(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
r = c.get("resources", {})
need(r.get("requests", {}).get("cpu") and r.get("limits", {}).get("memory"), "cpu request and memory limit")
ann = dep["spec"]["template"]["metadata"].get("annotations", {})
need(ann.get("prometheus.io/scrape") == "true", "prometheus.io/scrape annotation")
port_names = {p["name"] for p in c["ports"]}
svc = kinds["Service"]
need(all(p["targetPort"] in port_names or p["targetPort"] == 8080 for p in svc["spec"]["ports"]), "Service targets the http port")
sel = dep["spec"]["selector"]["matchLabels"]
need(svc["spec"]["selector"] == sel, "Service selector == Deployment selector")
hpa = kinds["HorizontalPodAutoscaler"]
need(hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "HPA targets the Deployment")
need(any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"]["metrics"]), "HPA on CPU")
sm = kinds["ServiceMonitor"]["spec"]   # structural check of the CRD object
svc_ports = {p["name"] for p in svc["spec"]["ports"]}
need(sm["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(), "ServiceMonitor selects the Service")
need(all(e.get("port") in svc_ports and e.get("path", "/metrics") == "/metrics" for e in sm["endpoints"]),
     "ServiceMonitor endpoints use a named Service port and /metrics")
for e in errors: print("validate-k8s: rule failed:", e)
print(f"validate-k8s: rules {'FAILED' if errors else 'ok'} ({len(docs)} objects)")
sys.exit(1 if errors else 0)
PY

if [ "$fail" = 0 ]; then echo "validate-k8s: all manifests valid"; else echo "validate-k8s: FAILED"; fi
exit "$fail"
