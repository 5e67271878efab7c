// End-to-end test of the web client against a real `aether dev`, in Debian's Chromium driven
// by playwright-core. Run by scripts/test.sh (after `npm run build` and the Rust build):
//
//   AETHER_BIN=target/debug/aether node e2e/run.mjs [--update-screenshots]
//
// It starts the server on a free port with a fresh data directory, drives two users through
// sign-up, a server with an invite, chat, typing, presence, edit and delete, unread badges, an
// XSS payload, 1,000 messages of history, and a server restart in the middle of it all; prints
// a summary and exits non-zero at the first failed check. Screenshots go to e2e/out/ (and to
// docs/screenshots/ with --update-screenshots); measurements to e2e/out/metrics.json.

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const web = resolve(here, "..");
const repo = resolve(web, "..");
const out = join(here, "out");
const updateScreenshots = process.argv.includes("--update-screenshots");
const bin = resolve(repo, process.env.AETHER_BIN ?? join(process.env.CARGO_TARGET_DIR ?? "target", "debug", "aether"));
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const STEP_TIMEOUT = 15_000;

mkdirSync(out, { recursive: true });
const results = [];
const metrics = {};
const started = Date.now();
let server = null;
let browser = null;
const pages = [];

function log(text) {
  process.stdout.write(`${text}\n`);
}

async function step(name, body) {
  const t0 = Date.now();
  try {
    await body();
    results.push({ name, ok: true, ms: Date.now() - t0 });
    log(`  ok    ${name} (${Date.now() - t0} ms)`);
  } catch (error) {
    results.push({ name, ok: false, ms: Date.now() - t0 });
    log(`  FAIL  ${name}: ${error?.stack ?? error}`);
    throw error;
  }
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

const dataDir = mkdtempSync(join(tmpdir(), "aether-web-e2e-"));
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const serverLog = join(out, "server.log");
writeFileSync(serverLog, "");

async function startServer() {
  const args = [
    "dev",
    "--listen", `127.0.0.1:${port}`,
    "--data-dir", dataDir,
    "--web-dir", join(web, "dist"),
    "--shutdown-grace", "2",
    // Short-lived access tokens: the run goes through several silent refreshes.
    "--access-token-ttl", "20",
    // The test is one address doing the work of many users.
    "--rate-mutations-per-user", "off",
    "--rate-mutations-per-ip", "off",
    "--rate-logins-per-ip", "off",
    "--rate-logins-per-username", "off",
    "--rate-failed-logins-per-ip", "off",
    "--rate-query-cost-per-user", "off",
    "--rate-query-cost-per-ip", "off",
    "--rate-subscribes-per-connection", "off",
  ];
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } });
  const append = (chunk) => writeFileSync(serverLog, chunk, { flag: "a" });
  child.stdout.on("data", append);
  child.stderr.on("data", append);
  const exited = new Promise((res) => child.once("exit", (code, signal) => res({ code, signal })));
  for (let i = 0; i < 300; i++) {
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) return { child, exited };
    } catch {
      // not yet
    }
    if (child.exitCode !== null) throw new Error(`aether dev exited (${child.exitCode}); see ${serverLog}`);
    await sleep(100);
  }
  throw new Error("aether dev did not answer /healthz within 30 s");
}

async function stopServer() {
  if (!server) return;
  const { child, exited } = server;
  server = null;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check, timeout = STEP_TIMEOUT) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

