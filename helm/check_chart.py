#!/usr/bin/env python3
"""Offline checks of the repricer Helm chart (helm/repricer).

Run from anywhere:   python3 helm/check_chart.py
Needs:               pip install -r helm/requirements-ci.txt   (no helm binary, no cluster,
                     no network: helm-python-sdk bundles Helm v4's Go engine as a shared
                     library, kubernetes-validate bundles the Kubernetes JSON schemas)

What it checks, printing one line per check and exiting non-zero on any failure:
  1. `helm lint --strict` on the default values and on every variant below;
     `helm package` works.
  2. Renders the chart (default values and variants: persistence off, ServiceMonitor on,
     OTLP endpoint set, PDB on, other release name / knobs) and parses every manifest
     (duplicate YAML keys are errors).
  3. Validates every rendered object with kubernetes-validate --strict against the
     oldest Kubernetes version the chart supports and the newest one bundled
     (CRDs such as ServiceMonitor have no bundled schema: a warning, plus own checks).
  4. values.schema.json rejects wrong values (string replicas/ports, unknown top-level
     key, negative limits, bad logFormat/protocol/durations, ...) and accepts good ones.
  5. Hardening and wiring of the rendered StatefulSet: replicas 1, OrderedReady +
     RollingUpdate, non-root 65532, fsGroup + OnRootMismatch, seccomp RuntimeDefault,
     read-only root fs, no privilege escalation, drop ALL, probes on the admin port,
     ReadWriteOnce claim, writable /tmp, terminationGracePeriodSeconds > drain timeout,
     every REPRICER_* / OTEL_* variable set from values; Services, ServiceMonitor, PDB
     and the helm-test pod.
"""

from __future__ import annotations

import copy
import re
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHART = HERE / "repricer"
INSTALL_HINT = (
    "install the checker's dependencies first:\n"
    "  python3 -m venv .venv-helm && .venv-helm/bin/pip install -r helm/requirements-ci.txt\n"
    "  .venv-helm/bin/python helm/check_chart.py"
)

try:
    import helm_python as helm
    import kubernetes_validate
    import kubernetes_validate.utils as kv_utils
    import yaml
except ImportError as exc:  # pragma: no cover - environment problem, not a chart problem
    print(f"FATAL: {exc}\n{INSTALL_HINT}", file=sys.stderr)
    sys.exit(2)

RELEASE = "repricer"
NAMESPACE = "prices"
# Oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest bundled schema.
KUBE_VERSIONS = ["1.27.0", kv_utils.latest_version()]
UID = 65532

# ----------------------------------------------------------------------------- output

_passed = 0
_failed: list[str] = []


def check(cond: bool, what: str, detail: str = "") -> bool:
    global _passed
    if cond:
        _passed += 1
        print(f"  ok    {what}")
    else:
        _failed.append(what)
        print(f"  FAIL  {what}" + (f"\n        {detail}" if detail else ""))
    return bool(cond)


def section(title: str) -> None:
    print(f"\n== {title}")


# ----------------------------------------------------------------------------- helpers


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def duration_seconds(text: str) -> float:
    """Independent re-implementation of the chart's humantime subset (h/m/s/ms)."""
    mult = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"([0-9]+)(ms|h|m|s)", text)
    assert parts, f"not a duration: {text!r}"
    return sum(int(n) * mult[u] for n, u in parts)


def render(chart, overrides: dict, name: str = RELEASE) -> dict[str, str]:
    return chart.render(overrides, name=name, namespace=NAMESPACE, is_install=True)


def parse_manifests(rendered: dict[str, str]) -> tuple[list[dict], str]:
    """All objects of a render (NOTES.txt returned separately)."""
    objs: list[dict] = []
    notes = ""
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.load_all(text, Loader=_UniqueKeyLoader):
            if doc:
                doc.setdefault("__source__", path)
                objs.append(doc)
    return objs, notes


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind]


