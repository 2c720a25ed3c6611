// Drives the admin page (GET /admin) in headless Chromium as a manager would, for
// tests/tests/admin_page.rs.
//
//   node tests/browser/admin.mjs SPEC.json
//
// SPEC: {"url": <herald-local's base URL>, "flow": "platform" | "mailings" | "phone",
//        "publisher": <a publisher token, for the events a flow sends through the API>,
//        "screenshots"?: <a directory: the PNG of each step in SCREENS goes there>}.
// Every step reports what the page shows as one JSON line on stdout, `{"kind":"step","name",…}`;
// at the end `{"kind":"requests","failed":[{method,path,status}],"before_sign_in":[paths]}`,
// `{"kind":"console",…}` / `{"kind":"pageerror",…}` for anything the page logged, then
// `{"kind":"done"}`. A step that does not see what it waits for fails the script (exit 1) with
// `{"kind":"failed","step","message"}`.

import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { launch } from "./chromium.mjs";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const WAIT = 10000;

const browser = await launch();
const page = await browser.newPage({ report: emit });
page.setDefaultTimeout(WAIT);
if (spec.flow === "phone") await page.setViewportSize({ width: 390, height: 844 });
else await page.setViewportSize({ width: 1280, height: 900 });

// Every request the page makes, and every answer of 400 or more.
const failed = [];
const requested = [];
let signedIn = false;
const beforeSignIn = [];
page.on("request", (r) => {
  const path = new URL(r.url()).pathname;
  requested.push(`${r.method()} ${path}`);
  if (!signedIn) beforeSignIn.push(`${r.method()} ${path}`);
});
page.on("response", (r) => {
  if (r.status() >= 400) failed.push({ method: r.request().method(), path: new URL(r.url()).pathname, status: r.status() });
});

// The steps whose screen goes into docs/admin/ (HERALD_ADMIN_SCREENSHOTS=docs/admin when running
// tests/tests/admin_page.rs).
const SCREENS = new Set([
  "signin",
  "template-syntax-error",
  "template-fixed",
  "templates-list",
  "user-ada",
  "event-types",
  "history",
  "outbox",
  "mailing-compose",
  "mailing-recurring-compose",
  "mailing-recurring",
  "mailings-list",
  "mailing-history",
  "phone-template-form",
]);

let current = "start";
async function step(name, fn) {
  current = name;
  const seen = (await fn()) || {};
  // Every control on the screen has a label (or an accessible name of its own).
  seen.unlabelled = await page.$$eval("input, select, textarea, button", (els) =>
    els
      .filter((el) => !el.closest("[hidden]") && el.type !== "hidden")
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !(el.tagName === "BUTTON" && el.textContent.trim()))
      .map((el) => el.outerHTML.slice(0, 120)),
  );
  if (spec.screenshots && SCREENS.has(name)) {
    mkdirSync(spec.screenshots, { recursive: true });
    await page.screenshot({ path: join(spec.screenshots, `${name}.png`), fullPage: true });
  }
  emit({ kind: "step", name, ...seen });
}

