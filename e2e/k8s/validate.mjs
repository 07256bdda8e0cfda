#!/usr/bin/env node
// Validates Kubernetes objects in YAML (multi-document) or JSON files, offline, as `kubectl apply
// --validate=strict` and the API server would, against the schemas of the npm package kubernetes-models
// (plus @kubernetes-models/prometheus-operator and @kubernetes-models/cert-manager for their kinds).
//
//   node e2e/k8s/validate.mjs [--json] FILE...     (FILE "-" reads stdin)
//
// Every object (items of a `kind: List` one by one) is checked by apiVersion + kind:
//   * the kind's schema: types, enums, required fields, formats (the model's validate());
//   * unknown fields, which validate() lets through: the object is handed to validate() behind a Proxy that
//     records which properties the schema code looks up; a property nobody looked up in an object whose
//     schema names properties is unknown (objects the code enumerates are maps, e.g. labels; objects whose
//     schema names no properties are free-form);
//   * what the API server checks beyond the schema (rules.mjs): names, labels, container and port names,
//     volume mounts, native sidecars, a Deployment selector that matches its template, webhook names.
// An apiVersion/kind none of the packages knows is an error; so is a document that is not an object.
// YAML is read as kubectl reads it (kube-yaml.mjs: YAML 1.1 scalars, so yes/no/on/off/y/n are booleans and
// 0777 is octal; no timestamps or sexagesimal numbers); duplicate keys are errors. Works offline.
//
// Output: one line per problem, `FILE: doc N: Kind/name: path: message` (N counts the file's documents
// from 1; a List item adds ` item I`), exit 1 if there were any, else exit 0 (2: bad usage or an
// unreadable file). A summary goes to stderr. --json prints {"objects": [{file, doc, item, object}],
// "problems": [{file, doc, item, kind, name, path, message, text}]} instead of the lines (same exit codes).

import { parseDocuments, readInput } from "./kube-yaml.mjs";
import { serverRules } from "./rules.mjs";

const PACKAGES = ["kubernetes-models", "@kubernetes-models/prometheus-operator", "@kubernetes-models/cert-manager"];
const API_VERSION = /^(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?\/)?v[0-9]+(?:(?:alpha|beta)[0-9]+)?$/;

// ---------------------------------------------------------------------------------------------------------
// Models by apiVersion + kind

const modules = new Map(); // import specifier -> Promise<module | null>

