// What the Kubernetes API server checks beyond the OpenAPI schema (pkg/apis/*/validation), for the kinds
// pgkeel's chart and manifests use: names, labels and annotation keys, pod specs (container, port and volume
// names, mounts of volumes that exist, native sidecars), Service ports, Deployment selectors, PDBs and
// admission webhooks. serverRules(obj) returns [{path: [...], message}]; it runs after the schema check,
// so it skips values of the wrong type (the schema check reported those).

const DNS1123_LABEL = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z](?:[-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const IANA_SVC_NAME = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/;

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isString = (v) => typeof v === "string";
const list = (v) => (Array.isArray(v) ? v : []);

function dnsLabel(v) {
  return v.length <= 63 && DNS1123_LABEL.test(v) ? null : "must be a DNS-1123 label (at most 63 characters: lower case letters, digits and '-', starting and ending with a letter or digit)";
}
function dnsSubdomain(v) {
  return v.length <= 253 && DNS1123_SUBDOMAIN.test(v) ? null : "must be a DNS-1123 subdomain (at most 253 characters: lower case letters, digits, '-' and '.', starting and ending with a letter or digit)";
}
function dns1035Label(v) {
  return v.length <= 63 && DNS1035_LABEL.test(v) ? null : "must be a DNS-1035 label (at most 63 characters: lower case letters, digits and '-', starting with a letter, ending with a letter or digit)";
}
function pathSegment(v) {
  return v === "." || v === ".." || /[/%]/.test(v) ? "may not be '.' or '..' and may not contain '/' or '%'" : null;
}
function qualifiedName(v) {
  const slash = v.lastIndexOf("/");
  const [prefix, name] = slash < 0 ? [null, v] : [v.slice(0, slash), v.slice(slash + 1)];
  if (prefix !== null && (prefix.length === 0 || dnsSubdomain(prefix))) return "prefix before '/' must be a DNS-1123 subdomain";
  return name.length <= 63 && QUALIFIED_NAME.test(name) ? null : "name part must be at most 63 characters: letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
}
function labelValue(v) {
  return v === "" || (v.length <= 63 && QUALIFIED_NAME.test(v)) ? null : "a label value must be empty or at most 63 characters: letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
}
function ianaSvcName(v) {
  return v.length <= 15 && IANA_SVC_NAME.test(v) && /[a-z]/.test(v) && !v.includes("--") ? null : "a port name must be at most 15 characters: lower case letters, digits and '-', with at least one letter, no '--', and no '-' at either end";
}

const NAME_RULES = {
  Namespace: dnsLabel,
  Service: dns1035Label,
  Role: pathSegment,
  ClusterRole: pathSegment,
  RoleBinding: pathSegment,
  ClusterRoleBinding: pathSegment,
};

export function serverRules(obj) {
  const problems = [];
  const add = (path, message) => problems.push({ path, message });
  const check = (path, value, rule) => {
    const msg = isString(value) ? rule(value) : null;
    if (msg) add(path, `${JSON.stringify(value)}: ${msg}`);
  };

  const md = isObject(obj.metadata) ? obj.metadata : {};
  if (!isString(md.name) && !isString(md.generateName)) add(["metadata", "name"], "name or generateName is required");
  check(["metadata", "name"], md.name, NAME_RULES[obj.kind] ?? dnsSubdomain);
  check(["metadata", "namespace"], md.namespace, dnsLabel);
  objectMeta(["metadata"], md, check);

  const spec = isObject(obj.spec) ? obj.spec : {};
  const podSpecAt = {
    Pod: [["spec"], spec],
    Deployment: [["spec", "template", "spec"], spec.template?.spec],
    StatefulSet: [["spec", "template", "spec"], spec.template?.spec],
    DaemonSet: [["spec", "template", "spec"], spec.template?.spec],
    ReplicaSet: [["spec", "template", "spec"], spec.template?.spec],
    Job: [["spec", "template", "spec"], spec.template?.spec],
    CronJob: [["spec", "jobTemplate", "spec", "template", "spec"], spec.jobTemplate?.spec?.template?.spec],
  }[obj.kind];
  if (podSpecAt && obj.kind !== "Pod") {
    const templatePath = podSpecAt[0].slice(0, -1);
    const template = obj.kind === "CronJob" ? spec.jobTemplate?.spec?.template : spec.template;
    if (isObject(template?.metadata)) objectMeta([...templatePath, "metadata"], template.metadata, check);
  }
  if (podSpecAt && isObject(podSpecAt[1])) podSpec(podSpecAt[0], podSpecAt[1], add, check);
  if (obj.kind === "Deployment") workloadSelector(spec, add, check);
  if (obj.kind === "Service") servicePorts(spec, add, check);
  if (obj.kind === "PodDisruptionBudget") {
    if (spec.minAvailable !== undefined && spec.maxUnavailable !== undefined) add(["spec"], "minAvailable and maxUnavailable cannot both be set");
    selectorLabels(["spec", "selector"], spec.selector, check);
  }
  if (obj.kind === "MutatingWebhookConfiguration" || obj.kind === "ValidatingWebhookConfiguration") webhooks(obj, add);
  return problems;
}

function objectMeta(path, md, check) {
  for (const [k, v] of Object.entries(isObject(md.labels) ? md.labels : {})) {
    check([...path, "labels", k], k, qualifiedName);
    check([...path, "labels", k], v, labelValue);
  }
  for (const k of Object.keys(isObject(md.annotations) ? md.annotations : {})) {
    check([...path, "annotations", k], k, qualifiedName);
  }
}

function selectorLabels(path, selector, check) {
  for (const [k, v] of Object.entries(isObject(selector?.matchLabels) ? selector.matchLabels : {})) {
    check([...path, "matchLabels", k], k, qualifiedName);
    check([...path, "matchLabels", k], v, labelValue);
  }
}

function workloadSelector(spec, add, check) {
  selectorLabels(["spec", "selector"], spec.selector, check);
  const want = isObject(spec.selector?.matchLabels) ? spec.selector.matchLabels : {};
  const have = isObject(spec.template?.metadata?.labels) ? spec.template.metadata.labels : {};
  if (isObject(spec.selector) && !Object.keys(want).length && !list(spec.selector.matchExpressions).length) {
    add(["spec", "selector"], "empty selector is invalid for a Deployment");
  }
  for (const [k, v] of Object.entries(want)) {
    if (have[k] !== v) add(["spec", "template", "metadata", "labels"], `selector does not match template labels: ${k}=${v} is missing`);
  }
  const rp = spec.template?.spec?.restartPolicy;
  if (rp !== undefined && rp !== "Always") add(["spec", "template", "spec", "restartPolicy"], `must be "Always" in a Deployment (got ${JSON.stringify(rp)})`);
}

function podSpec(path, ps, add, check) {
  const volumes = new Set();
  list(ps.volumes).forEach((v, i) => {
    if (!isObject(v)) return;
    check([...path, "volumes", i, "name"], v.name, dnsLabel);
    if (volumes.has(v.name)) add([...path, "volumes", i, "name"], `duplicate volume name ${JSON.stringify(v.name)}`);
    volumes.add(v.name);
  });
  const names = new Set();
  if (!list(ps.containers).length) add([...path, "containers"], "a pod needs at least one container");
  for (const field of ["initContainers", "containers", "ephemeralContainers"]) {
    list(ps[field]).forEach((c, i) => {
      if (!isObject(c)) return;
      const at = [...path, field, i];
      check([...at, "name"], c.name, dnsLabel);
      if (isString(c.name) && names.has(c.name)) add([...at, "name"], `duplicate container name ${JSON.stringify(c.name)}`);
      names.add(c.name);
      if (c.restartPolicy !== undefined && !(field === "initContainers" && c.restartPolicy === "Always")) {
        add([...at, "restartPolicy"], `only an init container may set restartPolicy, and only to "Always" (a native sidecar)`);
      }
      const ports = new Set();
      list(c.ports).forEach((p, j) => {
        if (!isObject(p) || !isString(p.name)) return;
        check([...at, "ports", j, "name"], p.name, ianaSvcName);
        if (ports.has(p.name)) add([...at, "ports", j, "name"], `duplicate port name ${JSON.stringify(p.name)}`);
        ports.add(p.name);
      });
      list(c.volumeMounts).forEach((m, j) => {
        if (isObject(m) && isString(m.name) && !volumes.has(m.name)) {
          add([...at, "volumeMounts", j, "name"], `volume ${JSON.stringify(m.name)} not found in ${[...path, "volumes"].join(".")}`);
        }
      });
      for (const probe of ["livenessProbe", "readinessProbe", "startupProbe"]) {
        if (!isObject(c[probe])) continue;
        const handlers = ["exec", "httpGet", "tcpSocket", "grpc"].filter((h) => c[probe][h] !== undefined);
        if (handlers.length !== 1) add([...at, probe], `must have exactly one handler (exec, httpGet, tcpSocket or grpc), has ${handlers.length}`);
        if (field === "initContainers" && c.restartPolicy !== "Always") add([...at, probe], "only a native sidecar init container (restartPolicy Always) may have probes");
      }
    });
  }
}

function servicePorts(spec, add, check) {
  const ports = list(spec.ports);
  const names = new Set();
  ports.forEach((p, i) => {
    if (!isObject(p)) return;
    if (ports.length > 1 && !isString(p.name)) add(["spec", "ports", i, "name"], "a name is required when a Service has more than one port");
    check(["spec", "ports", i, "name"], p.name, dnsLabel);
    if (isString(p.name) && names.has(p.name)) add(["spec", "ports", i, "name"], `duplicate port name ${JSON.stringify(p.name)}`);
    names.add(p.name);
    check(["spec", "ports", i, "targetPort"], p.targetPort, ianaSvcName);
  });
  if (spec.type !== "ExternalName" && !ports.length) add(["spec", "ports"], "a Service needs at least one port");
}

function webhooks(obj, add) {
  const names = new Set();
  list(obj.webhooks).forEach((w, i) => {
    if (!isObject(w)) return;
    const at = ["webhooks", i];
    if (isString(w.name)) {
      if (w.name.split(".").length < 3 || w.name.length > 253 || !DNS1123_SUBDOMAIN.test(w.name)) {
        add([...at, "name"], `${JSON.stringify(w.name)}: must be a fully qualified domain name with at least three segments`);
      }
      if (names.has(w.name)) add([...at, "name"], `duplicate webhook name ${JSON.stringify(w.name)}`);
      names.add(w.name);
    }
    const cc = isObject(w.clientConfig) ? w.clientConfig : {};
    if ((cc.url === undefined) === (cc.service === undefined)) add([...at, "clientConfig"], "exactly one of url or service is required");
    if (isObject(cc.service) && isString(cc.service.path) && !cc.service.path.startsWith("/")) add([...at, "clientConfig", "service", "path"], "must start with '/'");
  });
}
