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
  and scale-down stabilisation, and every SQS queue of the topology it consumes has a trigger.

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


def check_deployment(doc, scaled, budgets, problems):
    name = doc["metadata"]["name"]
    spec = doc["spec"]["template"]["spec"]
    if spec.get("terminationGracePeriodSeconds", 30) <= DRAIN_SECONDS:
        problems.append(f"deployment/{name}: termination grace period within the drain")
    pod = spec.get("securityContext", {})
    if not pod.get("runAsNonRoot"):
        problems.append(f"deployment/{name}: may run as root")
    if not spec.get("topologySpreadConstraints"):
        problems.append(f"deployment/{name}: no topology spread")
    for container in spec["containers"]:
        where = f"deployment/{name} container {container['name']}"
        for probe, path in [("startupProbe", "/health/live"), ("livenessProbe", "/health/live"),
                            ("readinessProbe", "/health/ready")]:
            if container.get(probe, {}).get("httpGet", {}).get("path") != path:
                problems.append(f"{where}: {probe} is not on {path}")
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(kind, {}):
                    problems.append(f"{where}: no {resource} {kind[:-1]}")
        context = container.get("securityContext", {})
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: writable root filesystem")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: privilege escalation allowed")
        if context.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{where}: capabilities not all dropped")
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
    for doc in deployments.values():
        check_deployment(doc, scaled, budgets, problems)
    checked = sum(1 for d in docs if d["kind"] in SCHEMAS)
    for problem in problems:
        print(problem)
    print(json.dumps({"objects": len(docs), "keda_checked": checked, "problems": len(problems)}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
