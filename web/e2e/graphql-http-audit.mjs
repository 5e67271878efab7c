// The GraphQL-over-HTTP conformance audit of `graphql-http` (the specification's reference
// implementation) against a real `aether dev`: every audit must pass, with no warning and no
// error. Run by scripts/test.sh after the browser test; AETHER_BIN names the binary.
//
//   AETHER_BIN=target/debug/aether node web/e2e/graphql-http-audit.mjs

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { auditServer } from "graphql-http";

const bin = process.env.AETHER_BIN;
if (!bin) {
  console.error("AETHER_BIN must name the aether binary");
  process.exit(2);
}

const port = await new Promise((res, rej) => {
  const s = createServer();
  s.once("error", rej);
  s.listen(0, "127.0.0.1", () => {
    const { port } = s.address();
    s.close(() => res(port));
  });
});
const base = `http://127.0.0.1:${port}`;
const dataDir = mkdtempSync(join(tmpdir(), "aether-graphql-http-"));
let log = "";
const child = spawn(bin, ["dev", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--shutdown-grace", "1"], {
  stdio: ["ignore", "pipe", "pipe"],
});
child.stdout.on("data", (chunk) => (log += chunk));
child.stderr.on("data", (chunk) => (log += chunk));

let code = 1;
try {
  let up = false;
  for (let i = 0; i < 300 && !up; i++) {
    try {
      up = (await fetch(`${base}/healthz`)).ok;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
    if (child.exitCode !== null) throw new Error(`aether dev exited (${child.exitCode}):\n${log}`);
  }
  if (!up) throw new Error(`aether dev did not answer within 30 s:\n${log}`);

  const results = await auditServer({ url: `${base}/graphql` });
  const count = { ok: 0, notice: 0, warn: 0, error: 0 };
  for (const result of results) {
    count[result.status] += 1;
    if (result.status !== "ok") {
      let body = "";
      try {
        body = await result.response.text();
      } catch {
        // already read
      }
      console.log(`  ${result.status.padEnd(6)} ${result.id} ${result.name}\n         ${result.reason}\n         status ${result.response.status}: ${body.slice(0, 300)}`);
    }
  }
  console.log(
    `graphql-http audit: ${results.length} audits: ${count.ok} ok, ${count.notice} notice, ${count.warn} warn, ${count.error} error`,
  );
  code = count.warn + count.error === 0 ? 0 : 1;
} catch (error) {
  console.error(String(error));
} finally {
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(code);
