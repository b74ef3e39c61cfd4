// Unit tests of the pieces the vectors do not reach on their own.

import assert from "node:assert/strict";
import { test } from "node:test";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync } from "node:zlib";
import * as b64 from "../src/b64.js";
import { AgentKey, dpopProof, signRequest } from "../src/agent.js";
import { normalizeHtu, verifyProof } from "../src/dpop.js";
import { HttpSigError, verifySignature } from "../src/httpsig.js";
import { canonicalize, JsonError, JsonFloat, parse } from "../src/json.js";
import { VerifyingKey } from "../src/keys.js";
import { Policy, type PolicyError } from "../src/policy/index.js";
import { Receiver, Rejection } from "../src/receiver.js";
import { ReplayCache } from "../src/replay.js";
import { StatusList } from "../src/statuslist.js";

test("strict JSON: duplicates at any depth, depth bound, floats kept apart", () => {
  assert.throws(() => parse('{"a":1,"a":2}'), (e: JsonError) => e.kind === "duplicate");
  assert.throws(() => parse('{"a":{"b":1,"b":1}}'), (e: JsonError) => e.kind === "duplicate");
  assert.throws(() => parse('{"a":1,"\\u0061":2}'), (e: JsonError) => e.kind === "duplicate");
  assert.throws(() => parse("[[[1]]]", 2), (e: JsonError) => e.kind === "depth");
  assert.deepEqual(parse("[[1]]", 2), [[1]]);
  assert.throws(() => parse('{"a":1} x'), JsonError);
  assert.throws(() => parse('"\\ud800"'), JsonError);
  assert.ok(parse("1.0") instanceof JsonFloat);
  assert.equal(parse("10"), 10);
  const proto = parse('{"__proto__":{"x":1}}') as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.deepEqual(Object.keys(proto), ["__proto__"]);
  assert.equal(canonicalize({ b: [1, "é"], a: null, "\u20ac": 1, "1": true }), '{"1":true,"a":null,"b":[1,"é"],"€":1}');
});

test("strict base64url: no padding, no foreign characters, canonical last bits", () => {
  assert.deepEqual([...b64.decode("YQ")], [97]);
  for (const bad of ["YQ==", "YQ=", "Y Q", "+/8", "YR", "YWJjZ"]) assert.throws(() => b64.decode(bad), b64.Base64Error, bad);
  for (let n = 0; n < 40; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 37) % 256);
    assert.deepEqual(b64.decode(b64.encode(bytes)), bytes);
  }
});

test("htu normalisation (RFC 3986 §6.2.2–6.2.3)", () => {
  assert.equal(normalizeHtu("HTTPS://Api.Example:443/a/./b/../c?q#f"), "https://api.example/a/c");
  assert.equal(normalizeHtu("http://h:80"), "http://h/");
  assert.equal(normalizeHtu("http://h:8080/%7e%2f"), "http://h:8080/~%2F");
  for (const bad of ["ftp://h/", "https://u@h/", "https://h:99999/", "https://h/ a", "/relative"]) {
    assert.throws(() => normalizeHtu(bad), Error, bad);
  }
});

test("the replay cache refuses a repeat and, full of live entries, refuses rather than evicts", async () => {
  const c = new ReplayCache(2);
  assert.equal(await c.claim("dpop", "k", "a", 100, 0), "ok");
  assert.equal(await c.claim("dpop", "k", "a", 100, 1), "replay");
  assert.equal(await c.claim("sig", "k", "a", 100, 1), "ok");
  assert.equal(await c.claim("dpop", "k", "b", 100, 2), "full");
  assert.equal(await c.claim("dpop", "k", "b", 200, 101), "ok");
});

test("a full replay cache sweeps at most once a second (a flood does not buy a pass per request)", async () => {
  const c = new ReplayCache(1000);
  for (let i = 0; i < 1000; i++) assert.equal(await c.claim("dpop", "k", `j${i}`, 400, 100), "ok");
  const before = c.sweeps;
  for (let i = 0; i < 200; i++) assert.equal(await c.claim("dpop", "k", `x${i}`, 400, 101), "full");
  assert.equal(c.sweeps - before, 1);
  assert.equal(await c.claim("dpop", "k", "y", 500, 401), "ok");
});

