// Type-check rendered Kubernetes manifests offline with the npm package
// kubernetes-models (the OpenAPI schemas of the Kubernetes API as validators).
//
//   kubectl kustomize docker/k8s | node k8s-check.mjs
//
// Reads a multi-document YAML stream on stdin; every document must be a known
// apiVersion/kind and pass its schema (types, required fields, unknown fields).
// Then a few rules of our own that no schema knows: the ones issue 7 asks for.
// Prints one line per object; exits 1 on the first class of failure found.
// docker/validate.sh runs it from docker/.validate/, where npm installed the
// packages.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";

const docs = yaml.loadAll(readFileSync(0, "utf8")).filter((d) => d != null);
let failed = false;
const fail = (what, msg) => {
  console.error(`FAIL ${what}: ${msg}`);
  failed = true;
};

for (const doc of docs) {
  const what = `${doc.kind}/${doc.metadata?.name}`;
  const [group, version] = doc.apiVersion.includes("/")
    ? doc.apiVersion.split("/")
    : [null, doc.apiVersion];
  const path = group ? `${group}/${version}/${doc.kind}` : `${version}/${doc.kind}`;
  let Model;
  try {
    Model = (await import(`kubernetes-models/${path}`))[doc.kind];
  } catch (e) {
    fail(what, `unknown apiVersion/kind ${doc.apiVersion} ${doc.kind}`);
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`ok ${doc.apiVersion} ${what}`);
  } catch (e) {
    fail(what, e.message);
  }
}

// Our own rules (issue 7 / SPEC 7).
const byKind = (k) => docs.filter((d) => d.kind === k);
const workloads = [...byKind("StatefulSet"), ...byKind("Deployment")];
if (workloads.length === 0) fail("manifests", "no StatefulSet or Deployment");
for (const w of workloads) {
  const what = `${w.kind}/${w.metadata.name}`;
  const pod = w.spec.template.spec;
  const grace = Number(
    byKind("ConfigMap")
      .map((c) => c.data?.SMTPD_SHUTDOWN_GRACE)
      .find((v) => v !== undefined) ?? 25,
  );
  const preStop = (pod.containers[0].lifecycle?.preStop?.exec?.command ?? [])
    .map(Number)
    .find((n) => !Number.isNaN(n)) ?? 0;
  if (!(pod.terminationGracePeriodSeconds > grace + preStop))
    fail(what, `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} is not longer than SMTPD_SHUTDOWN_GRACE ${grace} + preStop ${preStop}`);
  if (pod.securityContext?.seccompProfile?.type !== "RuntimeDefault")
    fail(what, "pod seccompProfile is not RuntimeDefault");
  for (const c of pod.containers) {
    const sc = c.securityContext ?? {};
    if (sc.runAsNonRoot !== true) fail(what, `${c.name}: runAsNonRoot is not true`);
    if ((sc.runAsUser ?? pod.securityContext?.runAsUser) !== 65532)
      fail(what, `${c.name}: runAsUser is not 65532`);
    if (sc.readOnlyRootFilesystem !== true) fail(what, `${c.name}: root filesystem is writable`);
    if (sc.allowPrivilegeEscalation !== false) fail(what, `${c.name}: allowPrivilegeEscalation`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) fail(what, `${c.name}: capabilities not dropped`);
    if (c.livenessProbe?.httpGet?.path !== "/livez") fail(what, `${c.name}: liveness is not /livez`);
    if (c.readinessProbe?.httpGet?.path !== "/readyz") fail(what, `${c.name}: readiness is not /readyz`);
    for (const e of c.env ?? []) {
      if (e.valueFrom?.secretKeyRef)
        fail(what, `${c.name}: ${e.name} takes a secret as an environment variable; mount it and use SMTPD_*_FILE`);
    }
  }
}
if (byKind("PodDisruptionBudget").length === 0) fail("manifests", "no PodDisruptionBudget");
for (const s of byKind("Service")) {
  if (s.spec.type === "LoadBalancer" && s.spec.externalTrafficPolicy !== "Local")
    fail(`Service/${s.metadata.name}`, "a LoadBalancer without externalTrafficPolicy: Local hides client addresses");
}

console.log(`${docs.length} objects checked`);
process.exit(failed ? 1 : 0);
