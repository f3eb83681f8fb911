// Type-check rendered Kubernetes manifests offline with the npm package
// kubernetes-models (the OpenAPI schemas of the Kubernetes API as validators).
//
//   kubectl kustomize docker/k8s | node k8s-check.mjs
//
// Reads a multi-document YAML stream on stdin; every document must be a known
// apiVersion/kind and pass its schema (types, required fields, unknown fields).
// Then a few rules of our own that no schema knows: the ones issues 7, 12 and
// 15 (rspamd beside mailport) ask for.
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

// Our own rules (issue 7 / SPEC 7, issue 12, issue 15 / SPEC 8).
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
const configMaps = new Map(byKind("ConfigMap").map((d) => [d.metadata.name, d]));
const workloads = [...byKind("StatefulSet"), ...byKind("Deployment")];
// Every long-running container of a pod: its containers and its native
// sidecars (init containers with restartPolicy Always); plain init containers
// run to completion first.
const isSidecar = (c) => c.restartPolicy === "Always";
const isRspamd = (c) => /(^|\/)rspamd(:|@|$)/.test(c.image ?? "");
// A probe's port as a number (a named port looked up in the container's ports).
const probePort = (c, pr) => {
  const p = pr?.httpGet?.port ?? pr?.tcpSocket?.port;
  return typeof p === "string" ? (c.ports ?? []).find((cp) => cp.name === p)?.containerPort : p;
};
// The settings a container sees: its ConfigMaps (envFrom) under its own env.
const settingsOf = (c) => {
  const s = {};
  for (const ef of c.envFrom ?? []) {
    if (ef.configMapRef) Object.assign(s, configMaps.get(ef.configMapRef.name)?.data ?? {});
  }
  for (const e of c.env ?? []) if (e.value !== undefined) s[e.name] = e.value;
  return s;
};
if (!workloads.some((w) => w.spec.template.spec.containers.some((c) => c.name === "mailport")))
  fail("manifests", "no StatefulSet or Deployment runs a container named mailport");