def env_map(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def labels_match(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op = expr["key"], expr["operator"]
        if op == "DoesNotExist" and key in labels:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "In" and labels.get(key) not in expr.get("values", []):
            return False
        if op == "NotIn" and labels.get(key) in expr.get("values", []):
            return False
    return True


# ----------------------------------------------------------------------------- variants

VARIANTS: dict[str, dict] = {
    "default": {},
    "persistence-off": {"persistence": {"enabled": False}},
    "servicemonitor-on": {
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kube-prometheus-stack"}}
    },
    "otel-endpoint": {
        "otel": {
            "endpoint": "http://otel-collector.observability:4317",
            "protocol": "grpc",
            "serviceName": "repricer-prod",
            "sampler": "parentbased_traceidratio",
            "samplerArg": 0.25,
            "resourceAttributes": "deployment.environment=prod",
        }
    },
    "otel-http": {"otel": {"endpoint": "http://otel-collector.observability:4318", "protocol": "http/protobuf",
                           "sampler": "always_on"}},
    "pdb-on": {"podDisruptionBudget": {"enabled": True}},
    "knobs": {
        "image": {"repository": "myacr.azurecr.io/repricer", "tag": "1.2.3"},
        "limits": {"productMaxInflight": 80, "queryMaxInflight": 20, "repriceMaxInflight": 8192},
        "window": "500ms",
        "drainTimeout": "1m 30s",
        "checkpointInterval": "2m",
        "logFormat": "text",
        "logLevel": "info,repricer=debug",
        "persistence": {"storageClass": "managed-csi-premium", "size": "64Gi", "accessMode": "ReadWriteOncePod"},
        "service": {"type": "LoadBalancer", "port": 80, "adminPort": 9200,
                    "annotations": {"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}},
        "ports": {"http": 8081, "admin": 9103},
        "extraEnv": [{"name": "OTEL_BSP_MAX_QUEUE_SIZE", "value": "4096"}],
        "podAnnotations": {"example.com/team": "pricing"},
        "nodeSelector": {"kubernetes.azure.com/mode": "user"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "pricing", "effect": "NoSchedule"}],
        "imagePullSecrets": [{"name": "acr-pull"}],
        "probes": {"startup": {"periodSeconds": 15, "failureThreshold": 120, "timeoutSeconds": 5}},
        "serviceAccount": {"create": False, "name": "repricer-wi"},
    },
    "stopped": {"replicaCount": 0},
    "ms-drain": {"drainTimeout": "2500ms", "terminationGraceMarginSeconds": 5},
}

# (description, overrides) that values.schema.json must reject.
BAD_VALUES: list[tuple[str, dict]] = [
    ("replicaCount as a string", {"replicaCount": "1"}),
    ("replicaCount 2 (single writer)", {"replicaCount": 2}),
    ("negative replicaCount", {"replicaCount": -1}),
    ("unknown top-level key", {"replicas": 1}),
    ("unknown nested key (persistence.sise)", {"persistence": {"sise": "1Gi"}}),
    ("service.port as a string", {"service": {"port": "8080"}}),
    ("service.port 0", {"service": {"port": 0}}),
    ("service.port above 65535", {"service": {"port": 70000}}),
    ("ports.admin as a string", {"ports": {"admin": "9102"}}),
    ("negative limits.productMaxInflight", {"limits": {"productMaxInflight": -1}}),
    ("zero limits.queryMaxInflight", {"limits": {"queryMaxInflight": 0}}),
    ("negative limits.repriceMaxInflight", {"limits": {"repriceMaxInflight": -5}}),
    ("limits as a float", {"limits": {"repriceMaxInflight": 1.5}}),
    ("logFormat xml", {"logFormat": "xml"}),
    ("otel.protocol http/json", {"otel": {"protocol": "http/json"}}),
    ("otel.sampler unknown", {"otel": {"sampler": "sometimes"}}),
    ("otel.samplerArg above 1", {"otel": {"samplerArg": 2}}),
    ("otel.endpoint without scheme", {"otel": {"endpoint": "otel-collector:4317"}}),
    ("drainTimeout without unit", {"drainTimeout": "20"}),
    ("window as a number", {"window": 1}),
    ("checkpointInterval garbage", {"checkpointInterval": "soon"}),
    ("persistence.accessMode ReadWriteMany", {"persistence": {"accessMode": "ReadWriteMany"}}),
    ("persistence.enabled as a string", {"persistence": {"enabled": "yes"}}),
    ("persistence.size garbage", {"persistence": {"size": "ten gigs"}}),
    ("service.type Ingress", {"service": {"type": "Ingress"}}),
    ("image.pullPolicy sometimes", {"image": {"pullPolicy": "Sometimes"}}),
    ("empty image.repository", {"image": {"repository": ""}}),
    ("probe failureThreshold 0", {"probes": {"startup": {"failureThreshold": 0}}}),
    ("serviceMonitor.enabled as a string", {"serviceMonitor": {"enabled": "true"}}),
    ("podDisruptionBudget.maxUnavailable 2", {"podDisruptionBudget": {"maxUnavailable": 2}}),
    ("terminationGraceMarginSeconds 0", {"terminationGraceMarginSeconds": 0}),
]

GOOD_VALUES: list[tuple[str, dict]] = [
    ("defaults", {}),
    ("replicaCount 0", {"replicaCount": 0}),
    ("global (subchart use)", {"global": {"imageRegistry": "x"}}),
    ("samplerArg integer 0", {"otel": {"samplerArg": 0}}),
    ("drainTimeout '1m 30s'", {"drainTimeout": "1m 30s"}),
    ("storageClass '-'", {"persistence": {"storageClass": "-"}}),
    ("image digest", {"image": {"digest": "sha256:" + "a" * 64}}),
]


# ----------------------------------------------------------------------------- checks


def check_lint() -> None:
    section("helm lint --strict (Helm %s via helm-python-sdk %s)" % (helm.helm_sdk_version(), helm.__version__))
    for name, overrides in VARIANTS.items():
        for kube in (None, "v" + KUBE_VERSIONS[0]):
            report = helm.lint(str(CHART), overrides or None, strict=True, kube_version=kube)
            problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
            infos = [m for m in report.get("messages", []) if m.get("severity", 0) < 2]
            label = f"lint {name}" + (f" (kube {kube})" if kube else "")
            check(
                not problems and not report.get("errors"),
                label + (f"  [info: {'; '.join(m['error'] for m in infos)}]" if infos else ""),
                "; ".join(f"{m.get('path')}: {m.get('error')}".strip() for m in problems) or str(report.get("errors")),
            )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            archive = helm.package(str(CHART), destination=tmp)
            check(Path(archive).is_file(), f"helm package -> {Path(archive).name}")
        except helm.HelmError as exc:
            check(False, "helm package", str(exc))


def check_no_capabilities_gating() -> None:
    section("templates gate optional resources on values, not on cluster capabilities")
    offenders = [
        str(p.relative_to(CHART))
        for p in (CHART / "templates").rglob("*")
        if p.is_file() and ".Capabilities" in p.read_text()
    ]
    check(not offenders, "no .Capabilities in templates", ", ".join(offenders))


def check_schema(chart) -> None:
    section("values.schema.json rejects wrong values")
    for what, overrides in BAD_VALUES:
        try:
            chart.validate_schema(overrides)
            check(False, f"rejects {what}", f"schema accepted {overrides}")
            continue
        except helm.HelmValuesError as exc:
            first = str(exc).strip().splitlines()[-1].strip()
        # An install renders with the same validation: it must refuse too.
        try:
            render(chart, overrides)
            check(False, f"rejects {what}", "render accepted it")
        except helm.HelmError:
            check(True, f"rejects {what}  [{first}]")
    section("values.schema.json accepts good values")
    for what, overrides in GOOD_VALUES:
        try:
            chart.validate_schema(overrides)
            check(True, f"accepts {what}")
        except helm.HelmValuesError as exc:
            check(False, f"accepts {what}", str(exc))


def kube_validate(objs: list[dict], variant: str) -> None:
    for obj in objs:
        doc = {k: v for k, v in obj.items() if k != "__source__"}
        ident = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        for version in KUBE_VERSIONS:
            try:
                got = kubernetes_validate.validate(doc, version, strict=True)
                check(True, f"[{variant}] kubernetes-validate --strict {ident} (k8s {got})")
            except kubernetes_validate.SchemaNotFoundError as exc:
                # CRDs (ServiceMonitor) are not in the bundled schemas: warn only.
                print(f"  warn  [{variant}] {ident}: {exc.message} (CRD; checked structurally below)")
                break
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                check(False, f"[{variant}] kubernetes-validate --strict {ident} (k8s {version})",
                      f"{path}: {exc.message}")


def assert_statefulset(variant: str, values: dict, objs: list[dict]) -> None:
    p = f"[{variant}]"
    sts_list = by_kind(objs, "StatefulSet")
    if not check(len(sts_list) == 1, f"{p} exactly one StatefulSet"):
        return
    sts = sts_list[0]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    containers = pod["containers"]
    check(len(containers) == 1, f"{p} one container")
    c = containers[0]

    check(spec.get("replicas") == values["replicaCount"] and values["replicaCount"] in (0, 1),
          f"{p} replicas == {values['replicaCount']} (single writer)")
    check(spec.get("podManagementPolicy") == "OrderedReady", f"{p} podManagementPolicy OrderedReady")
    check(spec.get("updateStrategy", {}).get("type") == "RollingUpdate", f"{p} updateStrategy RollingUpdate")
    check(labels_match(spec["selector"], spec["template"]["metadata"]["labels"]),
          f"{p} selector matches the pod template labels")

    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, f"{p} pod runAsNonRoot")
    check(psc.get("runAsUser") == UID and psc.get("runAsGroup") == UID, f"{p} pod runAsUser/runAsGroup {UID}")
    check(psc.get("fsGroup") == UID, f"{p} pod fsGroup {UID}")
    check(psc.get("fsGroupChangePolicy") == "OnRootMismatch", f"{p} fsGroupChangePolicy OnRootMismatch")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{p} pod seccomp RuntimeDefault")
    check(pod.get("automountServiceAccountToken") is False, f"{p} no service account token mounted")
    check(pod.get("enableServiceLinks") is False, f"{p} enableServiceLinks false (no injected REPRICER_PORT)")

    csc = c.get("securityContext", {})
    check(csc.get("readOnlyRootFilesystem") is True, f"{p} readOnlyRootFilesystem")
    check(csc.get("allowPrivilegeEscalation") is False, f"{p} allowPrivilegeEscalation false")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{p} capabilities drop ALL")
    check(not csc.get("capabilities", {}).get("add"), f"{p} no capabilities added")
    check(csc.get("runAsNonRoot") is True and csc.get("runAsUser") == UID, f"{p} container non-root {UID}")
    check(csc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{p} container seccomp RuntimeDefault")

    # image and command line
    img = values["image"]
    want_image = (f"{img['repository']}@{img['digest']}" if img.get("digest")
                  else f"{img['repository']}:{img.get('tag') or '0.1.0'}")
    check(c.get("image") == want_image, f"{p} image {want_image}", f"got {c.get('image')}")
    check(c.get("args") == ["serve"] and "command" not in c,
          f"{p} runs the image ENTRYPOINT with args [serve] (config from env, not flags)")

    # ports and probes
    ports = {pt["name"]: pt["containerPort"] for pt in c.get("ports", [])}
    check(ports == {"http": values["ports"]["http"], "admin": values["ports"]["admin"]},
          f"{p} container ports http={values['ports']['http']} admin={values['ports']['admin']}", str(ports))
    for probe, path in (("startupProbe", "/healthz/ready"), ("readinessProbe", "/healthz/ready"),
                        ("livenessProbe", "/healthz/live")):
        get = c.get(probe, {}).get("httpGet", {})
        port = get.get("port")
        resolved = ports.get(port, port)
        check(get.get("path") == path and resolved == values["ports"]["admin"],
              f"{p} {probe} GET {path} on the admin port", f"got {get}")
    sp = c.get("startupProbe", {})
    budget = sp.get("periodSeconds", 0) * sp.get("failureThreshold", 0)
    want_budget = values["probes"]["startup"]["periodSeconds"] * values["probes"]["startup"]["failureThreshold"]
    check(budget == want_budget and budget >= 300,
          f"{p} startupProbe budget {budget}s (period x failureThreshold) >= 300s for recovery")

    # volumes
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    check(mounts.get("data") == "/data", f"{p} data volume mounted at /data")
    check(mounts.get("tmp") == "/tmp" and "emptyDir" in vols.get("tmp", {}), f"{p} writable /tmp emptyDir")
    vcts = spec.get("volumeClaimTemplates", [])
    if values["persistence"]["enabled"]:
        check("data" not in vols, f"{p} data comes from the claim template, not a pod volume")
        check(len(vcts) == 1 and vcts[0]["metadata"]["name"] == "data", f"{p} one volumeClaimTemplate 'data'")
        if vcts:
            vs = vcts[0]["spec"]
            check(vs.get("accessModes") == [values["persistence"]["accessMode"]]
                  and vs["accessModes"][0] in ("ReadWriteOnce", "ReadWriteOncePod"),
                  f"{p} claim accessModes {vs.get('accessModes')}")
            check(vs.get("storageClassName") == values["persistence"]["storageClass"],
                  f"{p} storageClassName {values['persistence']['storageClass']}")
            check(vs.get("resources", {}).get("requests", {}).get("storage") == values["persistence"]["size"],
                  f"{p} storage request {values['persistence']['size']}")
        check(spec.get("persistentVolumeClaimRetentionPolicy") == {"whenDeleted": "Retain", "whenScaled": "Retain"},
              f"{p} PVC retained on delete/scale-down")
    else:
        check(not vcts, f"{p} no volumeClaimTemplates when persistence is off")
        check("emptyDir" in vols.get("data", {}), f"{p} data is an emptyDir when persistence is off")

    # graceful shutdown
    drain = duration_seconds(values["drainTimeout"])
    tgps = pod.get("terminationGracePeriodSeconds")
    check(isinstance(tgps, int) and tgps > drain and tgps >= drain + values["terminationGraceMarginSeconds"],
          f"{p} terminationGracePeriodSeconds {tgps} > drain timeout {values['drainTimeout']} ({drain:g}s)")

    # environment
    env = env_map(c)
    want = {
        "REPRICER_LISTEN": f"0.0.0.0:{values['ports']['http']}",
        "REPRICER_ADMIN_LISTEN": f"0.0.0.0:{values['ports']['admin']}",
        "REPRICER_DATA_DIR": "/data",
        "REPRICER_PRODUCT_MAX_INFLIGHT": str(values["limits"]["productMaxInflight"]),
        "REPRICER_QUERY_MAX_INFLIGHT": str(values["limits"]["queryMaxInflight"]),
        "REPRICER_REPRICE_MAX_INFLIGHT": str(values["limits"]["repriceMaxInflight"]),
        "REPRICER_WINDOW": values["window"],
        "REPRICER_DRAIN_TIMEOUT": values["drainTimeout"],
        "REPRICER_CHECKPOINT_INTERVAL": values["checkpointInterval"],
        "LOG_FORMAT": values["logFormat"],
        "RUST_LOG": values["logLevel"],
        "OTEL_SERVICE_NAME": values["otel"]["serviceName"] or sts["metadata"]["name"],
        "OTEL_TRACES_SAMPLER": values["otel"]["sampler"],
        "OTEL_SDK_DISABLED": "true" if values["otel"]["sdkDisabled"] else "false",
    }
    if values["otel"]["sampler"].endswith("traceidratio"):
        want["OTEL_TRACES_SAMPLER_ARG"] = f"{values['otel']['samplerArg']:g}"
    if values["otel"]["endpoint"]:
        want["OTEL_EXPORTER_OTLP_ENDPOINT"] = values["otel"]["endpoint"]
        want["OTEL_EXPORTER_OTLP_PROTOCOL"] = values["otel"]["protocol"]
    for extra in values.get("extraEnv", []):
        want[extra["name"]] = extra.get("value")
    wrong = {k: (env.get(k), v) for k, v in want.items() if env.get(k) != v}
    check(not wrong, f"{p} env {', '.join(sorted(k for k in want if k.startswith(('REPRICER_', 'OTEL_'))))} "
                     f"set from values", f"(got, want): {wrong}")
    if not values["otel"]["endpoint"]:
        check("OTEL_EXPORTER_OTLP_ENDPOINT" not in env, f"{p} no OTLP endpoint (no exporter) when otel.endpoint is empty")
    ra = env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    check("k8s.pod.name=$(POD_NAME)" in ra and "POD_NAME" in env and list(env).index("POD_NAME") <
          list(env).index("OTEL_RESOURCE_ATTRIBUTES"),
          f"{p} OTEL_RESOURCE_ATTRIBUTES carries the pod name ({ra})")
    names = [e["name"] for e in c.get("env", [])]
    dupes = {n for n in names if names.count(n) > 1}
    check(not dupes, f"{p} no duplicated env var", str(dupes))
    res = c.get("resources", {})
    check(bool(res.get("requests")) and bool(res.get("limits", {}).get("memory")),
          f"{p} resource requests and a memory limit are set")


def assert_others(variant: str, values: dict, objs: list[dict], notes: str) -> None:
    p = f"[{variant}]"
    sts = by_kind(objs, "StatefulSet")[0]
    fullname = sts["metadata"]["name"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    for o in objs:
        if o.get("kind") in ("StatefulSet", "Service", "ServiceMonitor", "PodDisruptionBudget", "ServiceAccount"):
            md = o["metadata"]
            ok = md.get("namespace") == NAMESPACE and all(
                k in md.get("labels", {}) for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                                                    "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                                                    "helm.sh/chart"))
            check(ok, f"{p} {o['kind']}/{md['name']} has namespace and standard app.kubernetes.io labels")

    services = {s["metadata"]["name"]: s for s in by_kind(objs, "Service")}
    main, headless = services.get(fullname), services.get(sts["spec"]["serviceName"])
    check(main is not None and headless is not None and main is not headless,
          f"{p} client Service {fullname} and headless Service {sts['spec']['serviceName']}")
    if main and headless:
        mports = {pt["name"]: (pt["port"], pt["targetPort"]) for pt in main["spec"]["ports"]}
        check(mports == {"http": (values["service"]["port"], "http"), "admin": (values["service"]["adminPort"], "admin")},
              f"{p} client Service ports API {values['service']['port']} + admin {values['service']['adminPort']}",
              str(mports))
        check(main["spec"]["type"] == values["service"]["type"], f"{p} client Service type {values['service']['type']}")
        check(headless["spec"].get("clusterIP") == "None", f"{p} headless Service has clusterIP None")
        check(labels_match({"matchLabels": main["spec"]["selector"]}, pod_labels)
              and labels_match({"matchLabels": headless["spec"]["selector"]}, pod_labels),
              f"{p} both Services select the pod")

    sms = by_kind(objs, "ServiceMonitor")
    if values["serviceMonitor"]["enabled"]:
        if check(len(sms) == 1, f"{p} ServiceMonitor rendered when serviceMonitor.enabled"):
            sm = sms[0]
            ep = sm["spec"]["endpoints"]
            check(sm["apiVersion"] == values["serviceMonitor"]["apiVersion"], f"{p} ServiceMonitor apiVersion")
            check(len(ep) == 1 and ep[0]["port"] == "admin" and ep[0]["path"] == "/metrics"
                  and ep[0]["interval"] == values["serviceMonitor"]["interval"],
                  f"{p} ServiceMonitor scrapes port admin /metrics every {values['serviceMonitor']['interval']}")
            check(all(sm["metadata"]["labels"].get(k) == v for k, v in values["serviceMonitor"]["labels"].items()),
                  f"{p} ServiceMonitor carries serviceMonitor.labels")
            selected = [n for n, s in services.items() if labels_match(sm["spec"]["selector"], s["metadata"]["labels"])]
            check(selected == [fullname], f"{p} ServiceMonitor selects only the client Service", str(selected))
    else:
        check(not sms, f"{p} no ServiceMonitor when serviceMonitor.enabled is false")

    pdbs = by_kind(objs, "PodDisruptionBudget")
    if values["podDisruptionBudget"]["enabled"]:
        if check(len(pdbs) == 1, f"{p} PodDisruptionBudget rendered when enabled"):
            check(labels_match(pdbs[0]["spec"]["selector"], pod_labels)
                  and pdbs[0]["spec"].get("maxUnavailable") == values["podDisruptionBudget"]["maxUnavailable"],
                  f"{p} PDB selects the pod, maxUnavailable {values['podDisruptionBudget']['maxUnavailable']}")
    else:
        check(not pdbs, f"{p} no PodDisruptionBudget when disabled")

    sas = by_kind(objs, "ServiceAccount")
    sa_name = sts["spec"]["template"]["spec"].get("serviceAccountName")
    if values["serviceAccount"]["create"]:
        check(len(sas) == 1 and sas[0]["metadata"]["name"] == sa_name, f"{p} ServiceAccount {sa_name} created")
    else:
        check(not sas and sa_name == values["serviceAccount"]["name"], f"{p} uses existing ServiceAccount {sa_name}")

    # helm test pod
    pods = [o for o in by_kind(objs, "Pod") if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    if check(len(pods) == 1, f"{p} one helm test pod"):
        tp = pods[0]
        tspec = tp["spec"]
        tc = tspec["containers"][0]
        script = " ".join(tc.get("command", []) + tc.get("args", []))
        tenv = env_map(tc)
        check("curl" in tc["image"], f"{p} test pod uses a curl image ({tc['image']})")
        check(tenv.get("API") == f"http://{fullname}.{NAMESPACE}.svc:{values['service']['port']}",
              f"{p} test pod targets the client Service API port", str(tenv.get("API")))
        check("/api/reprice" in script and "/api/product/" in script and "/price" in script and "202" in script,
              f"{p} test pod POSTs a reprice (expects 202) and GETs the price back")
        check(tspec.get("restartPolicy") == "Never", f"{p} test pod restartPolicy Never")
        tpsc, tcsc = tspec.get("securityContext", {}), tc.get("securityContext", {})
        check(tpsc.get("runAsNonRoot") is True and tpsc.get("runAsUser") == UID
              and tpsc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
              and tcsc.get("readOnlyRootFilesystem") is True and tcsc.get("allowPrivilegeEscalation") is False
              and tcsc.get("capabilities", {}).get("drop") == ["ALL"],
              f"{p} test pod hardened like the server (non-root, RO rootfs, drop ALL, seccomp)")
        tlabels = tp["metadata"].get("labels", {})
        leaks = [s for s, svc in services.items() if labels_match({"matchLabels": svc["spec"]["selector"]}, tlabels)]
        check(not leaks, f"{p} no Service selects the test pod", str(leaks))

    check(bool(notes.strip()) and "helm test" in notes and fullname in notes, f"{p} NOTES.txt rendered")
    if not values["persistence"]["enabled"]:
        check("WARNING" in notes, f"{p} NOTES.txt warns that data is not persisted")


def main() -> int:
    print(f"chart: {CHART}")
    print(f"helm-python-sdk {helm.__version__} (libhelm_c {helm.helm_c_version()}, Helm {helm.helm_sdk_version()}), "
          f"kubernetes-validate {kubernetes_validate.__version__}, kube schemas {', '.join(KUBE_VERSIONS)}")

    check_lint()
    check_no_capabilities_gating()
    with helm.Chart.load(str(CHART)) as chart:
        meta = chart.metadata
        section("Chart.yaml")
        check(meta.get("apiVersion") == "v2", "apiVersion v2")
        check(meta.get("appVersion") == "0.1.0", f"appVersion {meta.get('appVersion')}")
        check(chart.schema is not None, "values.schema.json present")
        check_schema(chart)
        defaults = chart.values
        for variant, overrides in VARIANTS.items():
            section(f"render + validate: {variant} "
                    f"({'overrides ' + ', '.join(sorted(overrides)) if overrides else 'default values'})")
            values = deep_merge(defaults, overrides)
            try:
                objs, notes = parse_manifests(render(chart, overrides, name="prod" if variant == "knobs" else RELEASE))
            except Exception as exc:  # render or YAML error
                check(False, f"[{variant}] renders and parses", f"{type(exc).__name__}: {exc}")
                continue
            check(True, f"[{variant}] renders and parses: "
                        + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objs))
            kube_validate(objs, variant)
            assert_statefulset(variant, values, objs)
            assert_others(variant, values, objs, notes)

    print()
    if _failed:
        print("FAILED checks:")
        for f in _failed:
            print(f"  - {f}")
    print(f"check_chart: {_passed} passed, {len(_failed)} failed")
    return 1 if _failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # an unexpected crash is a failure, never a pass
        traceback.print_exc()
        print("check_chart: crashed")
        sys.exit(1)
