#!/usr/bin/env node
// Prints the documents of a YAML file (or stdin: "-") as one JSON array, read as kubectl reads YAML
// (kube-yaml.mjs); empty documents are null. Exit 1 (message on stderr) on a YAML error.
//   node e2e/k8s/yaml2json.mjs FILE
import { parseDocuments, readInput } from "./kube-yaml.mjs";

const file = process.argv[2];
if (!file || process.argv.length > 3) {
  process.stderr.write("usage: node yaml2json.mjs FILE (- reads stdin)\n");
  process.exit(2);
}
const docs = parseDocuments(readInput(file), file);
const bad = docs.filter((d) => d.error);
if (bad.length) {
  for (const d of bad) process.stderr.write(`${file}: doc ${d.doc}: ${d.where}: ${d.error}\n`);
  process.exit(1);
}
process.stdout.write(JSON.stringify(docs.map((d) => d.value ?? null)) + "\n");