async function gql(query, variables, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(`${base}/graphql`, { method: "POST", headers, body: JSON.stringify({ query, variables }) });
  const body = await r.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

/** The screens the docs show (the others stay in e2e/out/). */
const DOCS_SHOTS = new Set(["sign-in", "chat", "unread-badge", "server-settings", "phone-dark"]);

async function shot(page, name) {
  const file = join(out, `${name}.png`);
  await page.screenshot({ path: file });
  if (updateScreenshots && DOCS_SHOTS.has(name)) {
    const docs = join(repo, "docs", "screenshots");
    mkdirSync(docs, { recursive: true });
    copyFileSync(file, join(docs, `${name}.png`));
  }
}

/** The texts of the messages a page's open timeline shows, oldest first. */
const texts = (page) => page.$$eval('[data-testid="message"] .body', (els) => els.map((e) => e.textContent));
const messageIds = (page, channelId) =>
  page.evaluate((id) => window.aether.store.get().timelines[id]?.messages.map((m) => m.id) ?? [], channelId);

async function register(page, username, displayName) {
  await page.goto(base);
  await page.getByRole("tab", { name: "Create account" }).click();
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Display name").fill(displayName);
  await page.getByLabel("Password").fill(`${username}-password-123`);
  await page.getByRole("button", { name: "Create account", exact: true }).last().click();
}

async function send(page, text) {
  const box = page.getByRole("textbox", { name: "Message", exact: true });
  await box.fill(text);
  await box.press("Enter");
}

async function waitText(page, text) {
  await until(`"${text}" on screen`, async () => (await texts(page)).includes(text));
}

let exitCode = 0;
try {
  log(`web e2e: aether dev on ${base}, data in ${dataDir}`);
  // The bundle a first visit downloads, gzipped.
  const assets = join(web, "dist", "assets");
  const js = readdirSync(assets).filter((f) => f.endsWith(".js"));
  metrics.firstLoadJsGzipBytes = js.reduce((n, f) => n + gzipSync(readFileSync(join(assets, f)), { level: 9 }).length, 0);
  metrics.firstLoadCssGzipBytes = readdirSync(assets)
    .filter((f) => f.endsWith(".css"))
    .reduce((n, f) => n + gzipSync(readFileSync(join(assets, f)), { level: 9 }).length, 0);

  server = await startServer();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const viewport = { width: 1100, height: 680 };
  const ctxA = await browser.newContext({ viewport });
  const ctxB = await browser.newContext({ viewport });
  const a = await ctxA.newPage();
  const b = await ctxB.newPage();
  pages.push(a, b);
  for (const [who, page] of [["alice", a], ["bob", b]]) {
    page.on("pageerror", (e) => log(`  [${who} page error] ${e.message}`));
    page.on("dialog", (d) => void d.accept());
  }
  const suffix = Date.now().toString(36);
  const alice = `alice_${suffix}`;
  const bob = `bob_${suffix}`;
  let inviteCode = "";
  let serverId = "";
  let generalId = "";
  let randomId = "";

  await step("the page is served by aether dev with its bundle", async () => {
    const r = await fetch(`${base}/channels/x/y`);
    if (!r.ok || !(r.headers.get("content-type") ?? "").startsWith("text/html")) throw new Error("no SPA fallback");
    await a.goto(base);
    await a.getByRole("tab", { name: "Sign in" }).waitFor();
    await shot(a, "sign-in");
  });

  await step("two users register", async () => {
    await register(a, alice, "Alice");
    await a.getByRole("button", { name: "Create server" }).waitFor();
    await shot(a, "create-or-join");
    await register(b, bob, "Bob");
    await b.getByRole("button", { name: "Join server" }).waitFor();
  });

  await step("a bad sign-in shows a readable error", async () => {
    const c = await browser.newContext({ viewport });
    const p = await c.newPage();
    await p.goto(base);
    await p.getByLabel("Username").fill(alice);
    await p.getByLabel("Password").fill("wrong password");
    await p.getByRole("button", { name: "Sign in", exact: true }).last().click();
    const alert = await p.getByRole("alert").textContent({ timeout: STEP_TIMEOUT });
    if (!alert || alert.includes("{") || alert.includes("extensions")) throw new Error(`unreadable error: ${alert}`);
    await c.close();
  });

  await step("alice creates a server, a second channel and an invite", async () => {
    await a.getByLabel("Server name").fill("Test Lab");
    await a.getByRole("button", { name: "Create server" }).click();
    await a.getByRole("button", { name: "# general" }).waitFor();
    const st = await a.evaluate(() => window.aether.store.get());
    serverId = st.place.serverId;
    generalId = st.place.channelId;
    await a.getByRole("button", { name: "Settings of Test Lab" }).click();
    await a.getByLabel("New channel name").fill("random");
    await a.getByRole("button", { name: "Create channel" }).click();
    await a.getByRole("button", { name: "# random" }).waitFor();
    randomId = await a.evaluate(() => window.aether.store.get().place.channelId);
    await a.getByRole("button", { name: "Create invite" }).click();
    inviteCode = (await a.getByTestId("invite-code").textContent({ timeout: STEP_TIMEOUT })) ?? "";
    if (!inviteCode) throw new Error("no invite code");
    await shot(a, "server-settings");
    await a.getByRole("button", { name: "Close settings" }).click();
    await a.getByRole("button", { name: "# general" }).click();
  });

  await step("bob joins by invite", async () => {
    await b.getByLabel("Invite code").fill(inviteCode);
    await b.getByRole("button", { name: "Join server" }).click();
    await b.getByRole("button", { name: "# general" }).waitFor();
    await b.getByRole("button", { name: "# general" }).click();
  });

  await step("they chat, live both ways", async () => {
    await until("both connected", async () =>
      (await a.getByTestId("connection").textContent()) === "Connected" && (await b.getByTestId("connection").textContent()) === "Connected");
    await send(a, "Hello Bob");
    await waitText(b, "Hello Bob");
    await send(b, "Hi Alice");
    await waitText(a, "Hi Alice");
    // Bob's first message is how alice's member list learns that he joined.
    await until("bob in alice's member list", async () => (await a.locator(`[data-member="${bob}"]`).count()) === 1);
  });

  await step("alice sees bob typing", async () => {
    await b.getByRole("textbox", { name: "Message", exact: true }).pressSequentially("I am typing", { delay: 150 });
    await until("typing line", async () => (await a.getByTestId("typing").textContent())?.includes("Bob is typing"));
    await b.getByRole("textbox", { name: "Message", exact: true }).fill("");
  });

  await step("alice sees bob's presence change", async () => {
    await b.getByLabel("Status").selectOption("AWAY");
    await until("bob away", async () => (await a.locator(`[data-member="${bob}"] .role`).getAttribute("data-presence")) === "AWAY");
    await b.getByLabel("Status").selectOption("ONLINE");
    await until("bob online", async () => (await a.locator(`[data-member="${bob}"] .role`).getAttribute("data-presence")) === "ONLINE");
  });

  await step("alice edits and deletes; bob sees both", async () => {
    await send(a, "Typo mesage");
    await waitText(b, "Typo mesage");
    const row = a.locator('[data-testid="message"]', { hasText: "Typo mesage" });
    await row.hover();
    await row.getByRole("button", { name: "Edit message" }).click();
    await row.getByLabel("Edited message").fill("Typo message, fixed");
    await row.getByLabel("Edited message").press("Enter");
    await waitText(b, "Typo message, fixed");
    await until("edited mark", async () => (await b.locator('[data-testid="message"]', { hasText: "Typo message, fixed" }).textContent())?.includes("(edited)"));
    await send(a, "Delete me");
    await waitText(b, "Delete me");
    const del = a.locator('[data-testid="message"]', { hasText: "Delete me" });
    await del.hover();
    await del.getByRole("button", { name: "Delete message" }).click();
    await until("deleted on bob's side", async () => !(await texts(b)).includes("Delete me") && (await texts(b)).includes("This message was deleted."));
  });

  await step("an XSS payload renders as text", async () => {
    const payload = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b>bold</b>`;
    await send(a, payload);
    await waitText(b, payload);
    const injected = await b.evaluate(() => ({
      xss: window.__xss,
      tags: document.querySelectorAll('[data-testid="message"] img, [data-testid="message"] script, [data-testid="message"] b').length,
    }));
    if (injected.xss !== undefined || injected.tags !== 0) throw new Error(`payload was interpreted: ${JSON.stringify(injected)}`);
  });

  await step("unread badges appear live and clear when read", async () => {
    await a.getByRole("button", { name: "# random" }).click();
    await send(a, `@${bob} over here in random`);
    const badge = b.locator('[data-channel="random"] [data-testid="unread-badge"]');
    const mention = b.locator('[data-channel="random"] .badge.mention');
    await until("bob's unread and mention badges on #random", async () =>
      (await badge.textContent()) === "1" && (await mention.textContent()) === "@1");
    await shot(b, "unread-badge");
    await b.getByRole("button", { name: /# random/ }).click();
    // The mention shows as the display name, as text.
    await waitText(b, "@Bob over here in random");
    await until("badges cleared", async () => (await badge.count()) === 0 && (await mention.count()) === 0);
    // The read marker reached the server: a fresh read of the channel list has no badge.
    await b.evaluate(() => window.aether.reloadLists());
    await sleep(300);
    if ((await badge.count()) !== 0) throw new Error("badge came back after reload");
    await b.getByRole("button", { name: "# general" }).click();
    await a.getByRole("button", { name: "# general" }).click();
    await shot(a, "chat");
  });

  await step("every control has a name; settings open and close from the keyboard", async () => {
    const unnamed = (page) =>
      page.evaluate(() =>
        [...document.querySelectorAll("button, input, select, textarea, [role=tab]")]
          .filter((el) => {
            const labelled = el.getAttribute("aria-label") || el.getAttribute("aria-labelledby") || el.closest("label") ||
              (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.getAttribute("title");
            return !labelled && !(el.textContent ?? "").trim();
          })
          .map((el) => el.outerHTML.slice(0, 120)),
      );
    const missing = [...(await unnamed(a)), ...(await unnamed(b))];
    await a.getByRole("button", { name: "Settings of Test Lab" }).focus();
    await a.keyboard.press("Enter");
    await a.getByRole("dialog").waitFor();
    missing.push(...(await unnamed(a)));
    // Tab cycles inside the dialog: from the first control, Shift+Tab goes to the last, still inside.
    await a.getByRole("button", { name: "Close settings" }).focus();
    await a.keyboard.press("Shift+Tab");
    if (!(await a.evaluate(() => document.querySelector("[role=dialog]")?.contains(document.activeElement)))) throw new Error("focus left the dialog");
    await a.keyboard.press("Escape");
    await until("settings closed", async () => (await a.getByRole("dialog").count()) === 0);
    const back = () => a.evaluate(() => document.activeElement?.getAttribute("aria-label"));
    await until("focus back on the opener", async () => (await back()) === "Settings of Test Lab").catch(async () => {
      throw new Error(`focus did not return to the opener: ${await back()}`);
    });
    if (missing.length) throw new Error(`controls without a name:\n${missing.join("\n")}`);
  });

  await step("a direct conversation: opened, seen by the other, read", async () => {
    await a.getByRole("button", { name: "Message Bob" }).click();
    // The channel's composer is there too: wait until alice is in the conversation itself.
    await until("alice in the conversation", async () =>
      (await a.getByRole("navigation").getByRole("button", { name: /^Bob/ }).getAttribute("aria-current").catch(() => null)) === "page",
    );
    await a.getByRole("textbox", { name: "Message", exact: true }).waitFor();
    const dm = b.getByRole("navigation").getByRole("button", { name: /^Alice/ });
    await until("the conversation in bob's list", async () => (await dm.count()) === 1);
    await send(a, "psst, a direct message");
    await until("bob's unread badge on the conversation", async () => (await dm.getByTestId("unread-badge").textContent().catch(() => "")) === "1");
    await dm.click();
    await waitText(b, "psst, a direct message");
    await until("badge cleared", async () => (await dm.getByTestId("unread-badge").count()) === 0);
    await b.getByRole("button", { name: "Test Lab", exact: true }).click();
    await b.getByRole("button", { name: "# general" }).click();
    await a.getByRole("button", { name: "Test Lab", exact: true }).click();
    await a.getByRole("button", { name: "# general" }).click();
  });

  await step("a group conversation of three", async () => {
    const carol = `carol_${suffix}`;
    const reg = await gql(`mutation($u: String!, $p: String!) { register(input: {username: $u, password: $p, displayName: "Carol"}) { accessToken } }`, { u: carol, p: `${carol}-password-123` });
    await gql(`mutation($c: String!) { joinServer(inviteCode: $c) { id } }`, { c: inviteCode }, reg.register.accessToken);
    // Opening the server again reads its members.
    await a.getByRole("button", { name: "Test Lab", exact: true }).click();
    await until("carol in alice's member list", async () => (await a.locator(`[data-member="${carol}"]`).count()) === 1);
    await a.getByLabel("Add Bob to a group").check();
    await a.getByLabel("Add Carol to a group").check();
    await a.getByRole("button", { name: "Start a group with 2" }).click();
    await a.getByRole("heading", { name: /Bob, Carol|Carol, Bob/ }).waitFor({ timeout: STEP_TIMEOUT });
    const group = b.getByRole("navigation").getByRole("button", { name: /Alice, Carol|Carol, Alice/ });
    await until("the group in bob's list", async () => (await group.count()) === 1);
    await send(a, "hello, both of you");
    await group.click();
    await waitText(b, "hello, both of you");
    await b.getByRole("button", { name: "Test Lab", exact: true }).click();
    await b.getByRole("button", { name: "# general" }).click();
    await a.getByRole("button", { name: "Test Lab", exact: true }).click();
    await a.getByRole("button", { name: "# general" }).click();
  });

  await step("tokens outlive their 20 s lifetime silently", async () => {
    // Both users have been signed in longer than one access token lives by now.
    await until("20 s since sign-up", async () => Date.now() - started > 22_000, 30_000);
    await send(a, "Still signed in");
    await waitText(b, "Still signed in");
    for (const page of [a, b]) if ((await page.getByTestId("connection").textContent()) !== "Connected") throw new Error("socket dropped");
  });

  await step("a failed send stays in the composer with a retry; the server restarts; both resume", async () => {
    const beforeA = await messageIds(a, generalId);
    const beforeB = await messageIds(b, generalId);
    await stopServer();
    await until("alice sees the connection drop", async () => (await a.getByTestId("connection").textContent()) !== "Connected");
    await until("bob sees the connection drop", async () => (await b.getByTestId("connection").textContent()) !== "Connected");
    await send(a, "Sent during the outage");
    await a.getByRole("button", { name: "Retry" }).waitFor({ timeout: STEP_TIMEOUT });
    const kept = await a.getByRole("textbox", { name: "Message", exact: true }).inputValue();
    if (kept !== "Sent during the outage") throw new Error(`composer lost the text: ${kept}`);
    await shot(a, "reconnecting");
    // Bob stays cut off after the restart while alice sends, edits and deletes: he must
    // catch up from his subscription's cursor.
    if (process.env.E2E_DEBUG) b.on("websocket", (ws) => { log(`  [bob ws] ${ws.url()} opened ${Date.now() - t00}`); ws.on("close", () => log(`  [bob ws] closed ${Date.now() - t00}`)); });
    const t00 = Date.now();
    await ctxB.setOffline(true);
    server = await startServer();
    const t0 = Date.now();
    await until("alice reconnected", async () => (await a.getByTestId("connection").textContent()) === "Connected", 30_000);
    metrics.reconnectAfterRestartMs = Date.now() - t0;
    await a.getByRole("button", { name: "Retry" }).click();
    await until("the retried send went through", async () => (await a.getByRole("button", { name: "Retry" }).count()) === 0);
    await waitText(a, "Sent during the outage");
    const hello = a.locator('[data-testid="message"]', { hasText: "Hello Bob" });
    await hello.hover();
    await hello.getByRole("button", { name: "Edit message" }).click();
    await hello.getByLabel("Edited message").fill("Hello Bob, edited while you were away");
    await hello.getByLabel("Edited message").press("Enter");
    await waitText(a, "Hello Bob, edited while you were away");
    if (process.env.E2E_DEBUG) log(`  [bob state] ${await b.getByTestId("connection").textContent()} ${Date.now() - t00}`);
    if ((await b.getByTestId("connection").textContent()) === "Connected") throw new Error("bob was not kept offline");
    await ctxB.setOffline(false);
    await until("bob reconnected", async () => (await b.getByTestId("connection").textContent()) === "Connected", 30_000);
    await waitText(b, "Sent during the outage");
    await waitText(b, "Hello Bob, edited while you were away");
    await send(b, "Back again");
    await waitText(a, "Back again");
    await send(a, "And one more");
    await waitText(b, "And one more");
    for (const [who, page, before] of [["alice", a, beforeA], ["bob", b, beforeB]]) {
      const ids = await messageIds(page, generalId);
      if (new Set(ids).size !== ids.length) throw new Error(`${who} shows a message twice`);
      if (!before.every((id) => ids.includes(id))) throw new Error(`${who} lost a message`);
      if (ids.length !== before.length + 3) throw new Error(`${who} has ${ids.length} messages, expected ${before.length + 3}`);
      const shown = await texts(page);
      if (shown.filter((t) => t === "And one more").length !== 1) throw new Error(`${who} renders a message twice`);
    }
    const ta = await texts(a);
    const tb = await texts(b);
    if (JSON.stringify(ta) !== JSON.stringify(tb)) throw new Error(`timelines differ:\n${ta}\n${tb}`);
  });

  await step("a channel alice creates appears in bob's list live", async () => {
    const login = await gql(`mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { accessToken } }`, { u: alice, p: `${alice}-password-123` });
    await gql(`mutation($s: ID!) { createChannel(input: {serverId: $s, name: "news"}) { id } }`, { s: serverId }, login.login.accessToken);
    await b.getByRole("button", { name: "# news" }).waitFor({ timeout: STEP_TIMEOUT });
  });

  await step("a message from someone bob blocked shows without its words until he unblocks", async () => {
    const login = await gql(`mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { accessToken } }`, { u: bob, p: `${bob}-password-123` });
    const token = login.login.accessToken;
    const aliceId = await a.evaluate(() => window.aether.store.get().user.id);
    await gql(`mutation($u: ID!) { blockUser(userId: $u) }`, { u: aliceId }, token);
    await a.getByRole("button", { name: "# general" }).click();
    await b.getByRole("button", { name: "# general" }).click();
    await send(a, "Words bob chose not to read");
    await waitText(a, "Words bob chose not to read");
    await waitText(b, "A message from someone you blocked.");
    if ((await texts(b)).includes("Words bob chose not to read")) throw new Error("bob saw the words of someone he blocked");
    await gql(`mutation($u: ID!) { unblockUser(userId: $u) }`, { u: aliceId }, token);
  });

  await step("1,000 messages: virtualised, paged backwards to the first", async () => {
    const login = await gql(`mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { accessToken } }`, { u: alice, p: `${alice}-password-123` });
    const token = login.login.accessToken;
    const created = await gql(`mutation($s: ID!) { createChannel(input: {serverId: $s, name: "bulk"}) { id } }`, { s: serverId }, token);
    const bulk = created.createChannel.id;
    const BATCH = 25;
    for (let i = 0; i < 1000; i += BATCH) {
      const fields = Array.from({ length: BATCH }, (_, k) => `m${k}: sendMessage(input: {channelId: $c, body: "bulk ${i + k + 1}"}) { id }`).join(" ");
      await gql(`mutation($c: ID!) { ${fields} }`, { c: bulk }, token);
    }
    await b.evaluate(() => window.aether.reloadLists());
    await b.getByRole("button", { name: "# bulk" }).click();
    await waitText(b, "bulk 1000");
    const scroller = b.getByTestId("scroller");
    const frames = [];
    await until("the first message, scrolling up", async () => {
      const gaps = await scroller.evaluate(async (el) => {
        // Scroll up in steps, as a reader would, timing the frames.
        const times = [];
        let last = performance.now();
        for (let i = 0; i < 20; i++) {
          el.scrollTop = Math.max(0, el.scrollTop - 400);
          await new Promise((r) => requestAnimationFrame(r));
          const now = performance.now();
          times.push(now - last);
          last = now;
        }
        return times;
      });
      frames.push(...gaps);
      return (await texts(b)).includes("bulk 1");
    }, 60_000);
    const total = await b.evaluate((id) => window.aether.store.get().timelines[id].messages.length, bulk);
    const rows = await b.locator('[data-testid="message"]').count();
    if (total !== 1000) throw new Error(`loaded ${total} of 1000`);
    if (rows > 80) throw new Error(`${rows} rows in the DOM: not virtualised`);
    frames.sort((x, y) => x - y);
    metrics.timelineRowsInDom = rows;
    metrics.scrollFrameMsP50 = Math.round(frames[Math.floor(frames.length * 0.5)]);
    metrics.scrollFrameMsP95 = Math.round(frames[Math.floor(frames.length * 0.95)]);
  });

  await step("cold load to the first message (new browser context, empty cache)", async () => {
    const login = await gql(`mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { refreshToken user { id username displayName } } }`, { u: bob, p: `${bob}-password-123` });
    const saved = JSON.stringify({ refreshToken: login.login.refreshToken, user: login.login.user });
    const c = await browser.newContext({ viewport });
    await c.addInitScript((value) => sessionStorage.setItem("aether.session", value), saved);
    const p = await c.newPage();
    await p.goto(`${base}/channels/${serverId}/${generalId}`);
    await p.locator('[data-testid="message"]').first().waitFor({ timeout: STEP_TIMEOUT });
    metrics.coldLoadToFirstMessageMs = Math.round(await p.evaluate(() => performance.now()));
    const transferred = await p.evaluate(() =>
      performance.getEntriesByType("resource").filter((e) => e.name.endsWith(".js")).reduce((n, e) => n + e.transferSize, 0));
    metrics.firstLoadJsTransferredBytes = transferred;
    // Where the time went: the script in hand, then the API round trips.
    const timing = await p.evaluate(() => {
      const entries = performance.getEntriesByType("resource");
      const script = entries.find((e) => e.name.endsWith(".js"));
      const api = entries.filter((e) => e.name.endsWith("/graphql"));
      return { script: script?.responseEnd ?? 0, firstApi: api[0]?.startTime ?? 0, apiCalls: api.length };
    });
    metrics.coldLoadScriptLoadedMs = Math.round(timing.script);
    metrics.coldLoadFirstApiCallMs = Math.round(timing.firstApi);
    await c.close();
  });

  await step("phone width and dark theme", async () => {
    const c = await browser.newContext({ viewport: { width: 390, height: 760 }, colorScheme: "dark" });
    const login = await gql(`mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { refreshToken user { id username displayName } } }`, { u: alice, p: `${alice}-password-123` });
    await c.addInitScript((value) => sessionStorage.setItem("aether.session", value), JSON.stringify({ refreshToken: login.login.refreshToken, user: login.login.user }));
    const p = await c.newPage();
    await p.goto(`${base}/channels/${serverId}/${generalId}`);
    await p.locator('[data-testid="message"]').first().waitFor({ timeout: STEP_TIMEOUT });
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    if (overflow) throw new Error("the page is wider than a phone");
    await shot(p, "phone-dark");
    await p.getByRole("button", { name: "Menu" }).click();
    await p.getByRole("button", { name: "# random" }).waitFor();
    await shot(p, "phone-menu");
    await c.close();
  });
  await step("signing out everywhere sends the open tab to sign-in", async () => {
    const login = await gql(`mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { accessToken } }`, { u: bob, p: `${bob}-password-123` });
    await gql(`mutation { logoutEverywhere }`, {}, login.login.accessToken);
    await b.getByRole("tab", { name: "Sign in" }).waitFor({ timeout: STEP_TIMEOUT });
    if (await b.evaluate(() => sessionStorage.getItem("aether.session"))) throw new Error("the ended session was kept");
  });
  await step("GraphiQL at /graphql runs a query, loading nothing from elsewhere and breaking no CSP rule", async () => {
    const c = await browser.newContext({ viewport });
    const p = await c.newPage();
    const problems = [];
    p.on("console", (m) => { if (m.type() === "error") problems.push(m.text().slice(0, 300)); });
    p.on("pageerror", (e) => problems.push(e.message));
    p.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) problems.push(`a request to ${r.url()}`); });
    await p.goto(`${base}/graphql`);
    await p.locator(".graphiql-container").waitFor({ timeout: STEP_TIMEOUT });
    // The editor mounts after the container: wait for it, not only for the page.
    await p.locator(".graphiql-query-editor .CodeMirror").waitFor({ timeout: STEP_TIMEOUT });
    await p.evaluate(() => document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue("{ __typename }"));
    await p.locator(".graphiql-execute-button").click();
    await until("the query's result", async () =>
      (await p.evaluate(() => document.querySelector(".result-window .CodeMirror")?.CodeMirror?.getValue() ?? "")).includes("QueryRoot"));
    await shot(p, "graphiql");
    await c.close();
    if (problems.length) throw new Error(problems.join("\n"));
  });
} catch {
  exitCode = 1;
  // What each user saw when it failed.
  for (const [i, page] of pages.entries()) await page.screenshot({ path: join(out, `failure-${i}.png`) }).catch(() => undefined);
} finally {
  await browser?.close().catch(() => undefined);
  await stopServer().catch(() => undefined);
  rmSync(dataDir, { recursive: true, force: true });
  writeFileSync(join(out, "metrics.json"), `${JSON.stringify(metrics, null, 2)}\n`);
  const passed = results.filter((r) => r.ok).length;
  log("");
  log(`web e2e summary: ${passed}/${results.length} steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s${exitCode ? " (stopped at the first failure)" : ""}`);
  for (const [k, v] of Object.entries(metrics)) log(`  ${k}: ${v}`);
  if (exitCode) log(`server log: ${serverLog}`);
}
process.exit(exitCode);
