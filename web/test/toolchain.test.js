// Checks of the repository's Node toolchain. They live here because
// web/test/ is what make web-check hands to node --test, the one Node test
// step of make test.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import semver from "semver";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const readJSON = (path) => JSON.parse(readFileSync(join(root, path), "utf8"));

const pkg = readJSON("package.json");
const supported = pkg.engines?.node;

test("package.json names the Node versions it supports, and this Node is one", () => {
  assert.ok(semver.validRange(supported), `package.json engines.node is ${JSON.stringify(supported)}, not a range`);
  assert.ok(semver.satisfies(process.version, supported), `Node ${process.version} is outside package.json's engines.node ${supported}`);
});

// npm ci only warns (EBADENGINE) when a package wants a newer Node, and the
// package may then fail at run time; so every locked package must accept
// every Node that package.json claims, not just the one running the tests.
test("every locked package accepts every Node that package.json supports", () => {
  const lock = readJSON("package-lock.json");
  const refused = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    const wants = entry.engines?.node;
    if (path === "" || !wants) {
      continue;
    }
    if (!semver.validRange(wants) || !semver.subset(supported, wants)) {
      refused.push(`${path.replace(/^.*node_modules\//, "")}@${entry.version} wants Node ${wants}`);
    }
  }
  assert.deepEqual(refused, [], `package.json supports Node ${supported}, but`);
});

// A warning on stderr (an experimental API, a deprecation) is a change in
// Node or a dependency asking for attention: the tests must stay quiet so
// it is seen. Each other test file runs alone, as node --test runs it.
test("the other test files run without a warning from Node", () => {
  const files = readdirSync(here).filter((f) => f.endsWith(".test.js") && f !== basename(fileURLToPath(import.meta.url)));
  assert.ok(files.length > 0, "no other test files");
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // set by node --test for its children; the child would report to it
  delete env.NODE_OPTIONS;
  delete env.NODE_NO_WARNINGS;
  for (const file of files) {
    const r = spawnSync(process.execPath, [join(here, file)], { env, encoding: "utf8" });
    assert.equal(r.status, 0, `${file} failed:\n${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /Warning/, `${file} printed:\n${r.stderr}`);
  }
});
