// Headless Chromium for Herald's browser tests, driven by Playwright (`playwright-core`, no
// browser download: Debian's `chromium` package is the browser). Shared by every test that needs a
// real browser; scripts/services.sh installs `playwright-core` into .tools/node_modules.
//
//   import { launch } from "./chromium.mjs";
//   const browser = await launch();            // a fresh profile, no background networking
//   const page = await browser.newPage({ report: (event) => console.log(JSON.stringify(event)) });
//   ...
//   await browser.close();                     // also removes the profile
//
// HERALD_CHROMIUM overrides the browser's path (default /usr/bin/chromium).

import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const TOOLS = join(ROOT, ".tools");
export const CHROMIUM = process.env.HERALD_CHROMIUM || "/usr/bin/chromium";

// Without the background-networking flags Chromium reaches out to the (closed) network at start.
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// playwright-core from .tools/node_modules (ESM resolution would not look there).
export function playwright() {
  const require = createRequire(join(TOOLS, "package.json"));
  try {
    return require("playwright-core");
  } catch (e) {
    throw new Error(
      `playwright-core is not installed in ${TOOLS}/node_modules (${e.code ?? e.message}): ` +
        "run `bash -c 'source scripts/services.sh && herald_install_tools'` or ./scripts/test",
    );
  }
}

// Launches Chromium with a fresh user data dir. `newPage({ report })` gives a page on which
// `window.__report(event)` calls `report(event)` in Node; uncaught page errors are reported as
// `{ kind: "pageerror", message }`, console warnings and errors as `{ kind: "console", type, text }`.
// `close()` closes the browser and removes the profile.
export async function launch({ timeoutMs = 20000 } = {}) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set HERALD_CHROMIUM)`);
  }
  const profile = mkdtempSync(join(tmpdir(), "herald-chromium-"));
  let context;
  try {
    context = await playwright().chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: timeoutMs,
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  return {
    context,
    async newPage({ report } = {}) {
      const page = await context.newPage();
      if (report) {
        await page.exposeFunction("__report", (event) => report(event));
        page.on("pageerror", (e) => report({ kind: "pageerror", message: String(e) }));
        page.on("console", (m) => {
          if (m.type() === "warning" || m.type() === "error") report({ kind: "console", type: m.type(), text: m.text() });
        });
      }
      return page;
    },
    async close() {
      try {
        await context.close();
      } finally {
        rmSync(profile, { recursive: true, force: true });
      }
    },
  };
}
