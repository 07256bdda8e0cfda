// YAML as kubectl reads it, for validate.mjs and yaml2json.mjs.
import { readFileSync } from "node:fs";
import YAML from "yaml";

export const YAML_OPTIONS = {
  version: "1.1", // as kubectl's YAML reader (go-yaml v2): yes/no/on/off booleans, 0777 octal
  // ... but timestamps stay strings and 1:20 is no number (go-yaml v2 decodes neither into interface{})
  customTags: (tags) => tags.filter((t) => t.format !== "TIME" && !String(t.tag).endsWith(":timestamp")),
  uniqueKeys: true,
  prettyErrors: true, // errors carry linePos
};

export function readInput(file) {
  return readFileSync(file === "-" ? 0 : file, "utf8");
}

/** [{doc, value} | {doc, error, where}] for the file's documents, numbered from 1. */
export function parseDocuments(text, file) {
  if (/\.json$/i.test(file) || /^\s*[{[]/.test(text)) {
    try {
      return [{ doc: 1, value: JSON.parse(text) }];
    } catch {
      // not JSON after all: YAML gives the better message
    }
  }
  const docs = [];
  YAML.parseAllDocuments(text, YAML_OPTIONS).forEach((d, i) => {
    const errors = d.errors ?? [];
    if (errors.length) {
      for (const err of errors) {
        const pos = err.linePos?.[0];
        docs.push({ doc: i + 1, error: err.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, ""), where: pos ? `line ${pos.line} column ${pos.col}` : "" });
      }
      return;
    }
    docs.push({ doc: i + 1, value: d.toJS({ maxAliasCount: 1000 }) });
  });
  return docs;
}