test("the replay cache keeps a fixed-size entry whatever the proof's nonce (no memory amplification)", async () => {
  const c = new ReplayCache(10);
  const nonce = "n".repeat(16 * 1024);
  assert.equal(await c.claim("sig", "kid", nonce, 400, 100), "ok");
  assert.equal(await c.claim("sig", "kid", nonce, 400, 101), "replay");
  assert.equal(await c.claim("sig", "kid", `${nonce}x`, 400, 101), "ok");
  assert.ok(c.keyBytes <= 2 * 64, `stored key bytes: ${c.keyBytes}`);
});

test("agent side: DPoP proofs and message signatures verify, tampering does not", async () => {
  for (const alg of ["EdDSA", "ES256"] as const) {
    const key = await AgentKey.generate(alg);
    const now = Math.floor(Date.now() / 1000);
    const proof = await dpopProof(key, { htm: "POST", htu: "https://api.example/pay?x=1", accessToken: "tok" });
    const v = await verifyProof(proof, { htm: "POST", htu: "https://api.example/pay", jkt: key.kid, accessToken: "tok", now });
    assert.equal(v.jkt, key.kid);
    await assert.rejects(verifyProof(proof, { htm: "POST", htu: "https://api.example/pay", jkt: key.kid, accessToken: "other", now }));
    const sig = await signRequest(key, { method: "GET", url: "https://api.example/x?y=2" }, { signatureAgent: '"https://registry.example"' });
    const headers: [string, string][] = Object.entries(sig);
    const vk = await VerifyingKey.fromJwk(key.publicJwk);
    const check = { now, requireNonce: true };
    const ok = await verifySignature({ method: "GET", url: "https://api.example/x?y=2", headers }, check, (id) => (id === key.kid ? vk : undefined));
    assert.equal(ok.covered[ok.covered.length - 1], "signature-agent");
    await assert.rejects(verifySignature({ method: "GET", url: "https://evil.example/x?y=2", headers }, check, () => vk));
    // The signature names the request it was made for: captured on the way, it is
    // no good for another method, path or query of the same origin.
    for (const [method, url] of [
      ["POST", "https://api.example/x?y=2"],
      ["GET", "https://api.example/transfer?y=2"],
      ["GET", "https://api.example/x?y=2&amount=1000"],
      ["GET", "https://api.example/x"],
    ] as const) {
      await assert.rejects(verifySignature({ method, url, headers }, check, () => vk), HttpSigError, `${method} ${url}`);
    }
    const bare = Object.entries(await signRequest(key, { method: "GET", url: "https://api.example/x" }));
    await assert.rejects(verifySignature({ method: "GET", url: "https://api.example/x?amount=1000", headers: bare }, check, () => vk), HttpSigError);
  }
});

test("status lists: bit order, bounds, and a bomb is refused", async () => {
  const bytes = Uint8Array.from([0b11100100, 0x01]);
  const list = await StatusList.decode({ bits: 2, lst: b64.encode(deflateSync(bytes)) });
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => list.get(i)), [0, 1, 2, 3, 1]);
  assert.throws(() => list.get(8));
  await assert.rejects(StatusList.decode({ bits: 3, lst: "" }));
  const bomb = deflateSync(new Uint8Array(17 * 1024 * 1024));
  await assert.rejects(StatusList.decode({ bits: 1, lst: b64.encode(bomb) }), /at most/);
});

test("policy lint: every problem with its JSON path", async () => {
  await assert.rejects(
    Policy.parse('{"version":"pol.v0.2","id":"p","actions":["a","a"],"limits":{"per_txn":{"amount":1.5,"currency":"USD"}},"x":1}'),
    (e: PolicyError) => {
      assert.deepEqual(
        e.problems.map((p) => p.path),
        ["x", "actions[1]", "limits.per_txn.amount"],
      );
      return true;
    },
  );
  const p = await Policy.parse('{"version":"pol.v0.2","id":"p","actions":["payments.send"]}');
  assert.match(p.hash, /^sha256:[0-9a-f]{64}$/);
});

