// The three-party flow against the real registry: an issuer registers an agent with
// its own key; the agent calls an example receiver built with the SDK (Express and
// Hono, offline and online) proving possession (DPoP, then a message signature); the
// issuer revokes; the receiver refuses.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { serve } from "@hono/node-server";
import express from "express";
import { Hono } from "hono";
import { AgentKey, ApiError, agentFetch, dpopProof, Receiver, RegistryClient, signRequest, type VerifiedAgent } from "../src/index.js";
import { agentAuth as expressAuth } from "../src/express.js";
import { type AgentVariables, agentAuth as honoAuth } from "../src/hono.js";
import ts from "typescript";
import { type Registry, startRegistry } from "./registry.js";

let reg: Registry;
let issuerKey: string;
let receiverKey: string;

before(async () => {
  reg = await startRegistry();
  const issuer = await reg.api("POST", "/v1/issuers", reg.adminKey, { name: "apexwealth.example" });
  assert.equal(issuer.status, 201, JSON.stringify(issuer.body));
  issuerKey = issuer.body.api_key;
  const rcv = await reg.api("POST", "/v1/receivers", reg.adminKey, { name: "api.shop.example" });
  assert.equal(rcv.status, 201, JSON.stringify(rcv.body));
  receiverKey = rcv.body.api_key;
});

after(async () => {
  await reg?.stop();
});

async function register(name: string, key?: AgentKey, extra: Record<string, unknown> = {}) {
  const body: Record<string, unknown> = { name, scopes: ["read:portfolio"], ...extra };
  if (key) body.public_key = key.publicJwk;
  const r = await reg.api("POST", "/v1/agents/register", issuerKey, body);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body as { agent_id: string; token: string };
}