/** Follows a link of the navigation bar. */
const nav = (name) => page.locator("#nav").getByRole("link", { name, exact: true }).click();
const text = (sel) => page.locator(sel).first().innerText();
const heading = () => text("main h1");
/** Waits until `sel`'s text contains `want`, and answers that text. */
async function waitText(sel, want) {
  await page.waitForFunction(
    ([s, w]) => {
      const el = document.querySelector(s);
      return el && !el.hidden && el.textContent.includes(w);
    },
    [sel, want],
    { timeout: WAIT },
  );
  return text(sel);
}
async function api(method, path, token, body) {
  const res = await fetch(spec.url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}
/** The rows of the table in main, as arrays of cell texts. */
async function rows() {
  return page.$$eval("main table tbody tr", (trs) => trs.map((tr) => [...tr.querySelectorAll("td,th")].map((td) => td.innerText.trim())));
}
async function signIn() {
  await page.goto(`${spec.url}/admin`);
  await waitText("main h1", "Sign in");
  // Keyboard only: the development sign-in button is reachable with Tab and pressed with Enter.
  const button = page.getByRole("button", { name: "Sign in as developer" });
  for (let i = 0; i < 20 && !(await button.evaluate((b) => b === document.activeElement)); i++) await page.keyboard.press("Tab");
  const focused = await button.evaluate((b) => b === document.activeElement);
  signedIn = true;
  await page.keyboard.press("Enter");
  await waitText("main h1", "Templates");
  return { focused_by_tab: focused, nav: await page.locator("#nav a").allInnerTexts() };
}

try {
  if (spec.flow === "platform") await platform();
  else if (spec.flow === "mailings") await mailings();
  else if (spec.flow === "phone") await phone();
  else throw new Error(`unknown flow ${spec.flow}`);
  emit({ kind: "requests", failed, before_sign_in: beforeSignIn, requested });
  emit({ kind: "done" });
} catch (e) {
  emit({ kind: "requests", failed, before_sign_in: beforeSignIn, requested });
  emit({ kind: "failed", step: current, message: String(e && e.message ? e.message : e), main: await text("main").catch(() => "") });
  await browser.close();
  process.exit(1);
}

// Waits for stdin to end (the test's signal), then closes.
process.stdin.resume();
await new Promise((resolve) => process.stdin.on("end", resolve));
await browser.close();

async function platform() {
  await step("signin", async () => {
    await page.goto(`${spec.url}/admin`);
    await waitText("main h1", "Sign in");
    return { heading: await heading() };
  });
  await step("templates-empty", signIn);
  await step("templates-empty-state", async () => ({ empty: await text("main .empty") }));

  await step("template-new", async () => {
    await page.getByRole("link", { name: "New template" }).click();
    await waitText("main h1", "New template");
    const channel = await page.getByLabel("Channel").inputValue();
    await page.getByLabel("Name", { exact: true }).fill("welcome");
    await page.getByLabel("Subject (email) / title (push)").fill("Hi {{ user.name }}");
    await page.getByLabel("Body", { exact: true }).fill("Hello {{ user.name }},\n{{ data.film }} is out.");
    await page.getByLabel("HTML (email only)").fill("<p>Hello <b>{{ user.name }}</b>: {{ data.film }}</p>");
    const body = await waitText("#preview-body", "Arrival");
    return { default_channel: channel, preview_body: body, preview_subject: await text("#preview-subject") };
  });

  await step("template-syntax-error", async () => {
    await page.getByLabel("Body", { exact: true }).fill("Hello {{ user.name }},\n{% if data.film %}{{ data.film }} is out.");
    const error = await waitText("main .error:not([hidden])", "line");
    const invalid = await page.getByLabel("Body", { exact: true }).getAttribute("aria-invalid");
    return { error, body_invalid: invalid };
  });

  await step("template-fixed", async () => {
    await page.getByLabel("Body", { exact: true }).fill("Hello {{ user.name }},\n{% if data.film %}{{ data.film }} is out.{% endif %}");
    const body = await waitText("#preview-body", "Arrival is out.");
    const errorsShown = await page.locator("main .error:not([hidden])").count();
    await page.getByRole("button", { name: "Create" }).click();
    await waitText("main h1", "Template welcome");
    const id = decodeURIComponent(new URL(page.url()).hash.replace("#/templates/", ""));
    return { id, preview_body: body, errors_shown: errorsShown, variables: await text("#variables") };
  });

  await step("templates-list", async () => {
    await nav("Templates");
    await waitText("main h1", "Templates");
    await page.locator("main table").waitFor();
    return { rows: await rows() };
  });

  await step("user-ada", async () => {
    await nav("Users");
    await waitText("main h1", "Users");
    await page.getByLabel("User id").fill("ada");
    await page.getByLabel("User id").press("Enter");
    await waitText("main h1", "User ada");
    const empty = await text("main .empty");
    await page.getByLabel("Name", { exact: true }).fill("Ada Lovelace");
    await page.getByLabel("Email", { exact: true }).fill("ada@example.com");
    await page.getByLabel("Time zone (IANA)").fill("Europe/Berlin");
    await page.getByLabel("sms", { exact: true }).uncheck();
    await page.getByLabel("From").fill("22:00");
    await page.getByLabel("Until").fill("07:00");
    await page.getByRole("button", { name: "Save" }).click();
    const toast = await waitText("#toast", "Saved user ada");
    return { empty, toast };
  });

  await step("user-bad-phone", async () => {
    await page.getByLabel("Phone (E.164)").fill("12345");
    await page.getByRole("button", { name: "Save" }).click();
    return { error: await waitText("main .error:not([hidden])", "phone") };
  });

  await step("event-types", async () => {
    await page.getByLabel("Phone (E.164)").fill("");
    await nav("Event types");
    await waitText("main h1", "Event types");
    const empty = await text("main .empty");
    await page.getByLabel("Event name").fill("film.added");
    await page.getByLabel("email template").selectOption("welcome");
    await page.getByLabel("Critical: sent inside quiet hours too").check();
    await page.getByRole("button", { name: "Save event type" }).click();
    await waitText("#toast", "Saved event type film.added");
    await page.locator("main table").waitFor();
    return { empty, rows: await rows() };
  });

  // A fixed event through the publisher API, then its history and outbox in the page.
  const sent = await api("POST", "/events", spec.publisher, { event: "film.added", user_id: "ada", data: { film: "Dune" } });
  emit({ kind: "event", status: sent.status, body: sent.body });

  await step("history", async () => {
    await nav("History");
    await waitText("main h1", "History");
    const empty = await text("main .empty");
    await page.getByLabel("User id").fill("ada");
    await page.getByLabel("Channel").selectOption("email");
    await page.getByRole("button", { name: "Show history" }).click();
    await page.locator("main table tbody tr").first().waitFor();
    return { empty, hash: new URL(page.url()).hash, rows: await rows() };
  });

  await step("history-filtered-out", async () => {
    await page.getByLabel("Status").selectOption("failed");
    await page.getByRole("button", { name: "Show history" }).click();
    return { empty: await waitText("main .empty", "Nothing matches") };
  });

  await step("outbox", async () => {
    await nav("Outbox");
    await waitText("main h1", "Outbox");
    await page.locator("main table").waitFor();
    return { rows: await rows() };
  });

  await step("signout", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await waitText("main h1", "Sign in");
    return { nav_hidden: await page.locator("#nav").isHidden() };
  });
}

