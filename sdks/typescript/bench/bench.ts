// Benchmarks (bench/RESULTS.md): (1) offline verification of a DPoP-bound token by the
// SDK (token, proof, replay claim: two signatures) against `jose` verifying the bare
// token JWS, interleaved in one run; (2) the middleware's overhead on a hello-world
// handler of Express and Hono over loopback HTTP, with and without it, interleaved.
// Run: node build/bench/bench.js  (after `npm run build:test`).

import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import express from "express";
import { Hono } from "hono";
import { CompactSign, compactVerify, exportJWK, generateKeyPair } from "jose";
import { AgentKey, dpopProof, Receiver } from "../src/index.js";
import { agentAuth as expressAuth } from "../src/express.js";
import { agentAuth as honoAuth } from "../src/hono.js";
import { thumbprint } from "../src/keys.js";

// Many short alternating rounds: the VM's speed drifts (and it is shared), so each
// round's ratio compares two sides measured moments apart; the median ratio is reported.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 300);
const PER_ROUND = Number(process.env.BENCH_PER_ROUND ?? 20);
const HTTP_ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 60);
const HTTP_PER_ROUND = Number(process.env.BENCH_HTTP_PER_ROUND ?? 100);
const REGISTRY = "https://registry.example";
const BASE = "https://api.example";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function token(cnf: string | undefined) {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { extractable: true, crv: "Ed25519" });
  const pub = await exportJWK(publicKey);
  const kid = await thumbprint({ kty: "OKP", crv: "Ed25519", x: pub.x as string });
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    agent: { issuer: "apexwealth.example", name: "PortfolioBot", scopes: ["read:portfolio"] },
    exp: now + 3600,
    iat: now,
    iss: REGISTRY,
    jti: "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa",
    scope: "read:portfolio",
    sub: "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa",
  };
  if (cnf) claims.cnf = { jkt: cnf };
  const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader({ alg: "EdDSA", typ: "agent+jwt", kid })
    .sign(privateKey);
  return { jws, publicKey, jwks: { keys: [{ kty: "OKP", crv: "Ed25519", x: pub.x as string, kid, alg: "EdDSA" }] } };
}

async function verifyBench() {
  const agentKey = await AgentKey.generate("EdDSA");
  const t = await token(agentKey.kid);
  const receiver = await Receiver.create({ registryUrl: REGISTRY, jwks: t.jwks, publicBaseUrl: BASE, statusLists: false });
  const sdk: number[] = [];
  const bare: number[] = [];
  const ratios: number[] = [];
  // Proofs are made ahead (each is single use): only verification is timed.
  const all: string[] = [];
  for (let i = 0; i < (ROUNDS + 10) * PER_ROUND; i++) all.push(await dpopProof(agentKey, { htm: "GET", htu: `${BASE}/hello`, accessToken: t.jws }));
  for (let round = -10; round < ROUNDS; round++) {
    // Rounds below 0 warm up (JIT, key caches) and are not counted.
    const proofs = all.slice((round + 10) * PER_ROUND, (round + 11) * PER_ROUND);
    let start = performance.now();
    for (let i = 0; i < PER_ROUND; i++) await compactVerify(t.jws, t.publicKey, { algorithms: ["EdDSA"] });
    if (round >= 0) bare.push(((performance.now() - start) * 1000) / PER_ROUND);
    start = performance.now();
    for (let i = 0; i < PER_ROUND; i++) {
      await receiver.authenticate({ method: "GET", url: "/hello", headers: [["authorization", `DPoP ${t.jws}`], ["dpop", proofs[i] as string]] });
    }
    if (round >= 0) {
      sdk.push(((performance.now() - start) * 1000) / PER_ROUND);
      ratios.push((sdk.at(-1) as number) / (bare.at(-1) as number));
    }
  }
  return { sdkUs: median(sdk), bareUs: median(bare), ratio: median(ratios) };
}

async function listen(server: import("node:http").Server) {
  await new Promise((r) => server.once("listening", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function load(url: string, headers: Record<string, string>, n: number) {
  const start = performance.now();
  // Eight requests in flight, as a small client pool would.
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const r = await fetch(url, { headers });
      if (r.status !== 200) throw new Error(`${url}: HTTP ${r.status} ${await r.text()}`);
      await r.arrayBuffer();
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return ((performance.now() - start) * 1000) / n;
}

async function middlewareBench() {
  const t = await token(undefined);
  const headers = { authorization: `Bearer ${t.jws}` };
  const receiver = await Receiver.create({ registryUrl: REGISTRY, jwks: t.jwks, statusLists: false });
  const plainExpress = express().get("/hello", (_q, s) => void s.send("hello"));
  const authedExpress = express().use(expressAuth(receiver)).get("/hello", (_q, s) => void s.send("hello"));
  const plainHono = new Hono().get("/hello", (c) => c.text("hello"));
  const authedHono = new Hono();
  authedHono.use("*", honoAuth(receiver) as never);
  authedHono.get("/hello", (c) => c.text("hello"));
  const servers = [
    plainExpress.listen(0, "127.0.0.1"),
    authedExpress.listen(0, "127.0.0.1"),
    serve({ fetch: plainHono.fetch, port: 0, hostname: "127.0.0.1" }) as import("node:http").Server,
    serve({ fetch: authedHono.fetch, port: 0, hostname: "127.0.0.1" }) as import("node:http").Server,
  ];
  const urls = await Promise.all(servers.map(listen));
  const side = () => ({ plain: [] as number[], authed: [] as number[], ratio: [] as number[] });
  const out = { express: side(), hono: side() };
  for (const u of urls) await load(`${u}/hello`, headers, 5 * HTTP_PER_ROUND); // warm-up, not counted
  for (let round = 0; round < HTTP_ROUNDS; round++) {
    for (const [name, i] of [["express", 0], ["hono", 2]] as const) {
      const o = out[name];
      // Alternate which goes first, so neither side always follows the other.
      const first = round % 2 === 0;
      const a = first ? await load(`${urls[i]}/hello`, headers, HTTP_PER_ROUND) : 0;
      const b = await load(`${urls[i + 1]}/hello`, headers, HTTP_PER_ROUND);
      const c = first ? a : await load(`${urls[i]}/hello`, headers, HTTP_PER_ROUND);
      o.plain.push(c);
      o.authed.push(b);
      o.ratio.push(b / c);
    }
  }
  for (const s of servers) s.close();
  const sum = (o: ReturnType<typeof side>) => ({ plainUs: median(o.plain), authedUs: median(o.authed), ratio: median(o.ratio) });
  return { express: sum(out.express), hono: sum(out.hono) };
}

const v = await verifyBench();
console.log(
  `offline verify, DPoP-bound token (EdDSA token, EdDSA proof): SDK ${v.sdkUs.toFixed(1)} µs, jose bare JWS ${v.bareUs.toFixed(1)} µs, median of ${ROUNDS} interleaved round ratios ${v.ratio.toFixed(2)}x (goal <= 2.2x)`,
);
const m = await middlewareBench();
for (const [name, r] of Object.entries(m)) {
  console.log(
    `${name} hello world over loopback HTTP (8 in flight): without ${r.plainUs.toFixed(1)} µs/request, with agentAuth (offline, bearer EdDSA token) ${r.authedUs.toFixed(1)} µs/request, median of ${HTTP_ROUNDS} interleaved round ratios ${r.ratio.toFixed(2)}x (goal <= 1.15x)`,
  );
}