async function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !API_VERSION.test(apiVersion)) return null;
  if (!/^[A-Za-z][A-Za-z0-9]*$/.test(kind)) return null;
  for (const pkg of PACKAGES) {
    const spec = `${pkg}/${apiVersion}/${kind}`; // one model's module: importing a whole group takes seconds
    if (!modules.has(spec)) {
      modules.set(spec, import(spec).catch((err) => {
        if (err.code === "ERR_PACKAGE_PATH_NOT_EXPORTED" || err.code === "ERR_MODULE_NOT_FOUND") return null;
        throw err;
      }));
    }
    const mod = await modules.get(spec);
    const model = mod && Object.values(mod).find((c) => typeof c === "function" && c.kind === kind &&
      c.apiVersion === apiVersion && typeof c.prototype?.validate === "function");
    if (model) return model;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------
// Schema check with unknown-field detection

function schemaProblems(model, obj) {
  const records = new Map(); // target -> {path, looked: Set, enumerated}
  const proxies = new WeakMap();
  const wrap = (value, path) => {
    if (value === null || typeof value !== "object") return value;
    let proxy = proxies.get(value);
    if (proxy) return proxy;
    const rec = { path, looked: new Set(), enumerated: false };
    records.set(value, rec);
    const isArray = Array.isArray(value);
    proxy = new Proxy(value, {
      get(target, key, receiver) {
        if (typeof key !== "string") return Reflect.get(target, key, receiver);
        rec.looked.add(key);
        if (!Object.hasOwn(target, key)) return Reflect.get(target, key, receiver);
        return wrap(target[key], [...path, isArray ? Number(key) : key]);
      },
      has(target, key) {
        if (typeof key === "string") rec.looked.add(key);
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        rec.enumerated = true;
        return Reflect.ownKeys(target);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };

  const problems = [];
  try {
    model.prototype.validate.call(wrap(obj, []));
  } catch (err) {
    if (!Array.isArray(err.errors)) throw err;
    // The branches of a failed oneOf/anyOf (IntOrString, Quantity) fail at the same path: one message for all.
    const union = new Set(err.errors.filter((e) => e.keyword === "oneOf" || e.keyword === "anyOf").map((e) => e.instancePath));
    const merged = new Map();
    for (const path of union) {
      const branches = err.errors.filter((e) => e.instancePath === path && e.keyword !== "oneOf" && e.keyword !== "anyOf");
      const alternatives = branches.map((e) => e.keyword === "type" ? `be ${e.params.type}`
        : e.keyword === "format" ? `match format "${e.params.format}"` : (e.message || e.keyword).replace(/^must /, ""));
      merged.set(path, ajvProblem({ instancePath: path, keyword: "oneOf", message: `must ${alternatives.join(" or ")}` }, obj));
    }
    for (const e of err.errors) {
      if (!union.has(e.instancePath)) problems.push(ajvProblem(e, obj));
      else if (merged.has(e.instancePath)) problems.push(merged.get(e.instancePath)) && merged.delete(e.instancePath);
    }
  }
  for (const [value, rec] of records) {
    if (Array.isArray(value) || rec.enumerated || rec.looked.size === 0) continue;
    for (const key of Object.keys(value)) {
      if (!rec.looked.has(key)) problems.push({ path: [...rec.path, key], message: `unknown field "${key}"` });
    }
  }
  return problems;
}

function typeName(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function ajvProblem(e, root) {
  const path = [];
  let cur = root;
  for (const raw of e.instancePath.split("/").slice(1)) {
    const seg = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    const key = Array.isArray(cur) ? Number(seg) : seg;
    path.push(key);
    cur = cur == null ? undefined : cur[key];
  }
  let message = e.message || e.keyword;
  if (e.keyword === "required") {
    path.push(e.params.missingProperty);
    message = "required field is missing";
  } else if (e.keyword === "type") {
    message += ` (got ${typeName(cur)})`;
  } else if (e.keyword === "enum") {
    message += `: ${e.params.allowedValues.map((v) => JSON.stringify(v)).join(", ")} (got ${JSON.stringify(cur)})`;
  } else if (e.keyword === "format" || e.keyword === "oneOf") {
    message += ` (got ${JSON.stringify(cur)})`;
  }
  return { path, message };
}

export function formatPath(path) {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out || "(object)";
}

// ---------------------------------------------------------------------------------------------------------
// Files and documents

async function checkObject(obj) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    return [{ path: [], message: `a Kubernetes object must be a mapping, not ${typeName(obj)}` }];
  }
  if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
    return [{ path: [typeof obj.apiVersion !== "string" ? "apiVersion" : "kind"], message: "required string field is missing" }];
  }
  const model = await modelFor(obj.apiVersion, obj.kind);
  if (!model) {
    return [{ path: ["kind"], message: `unknown kind ${JSON.stringify(obj.kind)} in apiVersion ${JSON.stringify(obj.apiVersion)} (not in ${PACKAGES.join(", ")})` }];
  }
  return [...schemaProblems(model, obj), ...serverRules(obj)];
}

function label(obj) {
  const kind = obj && typeof obj.kind === "string" ? obj.kind : "?";
  const name = obj?.metadata?.name ?? obj?.metadata?.generateName ?? "?";
  return `${kind}/${name}`;
}

async function main(argv) {
  const json = argv.includes("--json");
  const files = argv.filter((a) => a !== "--json");
  if (files.length === 0 || files.some((f) => f.startsWith("-") && f !== "-")) {
    process.stderr.write("usage: node validate.mjs [--json] FILE... (FILE - reads stdin)\n");
    return 2;
  }
  const objects = [];
  const problems = [];
  const report = (file, doc, item, obj, path, message) => {
    const where = `${file}: doc ${doc}${item == null ? "" : ` item ${item}`}`;
    const p = { file, doc, item, kind: obj?.kind ?? null, name: obj?.metadata?.name ?? null,
      path: typeof path === "string" ? path : formatPath(path), message };
    p.text = `${where}: ${label(obj)}: ${p.path}: ${message}`;
    problems.push(p);
  };
  for (const file of files) {
    let text;
    try {
      text = readInput(file);
    } catch (err) {
      process.stderr.write(`${file}: ${err.message}\n`);
      return 2;
    }
    for (const d of parseDocuments(text, file)) {
      if (d.error) {
        report(file, d.doc, null, null, d.where || "(yaml)", d.error);
        continue;
      }
      if (d.value === null || d.value === undefined) continue; // an empty document (comments only)
      const isList = d.value && typeof d.value === "object" && d.value.kind === "List" && d.value.apiVersion === "v1";
      const entries = isList ? (Array.isArray(d.value.items) ? d.value.items : []).map((o, i) => [o, i]) : [[d.value, null]];
      if (isList && !Array.isArray(d.value.items)) report(file, d.doc, null, d.value, "items", "a List needs an items array");
      for (const [obj, item] of entries) {
        objects.push({ file, doc: d.doc, item, object: obj });
        for (const { path, message } of await checkObject(obj)) report(file, d.doc, item, obj, path, message);
      }
    }
  }
  const seen = new Set();
  const unique = problems.filter((p) => !seen.has(p.text) && seen.add(p.text));
  if (json) {
    process.stdout.write(JSON.stringify({ objects, problems: unique }) + "\n");
  } else {
    for (const p of unique) process.stdout.write(p.text + "\n");
  }
  process.stderr.write(`${objects.length} object(s) in ${files.length} file(s): ${unique.length ? `${unique.length} problem(s)` : "all valid"}\n`);
  return unique.length ? 1 : 0;
}

process.stdout.on("error", (err) => { if (err.code !== "EPIPE") throw err; }); // `| head` is fine
process.exitCode = await main(process.argv.slice(2));
