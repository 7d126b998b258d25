"""Offline checks of the rendered Kubernetes manifests (no cluster runs where they are tested).

    python check_kubernetes.py RENDERED.yaml

Reads a `kubectl kustomize` rendering and fails (exit 1, one line per problem) unless:

- every KEDA object (ScaledObject, TriggerAuthentication) validates against a JSON Schema made
  from the `cloudcoil-models-keda` models with `additionalProperties: false` on every object
  (kubernetes-validate only warns about CRDs and still exits 0, so it checks none of them), and
  every `aws-sqs-queue` trigger uses only the metadata keys KEDA documents for that scaler;
- every Deployment has startup, liveness and readiness probes on /health/*, CPU and memory
  requests and limits, runs as non-root with a read-only root filesystem, no privilege
  escalation and every capability dropped, a termination grace period above the drain
  (VITRINE_SHUTDOWN_GRACE_SECS), and topology spread;
- every Deployment has a PodDisruptionBudget and a ScaledObject (its HPA) with a CPU trigger
  and scale-down stabilisation, and every SQS queue of the topology it consumes has a trigger;
- the analytics CronJob runs `vitrine analytics sync` in São Paulo's time zone, never twice at
  once, hardened like the services, on a schedule that matches VITRINE_ANALYTICS_EVERY_HOURS
  (daily without it: one hour of the day; every N hours: `*/N`);
- Metabase has its health probes on /api/health, resources, a non-root read-only container, and
  a PostgreSQL application database from a Secret (never the embedded H2 file);
- the Kong Ingress Controller objects, for which no schema package exists, hold to the fields of
  their CRDs (KongPlugin, KongConsumer: closed sets of top-level keys, known plugin names) and
  fit together: every Ingress of class `kong` uses only annotations the controller reads, names
  only KongPlugins of the rendering, marks its regex paths with `/~`, lists valid methods, and
  routes to a Service of the rendering that carries Kong's upstream timeouts.
  (Each plugin's `config` keys are checked against Kong's plugin schemas by the Rust test that
  generates these objects.)

The built-in kinds are validated by kubernetes-validate --strict, run separately.
"""

import json
import sys

import jsonschema
import yaml
from cloudcoil.models.keda import v1alpha1

# KEDA's aws-sqs-queue scaler: its documented trigger metadata.
SQS_METADATA = {
    "queueURL", "queueURLFromEnv", "queueLength", "activationQueueLength", "awsRegion",
    "awsEndpoint", "scaleOnInFlight", "scaleOnDelayed", "identityOwner", "awsRoleArn",
}
# The queues each service consumes (the topology in code: contracts QUEUE and WORK_QUEUE).
CONSUMED = {"user-information": {"user-information"}, "products": {"products", "products-work"}}
DRAIN_SECONDS = 20 + 5

# Kong Ingress Controller 3: the CRDs' top-level fields and the annotations it reads.
KONG_FIELDS = {
    "KongPlugin": {"apiVersion", "kind", "metadata", "plugin", "config", "configFrom",
                   "configPatches", "disabled", "protocols", "ordering", "instance_name",
                   "consumerRef", "run_on"},
    "KongConsumer": {"apiVersion", "kind", "metadata", "username", "custom_id", "credentials",
                     "consumerGroups", "spec"},
}
KONG_PLUGINS = {"jwt", "rate-limiting", "request-size-limiting", "correlation-id", "cors",
                "prometheus", "key-auth", "acl", "ip-restriction", "bot-detection",
                "request-transformer", "response-transformer", "proxy-cache", "opentelemetry"}
KONG_ANNOTATIONS = {
    f"konghq.com/{key}" for key in (
        "override", "plugins", "protocol", "protocols", "client-cert", "strip-path", "path",
        "https-redirect-status-code", "preserve-host", "regex-priority", "host-header",
        "methods", "snis", "request-buffering", "response-buffering", "host-aliases",
        "regex-prefix", "connect-timeout", "write-timeout", "read-timeout", "retries",
        "headers-separator", "path-handling", "tags", "rewrite")
}
KONG_UPSTREAM = {"konghq.com/connect-timeout", "konghq.com/read-timeout",
                 "konghq.com/write-timeout", "konghq.com/retries"}
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}