test("the receiver refuses what it cannot accept, with the right status and challenge", async () => {
  const r = await Receiver.create({ registryUrl: "https://registry.example", jwks: { keys: [] } });
  const refuse = async (headers: [string, string][], code: string, status = 401) => {
    await assert.rejects(r.authenticate({ method: "GET", url: "/x", headers }), (e: Rejection) => {
      assert.equal(e.code, code, e.message);
      assert.equal(e.status, status);
      assert.ok(e.challenge);
      return true;
    });
  };
  await refuse([], "TOKEN_MISSING");
  await refuse([["authorization", "Bearer "]], "TOKEN_INVALID");
  await refuse([["authorization", "Bearer a.b.c"], ["authorization", "Bearer a.b.c"]], "TOKEN_INVALID");
  await refuse([["authorization", "Bearer not-a-jws"]], "TOKEN_INVALID");
  await refuse([["x-agent-token", ""]], "TOKEN_INVALID");
  const resp = new Rejection(401, "TOKEN_MISSING", "m", 'Bearer error="x"').toResponse();
  assert.equal(resp.headers.get("www-authenticate"), 'Bearer error="x"');
  assert.deepEqual(await resp.json(), { error: { code: "TOKEN_MISSING", message: "m" } });
  await assert.rejects(Receiver.create({ registryUrl: "https://r", jwks: { keys: [] }, publicBaseUrl: "https://a/?q" }), /query or fragment/);
});

test("the package is versioned with the server: package.json, its lockfile and the workspace Cargo.toml agree", () => {
  const sdk = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const cargo = readFileSync(join(sdk, "..", "..", "Cargo.toml"), "utf8");
  const section = /^\[workspace\.package\]\n([\s\S]*?)(?:^\[|$(?![\s\S]))/m.exec(cargo);
  const workspace = section?.[1] ? /^version\s*=\s*"([^"]+)"/m.exec(section[1])?.[1] : undefined;
  assert.ok(workspace, "no [workspace.package] version in Cargo.toml");
  const pkg = JSON.parse(readFileSync(join(sdk, "package.json"), "utf8"));
  const lock = JSON.parse(readFileSync(join(sdk, "package-lock.json"), "utf8"));
  assert.equal(pkg.version, workspace, "sdks/typescript/package.json `version` differs from the workspace version");
  assert.equal(lock.version, workspace, "package-lock.json `version` differs");
  assert.equal(lock.packages[""].version, workspace, "package-lock.json `packages[\"\"].version` differs");
});

test("a request line the URL parser refuses is a 401, not an exception (no 500 from the middleware)", async () => {
  const { CompactSign } = await import("jose");
  const registry = await AgentKey.generate("EdDSA");
  const agentKey = await AgentKey.generate("EdDSA");
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: "https://registry.example",
    sub: `agt_${"a".repeat(26)}`,
    iat: now,
    exp: now + 600,
    jti: `tok_${"b".repeat(26)}`,
    agent: { name: "Bot", issuer: "apexwealth.example", scopes: ["read:x"] },
    scope: "read:x",
    cnf: { jkt: agentKey.kid },
  };
  const token = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader({ typ: "agent+jwt", alg: "EdDSA", kid: registry.kid })
    .sign(registry.privateKey);
  const r = await Receiver.create({
    registryUrl: "https://registry.example",
    jwks: { keys: [registry.publicJwk] },
    publicBaseUrl: "https://api.example",
  });
  const url = "http://[::1/x"; // an absolute-form request target Node passes through as `originalUrl`
  const proof = await dpopProof(agentKey, { htm: "GET", htu: "https://api.example/x", accessToken: token });
  await assert.rejects(r.authenticate({ method: "GET", url, headers: [["authorization", `DPoP ${token}`], ["dpop", proof]] }), (e: unknown) => {
    assert.ok(e instanceof Rejection, String(e));
    assert.equal(e.status, 401);
    assert.equal(e.code, "PROOF_INVALID");
    return true;
  });
  const ok = await r.authenticate({ method: "GET", url: "/x", headers: [["authorization", `DPoP ${token}`], ["dpop", proof]] });
  assert.equal(ok.proof, "dpop");
});
