// The real registry for integration tests: `$BONAFIDE_BIN serve` on 127.0.0.1:0 with a
// fresh data dir, killed at the end. Fails loudly without BONAFIDE_BIN.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Registry {
  url: string;
  adminKey: string;
  stop(): Promise<void>;
  api<T = any>(method: string, path: string, key: string | undefined, body?: unknown): Promise<{ status: number; body: T }>;
}

export function registryBin(): string {
  const bin = process.env.BONAFIDE_BIN;
  if (!bin) throw new Error("BONAFIDE_BIN is not set: point it at a `bonafide` binary (scripts/test-sdk-typescript.sh does)");
  if (!existsSync(bin)) throw new Error(`BONAFIDE_BIN=${bin} does not exist`);
  return bin;
}

export async function startRegistry(extra: string[] = []): Promise<Registry> {
  const bin = registryBin();
  const made = spawnSync(bin, ["keys", "new-admin-key"], { encoding: "utf8" });
  const adminKey = made.stdout.trim();
  if (made.status !== 0 || !adminKey.startsWith("bfk_")) throw new Error(`\`${bin} keys new-admin-key\` failed: ${made.stderr}`);
  const dir = mkdtempSync(join(tmpdir(), "bonafide-sdk-ts-"));
  const child: ChildProcess = spawn(
    bin,
    ["serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--signing-alg", "EdDSA", "--status-list-ttl", "1s", "--log-format", "text", ...extra],
    { env: { ...process.env, BONAFIDE_ADMIN_KEY: adminKey }, stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the registry did not start within 30 s:\n${stderr}`)), 30_000);
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
      const m = /bonafide listening on (http:\/\/[0-9.:]+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the registry exited (${code}) before listening:\n${stderr}`));
    });
  });
  child.removeAllListeners("exit");
  return {
    url,
    adminKey,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
    async api(method, path, key, body) {
      const headers: Record<string, string> = {};
      if (key) headers.authorization = `Bearer ${key}`;
      if (body !== undefined) headers["content-type"] = "application/json";
      const resp = await fetch(`${url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await resp.text();
      return { status: resp.status, body: text ? JSON.parse(text) : undefined };
    },
  };
}
