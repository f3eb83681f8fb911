// Type-check rendered Kubernetes manifests offline with the npm package
// kubernetes-models (the OpenAPI schemas of the Kubernetes API as validators).
//
//   kubectl kustomize docker/k8s | node k8s-check.mjs
//
// Reads a multi-document YAML stream on stdin; every document must be a known
// apiVersion/kind and pass its schema (types, required fields, unknown fields).
// Then a few rules of our own that no schema knows: the ones issues 7 and 12
// ask for.
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

// Our own rules (issue 7 / SPEC 7, issue 12).
const byKind = (k) => docs.filter((d) => d.kind === k);
// matchLabels that all hold in labels (an empty or missing selector matches all).
const selects = (matchLabels, labels) =>
  Object.entries(matchLabels ?? {}).every(([k, v]) => labels?.[k] === v);
// A NetworkPolicy port entry (or a rule without ports) that admits container port c.
const admits = (rule, c) =>
  !(rule.ports?.length) ||
  rule.ports.some((p) => p.port === undefined || p.port === c.containerPort || p.port === c.name);
const fromAnywhere = (rule) => !(rule.from?.length);
const secrets = new Set(byKind("Secret").map((d) => d.metadata.name));
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
    // Issue 12: health answers in well under 100 ms; a timeout of 1-5 s, and
    // no probe that restarts the pod on a single failed sample.
    for (const [kind, pr] of [["startup", c.startupProbe], ["liveness", c.livenessProbe], ["readiness", c.readinessProbe]]) {
      if (!pr) continue;
      if (!(pr.timeoutSeconds >= 1 && pr.timeoutSeconds <= 5))
        fail(what, `${c.name}: ${kind}Probe timeoutSeconds ${pr.timeoutSeconds} is not set to 1..5`);
      if (kind !== "readiness" && !((pr.failureThreshold ?? 3) >= 2))
        fail(what, `${c.name}: ${kind}Probe restarts the pod on one failed sample (failureThreshold ${pr.failureThreshold})`);
    }
    for (const ef of c.envFrom ?? []) {
      if (ef.secretRef && !secrets.has(ef.secretRef.name) && ef.secretRef.optional !== true)
        fail(what, `${c.name}: envFrom Secret ${ef.secretRef.name} is not in these manifests and not optional`);
    }
    for (const e of c.env ?? []) {
      if (e.valueFrom?.secretKeyRef)
        fail(what, `${c.name}: ${e.name} takes a secret as an environment variable; mount it and use SMTPD_*_FILE`);
    }
  }
}
if (byKind("PodDisruptionBudget").length === 0) fail("manifests", "no PodDisruptionBudget");

for (const w of workloads) {
  const what = `${w.kind}/${w.metadata.name}`;
  const pod = w.spec.template.spec;
  const labels = w.spec.template.metadata?.labels ?? {};
  // A Secret the manifests do not create must be optional, or the pod waits
  // for it forever (issue 12: base/ ships no Secret).
  for (const v of pod.volumes ?? []) {
    const refs = [
      ...(v.secret ? [v.secret] : []),
      ...(v.projected?.sources ?? []).filter((s) => s.secret).map((s) => s.secret),
    ];
    for (const r of refs) {
      const name = r.secretName ?? r.name;
      if (!secrets.has(name) && r.optional !== true)
        fail(what, `volume ${v.name}: Secret ${name} is not in these manifests and not optional`);
    }
  }
  // Replicas spread over nodes, softly (a one-node cluster still runs them).
  const spread = (pod.topologySpreadConstraints ?? []).find(
    (t) => t.topologyKey === "kubernetes.io/hostname" && selects(t.labelSelector?.matchLabels, labels) &&
      Object.keys(t.labelSelector?.matchLabels ?? {}).length > 0,
  );
  if (!spread) fail(what, "no topologySpreadConstraints over kubernetes.io/hostname selecting its pods");
  else if (spread.whenUnsatisfiable !== "ScheduleAnyway")
    fail(what, `topology spread is ${spread.whenUnsatisfiable}, not ScheduleAnyway`);
  // NetworkPolicy: every SMTP port open to anyone, the HTTP side port only to
  // selected peers (this namespace), never to every source.
  const policies = byKind("NetworkPolicy").filter(
    (np) => selects(np.spec.podSelector?.matchLabels, labels) && (np.spec.policyTypes ?? ["Ingress"]).includes("Ingress"),
  );
  if (policies.length === 0) {
    fail(what, "no NetworkPolicy selects its pods");
    continue;
  }
  const rules = policies.flatMap((np) => np.spec.ingress ?? []);
  for (const c of pod.containers) {
    for (const cp of c.ports ?? []) {
      const open = rules.some((r) => fromAnywhere(r) && admits(r, cp));
      if (/^smtp/.test(cp.name ?? "") && !open)
        fail(what, `${c.name}: SMTP port ${cp.name} (${cp.containerPort}) is not admitted from anywhere by a NetworkPolicy`);
      if (cp.name === "http") {
        if (open) fail(what, `${c.name}: the HTTP side port is admitted from anywhere`);
        for (const r of rules.filter((r) => !fromAnywhere(r) && admits(r, cp))) {
          for (const peer of r.from) {
            const cidr = peer.ipBlock?.cidr;
            if (cidr === "0.0.0.0/0" || cidr === "::/0" ||
                (peer.namespaceSelector && !peer.namespaceSelector.matchLabels && !peer.namespaceSelector.matchExpressions))
              fail(what, `${c.name}: the HTTP side port is admitted from every namespace or address`);
          }
        }
        if (!rules.some((r) => !fromAnywhere(r) && admits(r, cp)))
          fail(what, `${c.name}: the HTTP side port is not admitted from this namespace (Prometheus, probes by peers)`);
      }
    }
  }
}
for (const s of byKind("Service")) {
  if (s.spec.type === "LoadBalancer" && s.spec.externalTrafficPolicy !== "Local")
    fail(`Service/${s.metadata.name}`, "a LoadBalancer without externalTrafficPolicy: Local hides client addresses");
}

console.log(`${docs.length} objects checked`);
process.exit(failed ? 1 : 0);
