// One runner per kind of conformance file. A runner refuses a case kind or a member
// it does not know, so a vector that grows a new dimension cannot pass unread.

import assert from "node:assert/strict";
import type { TestContext } from "node:test";
import { verifyProof } from "../src/dpop.js";
import { VerifyError } from "../src/errors.js";
import { Decimal, moneyFromJson, Policy } from "../src/policy/index.js";
import { KeySet, verifyToken } from "../src/token.js";

export interface Runner {
  matches(rel: string): boolean;
  run(doc: any, t: TestContext, rel: string): Promise<void>;
}

function only(obj: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(obj)) assert.ok(allowed.includes(k), `${where}: unknown member \`${k}\``);
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "valid";
  } catch (e) {
    if (e instanceof VerifyError) return e.code;
    if (e instanceof Error && "code" in e && typeof (e as { code: unknown }).code === "string") return (e as { code: string }).code;
    throw e;
  }
}

const tokens: Runner = {
  matches: (rel) => rel === "tokens.json",
  async run(doc, t) {
    only(doc, ["description", "issuer", "jwks", "leeway_secs", "max_lifetime_secs", "now", "cases"], "tokens.json");
    const keys = await KeySet.fromJwks(doc.jwks);
    for (const c of doc.cases) {
      await t.test(c.name, async () => {
        only(c, ["audience", "expect", "name", "rule", "token"], c.name);
        const opts = {
          issuers: [doc.issuer],
          audience: c.audience ?? undefined,
          leewaySecs: doc.leeway_secs,
          maxLifetimeSecs: doc.max_lifetime_secs,
        };
        if (c.expect.valid) {
          only(c.expect, ["valid", "sub", "scopes"], c.name);
          const claims = await verifyToken(c.token, keys, opts, doc.now);
          assert.equal(claims.sub, c.expect.sub);
          assert.deepEqual(claims.agent.scopes, c.expect.scopes);
        } else {
          only(c.expect, ["valid", "code"], c.name);
          assert.equal(await code(verifyToken(c.token, keys, opts, doc.now)), c.expect.code, c.rule);
        }
      });
    }
  },
};

const dpop: Runner = {
  matches: (rel) => rel === "dpop.json",
  async run(doc, t) {
    only(doc, ["access_token", "description", "jkt", "leeway_secs", "max_age_secs", "now", "cases"], "dpop.json");
    for (const c of doc.cases) {
      await t.test(c.name, async () => {
        only(c, ["expect", "htm", "htu", "name", "proof"], c.name);
        const check = {
          htm: c.htm,
          htu: c.htu,
          jkt: doc.jkt,
          accessToken: doc.access_token,
          now: doc.now,
          maxAge: doc.max_age_secs,
          leeway: doc.leeway_secs,
        };
        if (c.expect.valid) {
          only(c.expect, ["valid"], c.name);
          const v = await verifyProof(c.proof, check);
          assert.equal(v.jkt, doc.jkt);
        } else {
          only(c.expect, ["valid", "code", "why"], c.name);
          assert.equal(await code(verifyProof(c.proof, check)), c.expect.code, c.expect.why);
        }
      });
    }
  },
};

const policies: Runner = {
  matches: (rel) => /^policies\/[^/]+\.json$/.test(rel),
  async run(doc, t, rel) {
    only(doc, ["description", "policy", "cases"], rel);
    const policy = await Policy.fromValue(doc.policy);
    for (const c of doc.cases) {
      await t.test(c.name, () => {
        only(c, ["name", "request", "now", "spent", "allowed", "reasons", "remaining", "spend_key"], c.name);
        only(c.request, ["action", "resource", "amount", "currency"], c.name);
        const money =
          c.request.amount !== undefined || c.request.currency !== undefined
            ? moneyFromJson(c.request.amount, c.request.currency)
            : undefined;
        const spent = parseDecimal(c.spent ?? "0");
        const d = policy.evaluate({ action: c.request.action, resource: c.request.resource, money }, Date.parse(c.now), spent);
        assert.equal(d.allowed, c.allowed);
        assert.deepEqual(
          d.reasons.map((r) => r.code),
          c.reasons,
        );
        if (c.remaining !== undefined) assert.deepEqual(d.remaining ?? null, c.remaining);
        if (c.spend_key !== undefined) assert.equal(d.spend?.period.key ?? null, c.spend_key);
      });
    }
  },
};

function parseDecimal(s: string): Decimal {
  const [i, f = ""] = s.split(".");
  return new Decimal(BigInt(`${i}${f}`), f.length);
}

export const CONFORMANCE_RUNNERS: Runner[] = [tokens, dpop, policies];