def closed(schema):
    """The schema with every object that names its properties closed to others."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            closed(value)
    elif isinstance(schema, list):
        for value in schema:
            closed(value)
    return schema


SCHEMAS = {
    kind: closed(model.model_json_schema(by_alias=True))
    for kind, model in {
        "ScaledObject": v1alpha1.ScaledObject,
        "TriggerAuthentication": v1alpha1.TriggerAuthentication,
    }.items()
}


def check_keda(doc, problems):
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    validator = jsonschema.Draft202012Validator(SCHEMAS[doc["kind"]])
    for error in validator.iter_errors(doc):
        path = ".".join(str(p) for p in error.absolute_path)
        problems.append(f"{name}: {path}: {error.message}")
    for trigger in doc.get("spec", {}).get("triggers", []):
        if trigger.get("type") == "aws-sqs-queue":
            for key in set(trigger.get("metadata", {})) - SQS_METADATA:
                problems.append(f"{name}: aws-sqs-queue has no metadata key {key}")


def check_pod(where, spec, problems):
    """What every pod of ours must have: non-root, hardened containers with resources."""
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"{where}: may run as root")
    for container in spec["containers"]:
        inside = f"{where} container {container['name']}"
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(kind, {}):
                    problems.append(f"{inside}: no {resource} {kind[:-1]}")
        context = container.get("securityContext", {})
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{inside}: writable root filesystem")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{inside}: privilege escalation allowed")
        if context.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{inside}: capabilities not all dropped")


def probes(where, container, paths, problems):
    for probe, path in paths:
        if container.get(probe, {}).get("httpGet", {}).get("path") != path:
            problems.append(f"{where} container {container['name']}: {probe} is not on {path}")


def check_deployment(doc, scaled, budgets, problems):
    name = doc["metadata"]["name"]
    spec = doc["spec"]["template"]["spec"]
    if spec.get("terminationGracePeriodSeconds", 30) <= DRAIN_SECONDS:
        problems.append(f"deployment/{name}: termination grace period within the drain")
    if not spec.get("topologySpreadConstraints"):
        problems.append(f"deployment/{name}: no topology spread")
    check_pod(f"deployment/{name}", spec, problems)
    for container in spec["containers"]:
        probes(f"deployment/{name}", container,
               [("startupProbe", "/health/live"), ("livenessProbe", "/health/live"),
                ("readinessProbe", "/health/ready")], problems)
    if name not in budgets:
        problems.append(f"deployment/{name}: no PodDisruptionBudget")
    scaler = scaled.get(name)
    if scaler is None:
        problems.append(f"deployment/{name}: no ScaledObject (its HPA)")
        return
    triggers = scaler["spec"].get("triggers", [])
    if not any(t.get("type") == "cpu" for t in triggers):
        problems.append(f"scaledobject/{name}: no CPU trigger")
    behavior = scaler["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
    if "stabilizationWindowSeconds" not in behavior.get("behavior", {}).get("scaleDown", {}):
        problems.append(f"scaledobject/{name}: no scale-down stabilisation")
    urls = [t.get("metadata", {}).get("queueURL", "") for t in triggers
            if t.get("type") == "aws-sqs-queue"]
    for queue in CONSUMED.get(name, set()):
        if not any(url.endswith(f"-{queue}") for url in urls):
            problems.append(f"scaledobject/{name}: no trigger on its queue {queue}")


def check_metabase(doc, problems):
    spec = doc["spec"]["template"]["spec"]
    check_pod("deployment/metabase", spec, problems)
    for container in spec["containers"]:
        probes("deployment/metabase", container,
               [(p, "/api/health") for p in ("startupProbe", "livenessProbe", "readinessProbe")],
               problems)
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        if env.get("MB_DB_TYPE") != "postgres":
            problems.append("deployment/metabase: its application database is not PostgreSQL")
        if not any("secretRef" in source for source in container.get("envFrom", [])):
            problems.append("deployment/metabase: no Secret for its application database")


def check_sync(doc, settings, problems):
    name = f"cronjob/{doc['metadata']['name']}"
    spec = doc["spec"]
    if spec.get("timeZone") != "America/Sao_Paulo":
        problems.append(f"{name}: not on São Paulo's time zone")
    if spec.get("concurrencyPolicy") != "Forbid":
        problems.append(f"{name}: two syncs may run at once")
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    check_pod(name, pod, problems)
    if [c.get("args") for c in pod["containers"]] != [["analytics", "sync"]]:
        problems.append(f"{name}: does not run `vitrine analytics sync`")
    fields = spec.get("schedule", "").split()
    every = settings.get("VITRINE_ANALYTICS_EVERY_HOURS")
    if len(fields) != 5:
        problems.append(f"{name}: schedule {spec.get('schedule')!r} is not a cron expression")
    elif every is None and not fields[1].isdigit():
        problems.append(f"{name}: runs more than daily without VITRINE_ANALYTICS_EVERY_HOURS")
    elif every is not None and fields[1] not in (f"*/{every}", f"0-23/{every}"):
        problems.append(f"{name}: hour field {fields[1]!r} does not follow "
                        f"VITRINE_ANALYTICS_EVERY_HOURS={every}")


def check_kong(docs, problems):
    """The Kong Ingress Controller objects: their CRD fields, and references between them."""
    plugins = set()
    for doc in docs:
        if doc["kind"] not in KONG_FIELDS:
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        for key in set(doc) - KONG_FIELDS[doc["kind"]]:
            problems.append(f"{name}: {doc['kind']} has no field {key}")
        if doc["kind"] == "KongPlugin":
            plugins.add(doc["metadata"]["name"])
            if doc.get("plugin") not in KONG_PLUGINS:
                problems.append(f"{name}: unknown plugin {doc.get('plugin')!r}")
            if not isinstance(doc.get("config", {}), dict):
                problems.append(f"{name}: config is not a mapping")
            if not isinstance(doc.get("disabled", False), bool):
                problems.append(f"{name}: disabled is not a boolean")
        elif not (doc.get("username") or doc.get("custom_id")):
            problems.append(f"{name}: neither username nor custom_id")
        elif not all(isinstance(c, str) for c in doc.get("credentials", [])):
            problems.append(f"{name}: credentials are not Secret names")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    ingresses = [d for d in docs if d["kind"] == "Ingress"
                 and d.get("spec", {}).get("ingressClassName") == "kong"]
    for doc in ingresses:
        name = f"ingress/{doc['metadata']['name']}"
        annotations = doc["metadata"].get("annotations", {})
        for key in annotations:
            if key.startswith("konghq.com/") and key not in KONG_ANNOTATIONS:
                problems.append(f"{name}: the controller reads no annotation {key}")
        for plugin in filter(None, annotations.get("konghq.com/plugins", "").split(",")):
            if plugin.strip() not in plugins:
                problems.append(f"{name}: no KongPlugin {plugin.strip()}")
        for method in filter(None, annotations.get("konghq.com/methods", "").split(",")):
            if method.strip() not in HTTP_METHODS:
                problems.append(f"{name}: {method!r} is not an HTTP method")
        for rule in doc["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                if any(c in path.get("path", "") for c in "[]$") \
                        and not path["path"].startswith("/~"):
                    problems.append(f"{name}: regex path {path['path']} lacks the /~ marker")
                backend = path.get("backend", {}).get("service", {}).get("name")
                service = services.get(backend)
                if service is None:
                    problems.append(f"{name}: no Service {backend}")
                    continue
                annotations_of_service = service["metadata"].get("annotations", {})
                missing = KONG_UPSTREAM - set(annotations_of_service)
                if missing:
                    problems.append(f"service/{backend}: no {', '.join(sorted(missing))}")
                for plugin in filter(None,
                                     annotations_of_service.get("konghq.com/plugins", "").split(",")):
                    if plugin.strip() not in plugins:
                        problems.append(f"service/{backend}: no KongPlugin {plugin.strip()}")
    return len(ingresses) + sum(1 for d in docs if d["kind"] in KONG_FIELDS)


def main(path):
    with open(path, encoding="utf8") as rendered:
        docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    problems = []
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in docs
              if d["kind"] == "ScaledObject" and isinstance(d.get("spec"), dict)
              and "scaleTargetRef" in d["spec"]}
    budgets = set()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for doc in docs:
        if doc["kind"] == "PodDisruptionBudget":
            labels = doc["spec"].get("selector", {}).get("matchLabels", {})
            budgets.add(labels.get("app.kubernetes.io/name"))
        if doc["kind"] in SCHEMAS:
            check_keda(doc, problems)
    for name in CONSUMED:
        if name not in deployments:
            problems.append(f"deployment/{name} is missing")
    for name, doc in deployments.items():
        if name == "metabase":
            check_metabase(doc, problems)
        else:
            check_deployment(doc, scaled, budgets, problems)
    if "metabase" not in deployments:
        problems.append("deployment/metabase is missing")
    settings = next((d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
                     and d["metadata"]["name"] == "vitrine-config"), {})
    syncs = [d for d in docs if d["kind"] == "CronJob"]
    if not syncs:
        problems.append("the analytics CronJob is missing")
    for doc in syncs:
        check_sync(doc, settings, problems)
    kong = check_kong(docs, problems)
    checked = sum(1 for d in docs if d["kind"] in SCHEMAS)
    for problem in problems:
        print(problem)
    print(json.dumps({"objects": len(docs), "keda_checked": checked, "kong_checked": kong,
                      "problems": len(problems)}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