for (const w of workloads) {
  const what = `${w.kind}/${w.metadata.name}`;
  const pod = w.spec.template.spec;
  const grace = Number(
    byKind("ConfigMap")
      .map((c) => c.data?.SMTPD_SHUTDOWN_GRACE)
      .find((v) => v !== undefined) ?? 25,
  );
  const preStopOf = (c) => (c?.lifecycle?.preStop?.exec?.command ?? [])
    .map(Number)
    .find((n) => !Number.isNaN(n)) ?? 0;
  const mailport = pod.containers.find((c) => c.name === "mailport");
  const preStop = preStopOf(mailport);
  if (mailport && !(pod.terminationGracePeriodSeconds > grace + preStop))
    fail(what, `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} is not longer than SMTPD_SHUTDOWN_GRACE ${grace} + preStop ${preStop}`);
  if (pod.securityContext?.seccompProfile?.type !== "RuntimeDefault")
    fail(what, "pod seccompProfile is not RuntimeDefault");
  for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
    const sc = c.securityContext ?? {};
    const uid = sc.runAsUser ?? pod.securityContext?.runAsUser;
    if (sc.runAsNonRoot !== true) fail(what, `${c.name}: runAsNonRoot is not true`);
    if (c === mailport && uid !== 65532) fail(what, `${c.name}: runAsUser is not 65532`);
    if (uid === undefined || uid === 0) fail(what, `${c.name}: runAsUser is ${uid}, not a non-root user`);
    if (sc.readOnlyRootFilesystem !== true) fail(what, `${c.name}: root filesystem is writable`);
    if (sc.allowPrivilegeEscalation !== false) fail(what, `${c.name}: allowPrivilegeEscalation`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) fail(what, `${c.name}: capabilities not dropped`);
    if (c === mailport) {
      if (c.livenessProbe?.httpGet?.path !== "/livez") fail(what, `${c.name}: liveness is not /livez`);
      if (c.readinessProbe?.httpGet?.path !== "/readyz") fail(what, `${c.name}: readiness is not /readyz`);
    } else if (isSidecar(c) || pod.containers.includes(c)) {
      // Whatever runs beside mailport is watched and bounded too.
      if (!c.livenessProbe || !c.readinessProbe) fail(what, `${c.name}: no liveness or no readiness probe`);
      if (!(c.resources?.requests?.cpu && c.resources?.requests?.memory && c.resources?.limits?.memory))
        fail(what, `${c.name}: resources want requests.cpu, requests.memory and limits.memory`);
    }
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
      if (ef.configMapRef && !configMaps.has(ef.configMapRef.name) && ef.configMapRef.optional !== true)
        fail(what, `${c.name}: envFrom ConfigMap ${ef.configMapRef.name} is not in these manifests`);
    }
    for (const e of c.env ?? []) {
      if (e.valueFrom?.secretKeyRef)
        fail(what, `${c.name}: ${e.name} takes a secret as an environment variable; mount it and use SMTPD_*_FILE`);
    }
  }
  for (const v of pod.volumes ?? []) {
    if (v.configMap && !configMaps.has(v.configMap.name) && v.configMap.optional !== true)
      fail(what, `volume ${v.name}: ConfigMap ${v.configMap.name} is not in these manifests`);
  }

  // SPEC 8: rspamd (issue 15). Its scanner answers /ping; with a read-only
  // root it needs writable DBDIR and RUNDIR; as mailport's sidecar it must
  // outlive mailport's drain, and mailport must be pointed at it.
  const rspamds = [...(pod.initContainers ?? []), ...pod.containers].filter(isRspamd);
  for (const c of rspamds) {
    const scanner = (c.ports ?? []).find((cp) => cp.containerPort === 11333);
    if (!scanner) fail(what, `${c.name}: no containerPort 11333 (rspamd's normal worker)`);
    for (const [kind, pr] of [["startup", c.startupProbe], ["liveness", c.livenessProbe], ["readiness", c.readinessProbe]]) {
      if (kind === "startup" && !pr) continue;
      if (pr?.httpGet?.path !== "/ping" || probePort(c, pr) !== 11333)
        fail(what, `${c.name}: ${kind}Probe is not an HTTP GET of /ping on 11333`);
    }
    for (const dir of ["/var/lib/rspamd", "/run/rspamd"]) {
      const m = (c.volumeMounts ?? []).find((vm) => vm.mountPath === dir);
      const v = m && (pod.volumes ?? []).find((vol) => vol.name === m.name);
      if (!m || m.readOnly || !(v?.emptyDir || v?.persistentVolumeClaim || w.spec.volumeClaimTemplates?.some((t) => t.metadata.name === m.name)))
        fail(what, `${c.name}: ${dir} is not a writable volume (emptyDir or claim): the root filesystem is read-only`);
    }
    if (mailport) {
      if (pod.initContainers?.includes(c) && !isSidecar(c))
        fail(what, `${c.name}: a plain init container never completes; make it a sidecar (restartPolicy: Always)`);
      if (pod.containers.includes(c)) {
        // The pre-1.29 form: a regular container must still be serving until
        // mailport's drain is over, and stop within the grace period.
        const p = preStopOf(c);
        if (!(p > preStop + grace && p < pod.terminationGracePeriodSeconds))
          fail(what, `${c.name}: beside mailport, its preStop pause ${p} s must outlast mailport's (${preStop} s + SMTPD_SHUTDOWN_GRACE ${grace} s) and end within terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds}`);
      }
      const url = settingsOf(mailport).SMTPD_RSPAMD_URL ?? "";
      const m = /^http:\/\/(127\.0\.0\.1|localhost|\[::1\]):(\d+)(\/|$)/.exec(url);
      if (!m || Number(m[2]) !== 11333)
        fail(what, `mailport's SMTPD_RSPAMD_URL is "${url}", not its sidecar http://127.0.0.1:11333`);
    }
  }
  // mailport pointed at an rspamd elsewhere by a bare Service name: that
  // Service must be in these manifests with that port.
  if (mailport && rspamds.length === 0) {
    const url = settingsOf(mailport).SMTPD_RSPAMD_URL ?? "";
    const m = /^http:\/\/([a-z0-9-]+)(?::(\d+))?(\/|$)/.exec(url);
    if (m && m[1] !== "localhost") {
      const port = Number(m[2] ?? 80);
      const svc = byKind("Service").find((s) => s.metadata.name === m[1]);
      if (!svc || !svc.spec.ports.some((p) => p.port === port))
        fail(what, `SMTPD_RSPAMD_URL ${url}: no Service ${m[1]} with port ${port} in these manifests`);
    } else if (/^http:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(url)) {
      fail(what, `SMTPD_RSPAMD_URL ${url} is on the pod's loopback, but no rspamd runs in the pod`);
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
  // A sidecar of mailport (rspamd) serves mailport over the pod's loopback:
  // no other pod is admitted to its ports.
  if (pod.containers.some((c) => c.name === "mailport")) {
    for (const c of [...(pod.initContainers ?? []).filter(isSidecar), ...pod.containers.filter((c) => c.name !== "mailport")]) {
      for (const cp of c.ports ?? []) {
        if (rules.some((r) => admits(r, cp)))
          fail(what, `${c.name}: port ${cp.name ?? ""} (${cp.containerPort}) of a sidecar is admitted by a NetworkPolicy`);
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