/** An Express receiver on 127.0.0.1:0 built with the SDK; `base` is its public URL. */
async function expressReceiver(make: (base: string) => Promise<Receiver>) {
  const app = express();
  const server = app.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const receiver = await make(base);
  app.use(expressAuth(receiver));
  app.get("/hello", (req, res) => {
    const agent = (req as unknown as { agent: VerifiedAgent }).agent;
    res.json({ hello: agent.name, agent: agent.agentId, proof: agent.proof ?? null, revocation_checked: agent.revocationChecked });
  });
  return { base, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function honoReceiver(make: (base: string) => Promise<Receiver>) {
  const app = new Hono<{ Variables: AgentVariables }>();
  let receiver: Receiver | undefined;
  app.use("*", async (c, next) => {
    if (!receiver) throw new Error("not ready");
    return honoAuth(receiver)(c, next);
  });
  app.get("/hello", (c) => {
    const agent = c.get("agent");
    return c.json({ hello: agent.name, agent: agent.agentId, proof: agent.proof ?? null, revocation_checked: agent.revocationChecked });
  });
  const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" });
  await new Promise((r) => server.once("listening", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  receiver = await make(base);
  return { base, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const offline = (base: string) => Receiver.create({ registryUrl: reg.url, publicBaseUrl: base });
const online = (base: string) => Receiver.create({ registryUrl: reg.url, publicBaseUrl: base, mode: "online", apiKey: receiverKey });

async function expectRefused(resp: Response, code: string) {
  const body = (await resp.json()) as { error: { code: string; message: string } };
  assert.equal(resp.status, 401, JSON.stringify(body));
  assert.equal(body.error.code, code, body.error.message);
}

/** Polls (bounded) until a fresh offline receiver refuses: the status list carries the revocation within a second or two. */
async function refusedOfflineSoon(token: string, key: AgentKey, code: string) {
  let last = "";
  for (let i = 0; i < 20; i++) {
    const rcv = await expressReceiver(offline);
    try {
      const resp = await agentFetch(token, key)(`${rcv.base}/hello`);
      const body = (await resp.json()) as { error?: { code: string } };
      last = `${resp.status} ${JSON.stringify(body)}`;
      if (resp.status === 401 && body.error?.code === code) return;
    } finally {
      await rcv.close();
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  assert.fail(`an offline receiver still accepts the token after revocation: ${last}`);
}

for (const [framework, make] of [
  ["express", expressReceiver],
  ["hono", honoReceiver],
] as const) {
  describe(`three-party flow, ${framework}`, () => {
    test("offline: register, DPoP, replay refused, message signature, revoke, refused", async () => {
      const key = await AgentKey.generate("EdDSA");
      const agent = await register(`Bot-${framework}-offline`, key);
      const rcv = await make(offline);
      try {
        const f = agentFetch(agent.token, key);
        const ok = await f(`${rcv.base}/hello`);
        const body = (await ok.json()) as Record<string, unknown>;
        assert.equal(ok.status, 200, JSON.stringify(body));
        assert.deepEqual(body, { hello: `Bot-${framework}-offline`, agent: agent.agent_id, proof: "dpop", revocation_checked: true });

        // The same proof again is a replay.
        const proof = await dpopProof(key, { htm: "GET", htu: `${rcv.base}/hello`, accessToken: agent.token });
        const headers = { authorization: `DPoP ${agent.token}`, dpop: proof };
        assert.equal((await fetch(`${rcv.base}/hello`, { headers })).status, 200);
        await expectRefused(await fetch(`${rcv.base}/hello`, { headers }), "REPLAY");

        // A bound token as a bearer token: a proof is required.
        await expectRefused(await fetch(`${rcv.base}/hello`, { headers: { authorization: `Bearer ${agent.token}` } }), "PROOF_REQUIRED");

        // A proof for another URL.
        const other = await dpopProof(key, { htm: "GET", htu: `${rcv.base}/elsewhere`, accessToken: agent.token });
        await expectRefused(await fetch(`${rcv.base}/hello`, { headers: { authorization: `DPoP ${agent.token}`, dpop: other } }), "PROOF_INVALID");

        // A message signature (Web Bot Auth), the key from the registry's directory.
        const signed = agentFetch(agent.token, key, { proof: "http-signature" });
        const sresp = await signed(`${rcv.base}/hello`);
        const sbody = (await sresp.json()) as Record<string, unknown>;
        assert.equal(sresp.status, 200, JSON.stringify(sbody));
        assert.equal(sbody.proof, "http-signature");

        // Another key's signature.
        const stranger = await AgentKey.generate("EdDSA");
        const sig = await signRequest(stranger, { method: "GET", url: `${rcv.base}/hello` });
        await expectRefused(await fetch(`${rcv.base}/hello`, { headers: { authorization: `Bearer ${agent.token}`, ...sig } }), "PROOF_INVALID");
      } finally {
        await rcv.close();
      }
      const revoked = await reg.api("POST", `/v1/agents/${agent.agent_id}/revoke`, issuerKey, { reason: "test" });
      assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
      await refusedOfflineSoon(agent.token, key, "TOKEN_REVOKED");
    });

    test("online: the registry decides, revocation at once", async () => {
      const key = await AgentKey.generate("ES256");
      const agent = await register(`Bot-${framework}-online`, key);
      const rcv = await make(online);
      try {
        const f = agentFetch(agent.token, key);
        const ok = await f(`${rcv.base}/hello`);
        const body = (await ok.json()) as Record<string, unknown>;
        assert.equal(ok.status, 200, JSON.stringify(body));
        assert.deepEqual(body, { hello: `Bot-${framework}-online`, agent: agent.agent_id, proof: "dpop", revocation_checked: true });
        const proof = await dpopProof(key, { htm: "GET", htu: `${rcv.base}/hello`, accessToken: agent.token });
        const headers = { authorization: `DPoP ${agent.token}`, dpop: proof };
        assert.equal((await fetch(`${rcv.base}/hello`, { headers })).status, 200);
        await expectRefused(await fetch(`${rcv.base}/hello`, { headers }), "REPLAY");
        const signed = await agentFetch(agent.token, key, { proof: "http-signature" })(`${rcv.base}/hello`);
        assert.equal(signed.status, 200, await signed.clone().text());

        const revoked = await reg.api("POST", `/v1/agents/${agent.agent_id}/revoke`, issuerKey, { reason: "test" });
        assert.equal(revoked.status, 200);
        await expectRefused(await f(`${rcv.base}/hello`), "TOKEN_REVOKED");
      } finally {
        await rcv.close();
      }
    });
  });
}

test("a bearer token (an agent without a key), then suspended, offline", async () => {
  const agent = await register("BearerBot");
  const rcv = await expressReceiver(offline);
  try {
    const resp = await agentFetch(agent.token, undefined)(`${rcv.base}/hello`);
    assert.equal(resp.status, 200, await resp.clone().text());
    assert.equal(((await resp.json()) as { proof: unknown }).proof, null);
    await expectRefused(await fetch(`${rcv.base}/hello`), "TOKEN_MISSING");
    await expectRefused(await fetch(`${rcv.base}/hello`, { headers: { authorization: "Bearer not.a.token" } }), "TOKEN_INVALID");
  } finally {
    await rcv.close();
  }
  const s = await reg.api("POST", `/v1/agents/${agent.agent_id}/suspend`, issuerKey, { reason: "review" });
  assert.equal(s.status, 200, JSON.stringify(s.body));
  let last = "";
  for (let i = 0; i < 20; i++) {
    const r = await expressReceiver(offline);
    try {
      const resp = await agentFetch(agent.token, undefined)(`${r.base}/hello`);
      last = `${resp.status} ${await resp.text()}`;
      if (resp.status === 401 && last.includes("AGENT_SUSPENDED")) break;
    } finally {
      await r.close();
    }
    await new Promise((res) => setTimeout(res, 500));
  }
  assert.match(last, /AGENT_SUSPENDED/);
});

test("token exchange: a delegated token for a sub-agent verifies with its chain", async () => {
  const parentKey = await AgentKey.generate("EdDSA");
  const childKey = await AgentKey.generate("EdDSA");
  const parent = await register("Parent", parentKey);
  const child = await register("Child", childKey);
  const client = new RegistryClient(reg.url, issuerKey);
  const ex = await client.exchange({ subjectToken: parent.token, actorToken: child.token, scope: ["read:portfolio"] });
  const rcv = await expressReceiver(offline);
  try {
    const resp = await agentFetch(ex.access_token, childKey)(`${rcv.base}/hello`);
    const body = (await resp.json()) as Record<string, unknown>;
    assert.equal(resp.status, 200, JSON.stringify(body));
    assert.equal(body.agent, parent.agent_id);
  } finally {
    await rcv.close();
  }
  const receiver = await Receiver.create({ registryUrl: reg.url, publicBaseUrl: "https://api.example" });
  const proof = await dpopProof(childKey, { htm: "GET", htu: "https://api.example/x", accessToken: ex.access_token });
  const agent = await receiver.authenticate({ method: "GET", url: "/x", headers: [["authorization", `DPoP ${ex.access_token}`], ["dpop", proof]] });
  assert.deepEqual(agent.delegation, [parent.agent_id, child.agent_id]);
  assert.equal(agent.actor, child.agent_id);
});

test("token exchange: the registry refuses a widening or a loop (its rule, not the SDK's)", async () => {
  const parent = await register("Parent2", await AgentKey.generate("EdDSA"));
  const child = await register("Child2", await AgentKey.generate("EdDSA"));
  const client = new RegistryClient(reg.url, issuerKey);
  await assert.rejects(client.exchange({ subjectToken: parent.token, actorToken: child.token, scope: ["payments:write"] }), (e: unknown) => {
    assert.ok(e instanceof ApiError, String(e));
    assert.equal(e.status, 400, e.message);
    assert.equal(e.code, "DELEGATION_WIDENS", e.message);
    return true;
  });
  await assert.rejects(client.exchange({ subjectToken: parent.token, actorToken: parent.token, scope: ["read:portfolio"] }), (e: unknown) => {
    assert.ok(e instanceof ApiError, String(e));
    assert.equal(e.code, "DELEGATION_LOOP", e.message);
    return true;
  });
});

// The READMEs' twenty-line receivers, run as written: the code block is transpiled, the
// registry URL and port 3000 replaced by the test's, started as its own process
// (importing the built package by its name), then called as an agent.
const here = dirname(fileURLToPath(import.meta.url));
const READMES: [string, string, RegExp][] = [
  [join(here, "..", "..", "README.md"), "## A receiver in twenty lines", /^hello ReadmeBot \(agt_[a-z0-9]+\)$/],
  [join(here, "..", "..", "..", "..", "README.md"), "## TypeScript SDK (sdks/typescript)", /^hello ReadmeBot$/],
];

function receiverBlock(path: string, heading: string): string {
  const text = readFileSync(path, "utf8");
  const at = text.indexOf(`${heading}\n`);
  assert.ok(at >= 0, `${path} lost its section \`${heading}\``);
  const m = /```ts\n([\s\S]*?)```/.exec(text.slice(at));
  assert.ok(m?.[1], `${path}: no \`\`\`ts block under \`${heading}\``);
  const code = m[1];
  assert.ok(code.trim().split("\n").length <= 20, `${path}: the receiver is longer than twenty lines`);
  assert.ok(code.includes('"http://127.0.0.1:8080"') && code.includes("3000"), `${path}: the receiver's registry or port moved`);
  return code;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

for (const [path, heading, greeting] of READMES) {
  test(`the README receiver runs: ${path.includes("sdks") ? "sdks/typescript/README.md" : "README.md"}`, async () => {
    const port = await freePort();
    const js = ts
      .transpileModule(receiverBlock(path, heading), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } })
      .outputText.replaceAll('"http://127.0.0.1:8080"', JSON.stringify(reg.url))
      .replaceAll("3000", String(port));
    // Inside the package, so `@bonafide/sdk` resolves to the built package (its `exports`).
    const file = join(here, `readme-receiver-${port}.mjs`);
    writeFileSync(file, js);
    const child = spawn(process.execPath, [file], { env: { ...process.env, BONAFIDE_URL: reg.url }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    try {
      const url = `http://127.0.0.1:${port}/hello`;
      let first: Response | undefined;
      for (let i = 0; i < 100 && !first; i++) {
        first = await fetch(url).catch(() => undefined);
        if (!first) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(first, `the README receiver did not listen on ${port}: ${stderr}`);
      await expectRefused(first, "TOKEN_MISSING");
      const key = await AgentKey.generate("EdDSA");
      const agent = await register("ReadmeBot", key);
      const ok = await agentFetch(agent.token, key)(url);
      const body = await ok.text();
      assert.equal(ok.status, 200, body);
      assert.match(body, greeting);
      assert.ok(body.includes("ReadmeBot"));
      if (greeting.source.includes("agt_")) assert.ok(body.includes(agent.agent_id), body);
      // A replayed proof is refused by the README receiver too.
      const proof = await dpopProof(key, { htm: "GET", htu: url, accessToken: agent.token });
      const headers = { authorization: `DPoP ${agent.token}`, dpop: proof };
      assert.equal((await fetch(url, { headers })).status, 200);
      await expectRefused(await fetch(url, { headers }), "REPLAY");
    } finally {
      child.kill("SIGTERM");
      rmSync(file, { force: true });
    }
  });
}
