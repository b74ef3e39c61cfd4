// Every conformance vector of the repository (conformance/ at its root), through the
// SDK. A file or a kind of case this test does not know fails the run, so a new vector
// is never skipped silently.

import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { CONFORMANCE_RUNNERS } from "./conformance-runners.js";

const here = dirname(fileURLToPath(import.meta.url));
// build/test/ → sdks/typescript/ → repository root.
// BONAFIDE_CONFORMANCE_DIR points at another copy (a branch's vectors not merged yet).
const ROOT = process.env.BONAFIDE_CONFORMANCE_DIR ?? join(here, "..", "..", "..", "..", "conformance");

function files(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else out.push(p);
  }
  return out;
}

const all = files(ROOT);

test("the conformance directory has vectors", () => {
  assert.ok(all.filter((f) => f.endsWith(".json")).length >= 3, `no vectors found under ${ROOT}`);
});

for (const file of all) {
  const rel = relative(ROOT, file).split("\\").join("/");
  if (rel.endsWith(".md")) continue;
  test(`conformance/${rel}`, async (t) => {
    const runner = CONFORMANCE_RUNNERS.find((r) => r.matches(rel));
    assert.ok(runner, `conformance/${rel}: no runner knows this file; add one in test/conformance-runners.ts`);
    const doc = JSON.parse(readFileSync(file, "utf8"));
    await runner.run(doc, t, rel);
  });
}
