// Runs docs/clients.md's browser snippet in headless Chromium, for tests/tests/clients_doc.rs.
//
//   node tests/browser/clients_doc.mjs SPEC.json
//
// SPEC: {"url": <the page to open>, "pages": [{"name", "snippet", "token", "chat_token", "sid", "user_id"?}]}.
// Each page opens `url` and runs its `snippet` (the doc's text, its URLs pointed at the server
// under test) as a module script, after the doc's placeholders: `getAccessToken()` answers `token`,
// `chatToken`, `sid` and `userId` are given, and `show`, `render` and `scheduleReconnect` report their calls.
// Every WebSocket the page opens reports what it sends and receives. Each report is one JSON line
// on stdout, `{"page": <name>, "kind": …}`; `{"kind":"ready"}` once every page runs its snippet.
// The browser closes when stdin ends; then `{"kind":"closed"}` and exit 0.

import { readFileSync } from "node:fs";
import { launch } from "./chromium.mjs";

const specPath = process.argv[2];
if (!specPath) {
  console.error("usage: node tests/browser/clients_doc.mjs SPEC.json");
  process.exit(2);
}
const spec = JSON.parse(readFileSync(specPath, "utf8"));
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");

// Installed before any page script: every WebSocket reports its traffic.
function recordWebSockets() {
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      const url = this.url;
      this.addEventListener("open", () => window.__report({ kind: "open", url, protocol: this.protocol }));
      this.addEventListener("message", (e) =>
        window.__report({ kind: "frame", url, data: typeof e.data === "string" ? e.data : "<binary frame>" }),
      );
      this.addEventListener("close", (e) => window.__report({ kind: "close", url, code: e.code }));
    }
    send(data) {
      window.__report({ kind: "sent", url: this.url, data: String(data) });
      return super.send(data);
    }
  };
}

// The doc's placeholders, defined before its snippet in the same module script.
function placeholders(p) {
  return [
    `const getAccessToken = async () => ${JSON.stringify(p.token)};`,
    `const chatToken = ${JSON.stringify(p.chat_token)};`,
    `const sid = ${JSON.stringify(p.sid)};`,
    `const userId = ${JSON.stringify(p.user_id ?? null)};`,
    `const show = (title, body) => window.__report({ kind: "show", title, body });`,
    `const render = (result) => window.__report({ kind: "render", result });`,
    `const scheduleReconnect = (code) => window.__report({ kind: "reconnect", code });`,
    "",
  ].join("\n");
}

const browser = await launch();
let exitCode = 0;
try {
  for (const p of spec.pages) {
    const page = await browser.newPage({ report: (event) => emit({ page: p.name, ...event }) });
    await page.addInitScript(recordWebSockets);
    const response = await page.goto(spec.url);
    if (!response || !response.ok()) throw new Error(`${spec.url} answered ${response && response.status()}`);
    await page.addScriptTag({ type: "module", content: placeholders(p) + p.snippet });
  }
  emit({ kind: "ready" });
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on("end", resolve));
} catch (e) {
  console.error(e);
  exitCode = 1;
} finally {
  await browser.close();
}
emit({ kind: "closed" });
process.exit(exitCode);