async function mailings() {
  await step("mailings-signin", signIn);
  await step("mailings-empty", async () => {
    await nav("Mailings");
    await waitText("main h1", "Mailings");
    return { empty: await text("main .empty") };
  });

  await step("mailing-compose", async () => {
    await page.getByRole("link", { name: "Compose a mailing" }).click();
    await waitText("main h1", "Compose a mailing");
    await page.getByLabel("Name", { exact: true }).fill("December news");
    await page.getByLabel("Template", { exact: true }).selectOption("news");
    const email = await page.getByLabel("email", { exact: true }).isChecked();
    await page.getByLabel("User ids (comma separated)", { exact: true }).fill("ada, bob");
    await page.getByLabel("Data (JSON object, the template's data)", { exact: true }).fill('{"film": "Dune"}');
    await page.getByRole("button", { name: "Save mailing" }).click();
    await waitText("main h1", "Mailing December news");
    const id = decodeURIComponent(new URL(page.url()).hash.replace("#/mailings/", ""));
    // Reload the mailing until it is sent.
    let status = "";
    for (let i = 0; i < 40 && status !== "sent"; i++) {
      await page.reload();
      await waitText("main h1", "Mailing December news");
      status = await text("main .badge");
      if (status !== "sent") await page.waitForTimeout(250);
    }
    return { id, email_checked_by_template: email, status, table: await rows() };
  });

  await step("mailing-outbox", async () => {
    await nav("Outbox");
    await waitText("main h1", "Outbox");
    await page.locator("main table").waitFor();
    return { rows: await rows() };
  });

  await step("mailing-recurring-compose", async () => {
    await nav("Mailings");
    await page.getByRole("link", { name: "Compose a mailing" }).click();
    await waitText("main h1", "Compose a mailing");
    await page.getByLabel("Name", { exact: true }).fill("Weekly digest");
    await page.getByLabel("Template", { exact: true }).selectOption("news");
    await page.getByLabel("Every user with a profile", { exact: true }).check();
    await page.getByLabel("Recurring", { exact: true }).check();
    await page.getByLabel("Cron (5 fields: minute hour day month weekday)", { exact: true }).fill("61 9 * * 1");
    const bad = await waitText("main .error:not([hidden])", "cron");
    await page.getByLabel("Cron (5 fields: minute hour day month weekday)", { exact: true }).fill("0 9 * * 1");
    await page.getByLabel("Time zone (IANA)", { exact: true }).fill("Europe/Berlin");
    // The runs answered for this cron and zone (not an earlier question's, e.g. in the default zone).
    await page.waitForFunction(() => document.querySelector("#next-runs").dataset.for === "0 9 * * 1|Europe/Berlin");
    return { bad_cron_error: bad, runs: await page.locator("#next-runs li").allInnerTexts() };
  });

  await step("mailing-recurring", async () => {
    await page.getByRole("button", { name: "Save mailing" }).click();
    await waitText("main h1", "Mailing Weekly digest");
    const id = decodeURIComponent(new URL(page.url()).hash.replace("#/mailings/", ""));
    return { id, status: await text("main .badge"), saved_runs: await page.locator("main ol.runs li").allInnerTexts() };
  });

  await step("mailing-cancelled", async () => {
    await page.getByRole("button", { name: "Cancel mailing" }).click();
    const status = await waitText("main .badge", "cancelled");
    return { status, cancel_offered: await page.getByRole("button", { name: "Cancel mailing" }).count() };
  });

  await step("mailings-list", async () => {
    await nav("Mailings");
    await waitText("main h1", "Mailings");
    await page.locator("main table").waitFor();
    return { rows: await rows() };
  });

  await step("mailing-history", async () => {
    const first = (await rows()).find((r) => r[0] === "December news");
    await page.getByRole("link", { name: "December news" }).click();
    await waitText("main h1", "Mailing December news");
    await page.locator("main").getByRole("link", { name: "History", exact: true }).click();
    await waitText("main h1", "History");
    await page.locator("main table tbody tr").first().waitFor();
    return { list_row: first, rows: await rows() };
  });

  await mailingsClone();
}

async function mailingsClone() {
  await step("mailing-clone", async () => {
    await nav("Mailings");
    await waitText("main h1", "Mailings");
    const row = page.locator("main table tbody tr", { hasText: "December news" });
    await row.getByRole("link", { name: "Clone" }).click();
    await waitText("main h1", "Clone of December news");
    const form = {
      name: await page.getByLabel("Name", { exact: true }).inputValue(),
      template: await page.getByLabel("Template", { exact: true }).inputValue(),
      email: await page.getByLabel("email", { exact: true }).isChecked(),
      users: await page.getByLabel("User ids (comma separated)", { exact: true }).inputValue(),
      data: JSON.parse(await page.getByLabel("Data (JSON object, the template's data)", { exact: true }).inputValue()),
    };
    await page.getByRole("button", { name: "Save mailing" }).click();
    await waitText("main h1", "Mailing December news (copy)");
    return { form, id: decodeURIComponent(new URL(page.url()).hash.replace("#/mailings/", "")) };
  });
}

async function phone() {
  await step("phone-signin", signIn);
  const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await step("phone-templates", async () => ({ overflow: await overflow() }));
  await step("phone-template-form", async () => {
    await page.getByRole("link", { name: "New template" }).click();
    await waitText("main h1", "New template");
    await page.getByLabel("Body", { exact: true }).fill("Hi {{ user.name }}");
    await waitText("#preview-body", "Hi Ada");
    return { overflow: await overflow() };
  });
  await step("phone-compose", async () => {
    await page.goto(`${spec.url}/admin#/mailings/new`);
    await waitText("main h1", "Compose a mailing");
    return { overflow: await overflow() };
  });
}
