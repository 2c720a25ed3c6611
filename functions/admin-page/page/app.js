// Herald's admin page (CONTRACT §9): one page over the platform's own JSON API, no build step.
// Every value from the API is put into the page as text (never as HTML); an email's HTML preview
// is shown in a sandboxed frame without scripts.
"use strict";

const BASE = document.body.dataset.base || "";
const DEV_SIGNIN = document.body.dataset.devSignin === "on";
const TOKEN_KEY = "herald-admin-token";
const CHANNELS = ["email", "sms", "push"];
const HISTORY_STATUSES = ["queued", "held", "sent", "acked", "failed", "skipped"];
const main = document.getElementById("main");

// ---- small helpers --------------------------------------------------------------------------

/** An element: h("td", {class: "x"}, "text", child). Attributes starting with "on" are listeners. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
/** A labelled control: the label's `for` names the control's id. */
function field(labelText, control, hint) {
  control.id = control.id || `f${++uid}`;
  const hintEl = hint ? h("p", { class: "hint", id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", {}, h("label", { for: control.id }, labelText), control, hintEl);
}

function checkbox(labelText, checked, attrs) {
  const box = h("input", { type: "checkbox", checked, ...attrs });
  return h("label", { class: "inline" }, box, labelText);
}

function select(options, value, attrs) {
  return h("select", attrs || {}, options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
}

function badge(status) {
  return h("span", { class: `badge ${status}` }, status);
}

function toast(text) {
  const box = h("div", {}, text);
  document.getElementById("toast").append(box);
  setTimeout(() => box.remove(), 4000);
}

/** An instant as local time: the browser's, or `zone`'s (named after it) when given. */
function fmtTime(t, zone) {
  if (!t) return "";
  const d = new Date(t);
  if (isNaN(d)) return t;
  if (!zone) return d.toLocaleString();
  try {
    return `${d.toLocaleString(undefined, { timeZone: zone, weekday: "short", year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })} ${zone}`;
  } catch {
    return d.toLocaleString();
  }
}

/** The API's error shown as it came: its code and message, or what went wrong in transport. */
function errorBox(e) {
  if (!e) return h("div", { class: "error", role: "alert", hidden: true });
  const box = h("div", { class: "error", role: "alert" });
  showError(box, e);
  return box;
}

function showError(box, e) {
  box.replaceChildren();
  if (!e) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  if (e.code) box.append(h("code", {}, e.code), ": ");
  box.append(e.message || String(e));
}

/** `fn` once `ms` after the last call, and only while `owner` is still on the page (a screen
 * left before then sends nothing). */
function debounce(owner, fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => owner.isConnected && fn(...args), ms);
  };
}

/** A JSON object typed into a textarea; throws a readable error naming the field. */
function parseObject(text, what) {
  if (!text.trim()) return {};
  let v;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw { code: "bad_json", message: `${what} is not valid JSON: ${err.message}` };
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw { code: "bad_json", message: `${what} must be a JSON object` };
  return v;
}

// ---- the API --------------------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(status, body, fallback) {
    super((body && body.error && body.error.message) || fallback);
    this.status = status;
    this.code = body && body.error && body.error.code;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = {};
  const t = token();
  if (t) headers.authorization = `Bearer ${t}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res;
  try {
    res = await fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, null, `Herald did not answer (${err.message}). Is it running?`);
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const e = new ApiError(res.status, json, `${method} ${path} answered ${res.status} ${res.statusText}`);
    if (res.status === 401 && path !== "/admin/dev-token") {
      signOut(`Your token was refused: ${e.message}`);
    }
    throw e;
  }
  return json;
}

const q = encodeURIComponent;

// ---- sign in --------------------------------------------------------------------------------

let signInMessage = null;

/** Shows `hash`'s screen, also when it is the one in the address bar already. */
function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  signInMessage = message || null;
  go("#/signin");
}

function signInView() {
  const input = h("input", { type: "password", autocomplete: "off", spellcheck: "false" });
  const err = errorBox(signInMessage ? { message: signInMessage } : null);
  signInMessage = null;
  async function useToken(t) {
    sessionStorage.setItem(TOKEN_KEY, t);
    try {
      await api("GET", "/templates");
      go("#/templates");
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      showError(err, e.status === 403 ? { code: e.code, message: `${e.message} (the admin page needs a token with role admin)` } : e);
    }
  }
  const form = h(
    "form",
    {
      onsubmit: (ev) => {
        ev.preventDefault();
        const t = input.value.trim();
        if (!t) return showError(err, { message: "Paste an admin token (a JWT with role admin) first." });
        useToken(t);
      },
    },
    field("Admin token", input, "A JWT with role admin, e.g. from: cargo run --release -p herald-local --bin token -- --role admin"),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Sign in")),
  );
  const dev = DEV_SIGNIN
    ? h(
        "section",
        {},
        h("h2", {}, "Development"),
        h("p", { class: "hint" }, "herald-local is using its public development secret on loopback, so it can sign you in itself."),
        h(
          "button",
          {
            type: "button",
            class: "secondary",
            onclick: async () => {
              try {
                const { token: t } = await api("POST", "/admin/dev-token");
                await useToken(t);
              } catch (e) {
                showError(err, e);
              }
            },
          },
          "Sign in as developer",
        ),
      )
    : null;
  return [h("h1", {}, "Sign in"), err, form, dev];
}

// ---- templates ------------------------------------------------------------------------------

async function templatesView() {
  const { items } = await api("GET", "/templates");
  const list = items.length
    ? h(
        "table",
        { class: "responsive" },
        h("thead", {}, h("tr", {}, ["Name", "Channel", "Locale", "Version", "Variables", "Updated"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          items.map((t) =>
            h(
              "tr",
              {},
              h("td", { "data-label": "Name" }, h("a", { href: `#/templates/${q(t.id)}` }, t.name)),
              h("td", { "data-label": "Channel" }, t.channel),
              h("td", { "data-label": "Locale" }, t.locale || "(any)"),
              h("td", { "data-label": "Version" }, t.version),
              h("td", { "data-label": "Variables" }, (t.variables || []).map((v) => h("span", { class: "tag" }, v))),
              h("td", { "data-label": "Updated" }, fmtTime(t.updated_at)),
            ),
          ),
        ),
      )
    : h("p", { class: "empty" }, "No templates yet. A template is a message per channel and locale, written with {{ user.name }} and {{ data.… }}.");
  return [h("h1", {}, "Templates"), h("div", { class: "row" }, h("a", { href: "#/templates/new", class: "button" }, "New template")), list];
}

async function templateView(id) {
  const existing = id ? await api("GET", `/templates/${q(id)}`) : null;
  const t = existing || { name: "", channel: "email", locale: "", subject: "", body: "", html: "" };
  const name = h("input", { type: "text", value: t.name, required: true, autocomplete: "off" });
  const channel = select(CHANNELS.map((c) => [c, c]), t.channel);
  const locale = h("input", { type: "text", value: t.locale || "", placeholder: "e.g. ru-RU (empty: any locale)", autocomplete: "off" });
  const subject = h("input", { type: "text", value: t.subject || "", autocomplete: "off" });
  const body = h("textarea", { rows: 8, spellcheck: "false" });
  body.value = t.body || "";
  const html = h("textarea", { rows: 8, spellcheck: "false" });
  html.value = t.html || "";
  const data = h("textarea", { rows: 4, spellcheck: "false" });
  data.value = JSON.stringify({ film: "Arrival" }, null, 2);
  const user = h("textarea", { rows: 4, spellcheck: "false" });
  user.value = JSON.stringify({ name: "Ada", email: "ada@example.com", locale: t.locale || "en" }, null, 2);
  const htmlField = field("HTML (email only)", html, "Escaped for HTML: {{ data.x }} cannot inject markup.");
  const subjectField = field("Subject (email) / title (push)", subject);
  const syncChannel = () => {
    htmlField.hidden = channel.value !== "email";
    subjectField.hidden = channel.value === "sms";
  };
  channel.addEventListener("change", syncChannel);
  syncChannel();

  const err = errorBox(null);
  const previewErr = errorBox(null);
  const previewOut = h("div", { class: "preview", "aria-live": "polite" }, h("p", { class: "hint" }, "The preview appears here as you type."));
  const variables = h("p", { id: "variables" });
  const showVariables = (vars) => {
    variables.replaceChildren(
      h("strong", {}, "Variables used: "),
      ...(vars && vars.length
        ? vars.map((v) => h("span", { class: "tag" }, v))
        : [h("span", { class: "hint" }, vars ? "none" : "listed once the template is saved")]),
    );
  };
  showVariables(t.variables);
  const parts = { subject, body, html };

  const draft = () => ({
    name: name.value.trim() || "preview",
    channel: channel.value,
    locale: locale.value.trim() || null,
    subject: channel.value === "sms" ? null : subject.value || null,
    body: body.value,
    html: channel.value === "email" ? html.value || null : null,
  });

  const preview = debounce(body, async () => {
    for (const p of Object.values(parts)) p.removeAttribute("aria-invalid");
    let request;
    try {
      request = { ...draft(), data: parseObject(data.value, "Sample data"), user: parseObject(user.value, "Sample user") };
    } catch (e) {
      return showError(previewErr, e);
    }
    if (!request.body) return;
    try {
      const r = await api("POST", "/templates/preview", request);
      showError(previewErr, null);
      if (r.variables) showVariables(r.variables);
      previewOut.replaceChildren(
        ...[
          r.subject != null ? [h("h3", {}, "Subject"), h("pre", { id: "preview-subject" }, r.subject)] : [],
          h("h3", {}, "Body"),
          h("pre", { id: "preview-body" }, r.body),
          r.html != null ? [h("h3", {}, "HTML"), h("iframe", { sandbox: "", title: "The email's HTML", srcdoc: r.html })] : [],
        ].flat(),
      );
    } catch (e) {
      showError(previewErr, e);
      previewOut.replaceChildren(h("p", { class: "hint" }, "The preview comes back once the error above is fixed."));
      // A syntax or render error names its part and line: mark that field and quote the line.
      const m = /in the (subject|body|html) at line (\d+)/.exec(e.message || "");
      if (m && parts[m[1]]) {
        const lineNo = Number(m[2]);
        parts[m[1]].setAttribute("aria-invalid", "true");
        const text = parts[m[1]].value.split("\n")[lineNo - 1];
        if (text !== undefined) previewErr.append(h("div", { class: "line-mark" }, `${m[1]}, line ${lineNo}: ${text}`));
      }
    }
  }, 250);
  for (const el of [name, channel, locale, subject, body, html, data, user]) el.addEventListener("input", preview);
  preview();

  let version = t.version;
  const save = async (ev) => {
    ev.preventDefault();
    const d = draft();
    if (!name.value.trim()) return showError(err, { message: "A template needs a name." });
    try {
      const saved = existing ? await api("PUT", `/templates/${q(existing.id)}`, { ...d, version }) : await api("POST", "/templates", d);
      showError(err, null);
      version = saved.version;
      showVariables(saved.variables);
      toast(`Saved ${saved.name} (${saved.channel}), version ${saved.version}`);
      if (!existing) location.hash = `#/templates/${q(saved.id)}`;
    } catch (e) {
      showError(err, e);
    }
  };
  const remove = existing
    ? h(
        "button",
        {
          type: "button",
          class: "danger",
          onclick: async () => {
            if (!confirm(`Delete template ${existing.name} (${existing.channel})?`)) return;
            try {
              await api("DELETE", `/templates/${q(existing.id)}`);
              toast("Template deleted");
              location.hash = "#/templates";
            } catch (e) {
              showError(err, e);
            }
          },
        },
        "Delete",
      )
    : null;

  return [
    h("h1", {}, existing ? `Template ${existing.name}` : "New template"),
    h(
      "form",
      { onsubmit: save },
      h(
        "div",
        { class: "grid2" },
        h(
          "div",
          {},
          h("div", { class: "grid3" }, field("Name", name), field("Channel", channel), field("Locale", locale)),
          subjectField,
          field("Body", body, "Jinja: {{ user.name }}, {{ data.film }}, {% if … %}. An unknown variable is an error."),
          htmlField,
          variables,
          err,
          h("div", { class: "row" }, h("button", { type: "submit" }, existing ? "Save" : "Create"), remove, h("a", { href: "#/templates" }, "Back to templates")),
        ),
        h(
          "div",
          {},
          h("h2", {}, "Preview"),
          field("Sample data (data)", data),
          field("Sample user (user)", user),
          previewErr,
          previewOut,
        ),
      ),
    ),
  ];
}

// ---- users ----------------------------------------------------------------------------------

function usersView() {
  const id = h("input", { type: "text", autocomplete: "off", required: true });
  return [
    h("h1", {}, "Users"),
    h("p", { class: "hint" }, "Profiles are keyed by the user id of your auth service. Open one to see or change it; a new id starts an empty profile."),
    h(
      "form",
      {
        onsubmit: (ev) => {
          ev.preventDefault();
          if (id.value.trim()) location.hash = `#/users/${q(id.value.trim())}`;
        },
      },
      field("User id", id),
      h("div", { class: "row" }, h("button", { type: "submit" }, "Open")),
    ),
  ];
}

async function userView(userId) {
  let profile = null;
  try {
    profile = await api("GET", `/users/${q(userId)}`);
  } catch (e) {
    if (e.status !== 404) throw e;
  }
  const p = profile || { channels: { email: true, sms: true, push: true } };
  const email = h("input", { type: "email", value: p.email || "", autocomplete: "off" });
  const phone = h("input", { type: "tel", value: p.phone || "", placeholder: "+4915112345678", autocomplete: "off" });
  const name = h("input", { type: "text", value: p.name || "", autocomplete: "off" });
  const locale = h("input", { type: "text", value: p.locale || "", placeholder: "e.g. de-DE", autocomplete: "off" });
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const tz = h("input", { type: "text", value: p.timezone || "", list: "timezones", placeholder: "e.g. Europe/Berlin", autocomplete: "off" });
  const tzList = h("datalist", { id: "timezones" }, zones.map((z) => h("option", { value: z })));
  const boxes = Object.fromEntries(CHANNELS.map((c) => [c, checkbox(c, p.channels ? p.channels[c] !== false : true)]));
  const qh = p.quiet_hours || {};
  const qStart = h("input", { type: "time", value: qh.start || "" });
  const qEnd = h("input", { type: "time", value: qh.end || "" });
  const err = errorBox(null);
  const save = async (ev) => {
    ev.preventDefault();
    if (!!qStart.value !== !!qEnd.value) return showError(err, { message: "Quiet hours need both a start and an end (or neither)." });
    const body = {
      email: email.value.trim() || null,
      phone: phone.value.trim() || null,
      name: name.value.trim() || null,
      locale: locale.value.trim() || null,
      timezone: tz.value.trim() || null,
      channels: Object.fromEntries(CHANNELS.map((c) => [c, boxes[c].querySelector("input").checked])),
      quiet_hours: qStart.value ? { start: qStart.value, end: qEnd.value } : null,
    };
    try {
      await api("PUT", `/users/${q(userId)}`, body);
      showError(err, null);
      toast(`Saved user ${userId}`);
    } catch (e) {
      showError(err, e);
    }
  };
  return [
    h("h1", {}, `User ${userId}`),
    profile ? null : h("p", { class: "empty" }, "No profile for this id yet: saving creates it."),
    h(
      "form",
      { onsubmit: save },
      h("div", { class: "grid3" }, field("Name", name), field("Email", email), field("Phone (E.164)", phone)),
      h("div", { class: "grid3" }, field("Locale", locale), field("Time zone (IANA)", tz, "Quiet hours are in this zone."), tzList),
      h("fieldset", {}, h("legend", {}, "Channels the user accepts"), Object.values(boxes)),
      h(
        "fieldset",
        {},
        h("legend", {}, "Quiet hours"),
        h("p", { class: "hint" }, "Non-critical notifications inside these hours are held until they end; an end before the start spans midnight."),
        h("div", { class: "grid3" }, field("From", qStart), field("Until", qEnd)),
      ),
      err,
      h("div", { class: "row" }, h("button", { type: "submit" }, "Save"), h("a", { href: `#/history?user_id=${q(userId)}` }, "This user's history")),
    ),
  ];
}

// ---- event types ----------------------------------------------------------------------------

async function templateNames() {
  const { items } = await api("GET", "/templates");
  const byChannel = Object.fromEntries(CHANNELS.map((c) => [c, [...new Set(items.filter((t) => t.channel === c).map((t) => t.name))].sort()]));
  return { items, byChannel, names: [...new Set(items.map((t) => t.name))].sort() };
}

async function eventTypesView() {
  const [{ items }, templates] = await Promise.all([api("GET", "/event-types"), templateNames()]);
  const rows = items.length
    ? h(
        "table",
        { class: "responsive" },
        h("thead", {}, h("tr", {}, ["Event", ...CHANNELS, "Critical"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          items.map((e) =>
            h(
              "tr",
              {},
              h("td", { "data-label": "Event" }, h("a", { href: `#/event-types/${q(e.name)}` }, e.name)),
              CHANNELS.map((c) => h("td", { "data-label": c }, (e.templates && e.templates[c]) || "—")),
              h("td", { "data-label": "Critical" }, e.critical ? "yes (ignores quiet hours)" : "no"),
            ),
          ),
        ),
      )
    : h("p", { class: "empty" }, "No event types yet. An event type (e.g. user.registered) names the templates a fixed event is sent with.");
  return [h("h1", {}, "Event types"), eventTypeForm(null, templates), h("h2", {}, "All event types"), rows];
}

async function eventTypeView(name) {
  const [{ items }, templates] = await Promise.all([api("GET", "/event-types"), templateNames()]);
  const e = items.find((x) => x.name === name);
  return [h("h1", {}, `Event type ${name}`), eventTypeForm(e || { name }, templates), h("a", { href: "#/event-types" }, "Back to event types")];
}

function eventTypeForm(e, templates) {
  const name = h("input", { type: "text", value: (e && e.name) || "", placeholder: "e.g. film.added", autocomplete: "off", readonly: !!(e && e.name) });
  const pickers = Object.fromEntries(
    CHANNELS.map((c) => [c, select([["", "(not sent)"], ...templates.byChannel[c].map((n) => [n, n])], (e && e.templates && e.templates[c]) || "")]),
  );
  const critical = checkbox("Critical: sent inside quiet hours too", e && e.critical);
  const err = errorBox(null);
  return h(
    "form",
    {
      onsubmit: async (ev) => {
        ev.preventDefault();
        const n = name.value.trim();
        if (!n) return showError(err, { message: "An event type needs a name." });
        const chosen = Object.fromEntries(CHANNELS.filter((c) => pickers[c].value).map((c) => [c, pickers[c].value]));
        try {
          await api("PUT", `/event-types/${q(n)}`, { templates: chosen, critical: critical.querySelector("input").checked });
          toast(`Saved event type ${n}`);
          render();
        } catch (x) {
          showError(err, x);
        }
      },
    },
    h("fieldset", {}, h("legend", {}, e && e.name ? "Templates" : "New event type"), field("Event name", name), h("div", { class: "grid3" }, CHANNELS.map((c) => field(`${c} template`, pickers[c]))), critical),
    err,
    h("div", { class: "row" }, h("button", { type: "submit" }, "Save event type")),
  );
}

// ---- mailings -------------------------------------------------------------------------------

function counts(m) {
  const c = m.counts || {};
  const parts = [];
  for (const [channel, byStatus] of Object.entries(c)) {
    if (byStatus && typeof byStatus === "object") {
      for (const [status, n] of Object.entries(byStatus)) if (n) parts.push(`${channel} ${status} ${n}`);
    } else if (byStatus) parts.push(`${channel} ${byStatus}`);
  }
  return parts.join(", ") || "—";
}

async function mailingsView() {
  const { items } = await api("GET", "/mailings");
  const rows = items.length
    ? h(
        "table",
        { class: "responsive" },
        h("thead", {}, h("tr", {}, ["Name", "Status", "Template", "Channels", "Counts", "Next run", ""].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          items.map((m) =>
            h(
              "tr",
              {},
              h("td", { "data-label": "Name" }, h("a", { href: `#/mailings/${q(m.id)}` }, m.name)),
              h("td", { "data-label": "Status" }, badge(m.status)),
              h("td", { "data-label": "Template" }, m.template),
              h("td", { "data-label": "Channels" }, (m.channels || []).join(", ")),
              h("td", { "data-label": "Counts" }, counts(m)),
              h("td", { "data-label": "Next run" }, fmtTime((m.next_runs || [])[0])),
              h("td", { "data-label": "" }, h("a", { href: `#/mailings/new?from=${q(m.id)}` }, "Clone")),
            ),
          ),
        ),
      )
    : h("p", { class: "empty" }, "No mailings yet. A mailing sends a template to users, an event's subscribers or everyone: now, later or on a schedule.");
  return [h("h1", {}, "Mailings"), h("div", { class: "row" }, h("a", { href: "#/mailings/new", class: "button" }, "Compose a mailing")), rows];
}

async function mailingView(id) {
  const m = await api("GET", `/mailings/${q(id)}`);
  const err = errorBox(null);
  const cancellable = m.status === "scheduled" || m.status === "sending";
  const audience = m.audience || {};
  const who = audience.all ? "every user" : audience.event_name ? `subscribers of ${audience.event_name}` : (audience.users || []).join(", ");
  return [
    h("h1", {}, `Mailing ${m.name}`),
    h(
      "table",
      {},
      h(
        "tbody",
        {},
        [
          ["Status", badge(m.status)],
          ["Template", m.template],
          ["Channels", (m.channels || []).join(", ")],
          ["Audience", who],
          ["Send at", m.send_at ? fmtTime(m.send_at) : m.recurrence ? "on its schedule" : "at once"],
          ["Recurrence", m.recurrence ? `${m.recurrence.cron} (${m.recurrence.timezone})` : "—"],
          ["Counts", counts(m)],
          ["Created", fmtTime(m.created_at)],
        ].map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v))),
      ),
    ),
    m.next_runs && m.next_runs.length
      ? [h("h2", {}, "Next runs"), h("ol", { class: "runs" }, m.next_runs.map((r) => h("li", {}, fmtTime(r, m.recurrence && m.recurrence.timezone))))]
      : null,
    err,
    h(
      "div",
      { class: "row" },
      cancellable
        ? h(
            "button",
            {
              type: "button",
              class: "danger",
              onclick: async () => {
                try {
                  await api("POST", `/mailings/${q(id)}/cancel`);
                  toast("Mailing cancelled");
                  render();
                } catch (e) {
                  showError(err, e);
                }
              },
            },
            "Cancel mailing",
          )
        : null,
      h("a", { href: `#/mailings/new?from=${q(id)}` }, "Clone"),
      h("a", { href: `#/history?mailing_id=${q(id)}` }, "History"),
      h("a", { href: "#/mailings" }, "Back to mailings"),
    ),
  ];
}

async function composeView(params) {
  const [templates, from] = await Promise.all([templateNames(), params.get("from") ? api("GET", `/mailings/${q(params.get("from"))}`) : null]);
  const src = from || {};
  const name = h("input", { type: "text", value: from ? `${src.name} (copy)` : "", autocomplete: "off", required: true });
  const template = select([["", "(choose a template)"], ...templates.names.map((n) => [n, n])], src.template || "");
  const channelBoxes = Object.fromEntries(CHANNELS.map((c) => [c, checkbox(c, (src.channels || []).includes(c))]));
  // A template's channels are the default channels.
  template.addEventListener("change", () => {
    for (const c of CHANNELS) channelBoxes[c].querySelector("input").checked = templates.byChannel[c].includes(template.value);
    updateRuns();
  });
  const aud = src.audience || {};
  const audienceKind = aud.all ? "all" : aud.event_name ? "event" : "users";
  const radio = (group, value, text, checked) => h("label", { class: "inline" }, h("input", { type: "radio", name: group, value, checked }), text);
  const users = h("input", { type: "text", value: (aud.users || []).join(", "), placeholder: "ada, 1589", autocomplete: "off" });
  const eventName = h("input", { type: "text", value: aud.event_name || "", placeholder: "notification:test", autocomplete: "off" });
  const data = h("textarea", { rows: 4, spellcheck: "false" });
  data.value = JSON.stringify(src.data || {}, null, 2);
  const whenKind = src.recurrence ? "recurring" : src.send_at ? "later" : "now";
  const at = h("input", { type: "datetime-local" });
  const cron = h("input", { type: "text", value: (src.recurrence && src.recurrence.cron) || "0 9 * * 1", autocomplete: "off", spellcheck: "false" });
  const zone = h("input", {
    type: "text",
    list: "mailing-zones",
    value: (src.recurrence && src.recurrence.timezone) || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
    autocomplete: "off",
  });
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const runs = h("div", { id: "next-runs", "aria-live": "polite" });
  const runsErr = errorBox(null);
  const err = errorBox(null);
  const form = h("form", {});
  const checked = (group) => (form.querySelector(`input[name=${group}]:checked`) || {}).value;

  // Only the answer to the latest question is shown: an earlier one that comes late (the cron
  // typed, then the time zone) would show runs for what the form no longer says.
  let asked = 0;
  const updateRuns = debounce(cron, async () => {
    const ask = ++asked;
    if (checked("when") !== "recurring") {
      runs.replaceChildren();
      delete runs.dataset.for;
      showError(runsErr, null);
      return;
    }
    const [c, z] = [cron.value.trim(), zone.value.trim()];
    try {
      const r = await api("POST", "/mailings/next-runs", { recurrence: { cron: c, timezone: z } });
      if (ask !== asked) return;
      showError(runsErr, null);
      runs.replaceChildren(h("strong", {}, "Next 5 runs"), h("ol", { class: "runs" }, r.next_runs.map((t) => h("li", {}, `${fmtTime(t, z)} (${t})`))));
      runs.dataset.for = `${c}|${z}`;
    } catch (e) {
      if (ask !== asked) return;
      runs.replaceChildren();
      delete runs.dataset.for;
      showError(runsErr, e);
    }
  }, 300);

  const sync = () => {
    users.closest("div").hidden = checked("audience") !== "users";
    eventName.closest("div").hidden = checked("audience") !== "event";
    at.closest("div").hidden = checked("when") !== "later";
    cronBox.hidden = checked("when") !== "recurring";
    updateRuns();
  };
  const cronBox = h(
    "div",
    {},
    h(
      "div",
      { class: "grid2" },
      field("Cron (5 fields: minute hour day month weekday)", cron, "e.g. 0 9 * * 1 is Mondays at 09:00"),
      field("Time zone (IANA)", zone),
      h("datalist", { id: "mailing-zones" }, zones.map((z) => h("option", { value: z }))),
    ),
    runs,
    runsErr,
  );
  form.append(
    h("div", { class: "grid2" }, field("Name", name), field("Template", template)),
    h("fieldset", {}, h("legend", {}, "Channels"), Object.values(channelBoxes)),
    h(
      "fieldset",
      {},
      h("legend", {}, "Audience"),
      radio("audience", "users", "These users", audienceKind === "users"),
      radio("audience", "event", "Subscribers of a WebSocket event", audienceKind === "event"),
      radio("audience", "all", "Every user with a profile", audienceKind === "all"),
      field("User ids (comma separated)", users),
      field("Event name", eventName),
    ),
    field("Data (JSON object, the template's data)", data),
    h(
      "fieldset",
      {},
      h("legend", {}, "When"),
      radio("when", "now", "Now", whenKind === "now"),
      radio("when", "later", "Later, at a time (your browser's time zone)", whenKind === "later"),
      radio("when", "recurring", "Recurring", whenKind === "recurring"),
      field("Send at", at),
      cronBox,
    ),
    err,
    h("div", { class: "row" }, h("button", { type: "submit" }, "Save mailing"), h("a", { href: "#/mailings" }, "Back to mailings")),
  );
  form.addEventListener("change", sync);
  cron.addEventListener("input", updateRuns);
  zone.addEventListener("input", updateRuns);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { name: name.value.trim(), template: template.value, channels: CHANNELS.filter((c) => channelBoxes[c].querySelector("input").checked) };
    try {
      if (!body.name) throw { message: "A mailing needs a name." };
      if (!body.template) throw { message: "Choose a template." };
      if (!body.channels.length) throw { message: "Choose at least one channel." };
      const a = checked("audience");
      if (a === "users") {
        const ids = users.value.split(",").map((s) => s.trim()).filter(Boolean);
        if (!ids.length) throw { message: "Name at least one user id." };
        body.audience = { users: ids };
      } else if (a === "event") {
        if (!eventName.value.trim()) throw { message: "Name the WebSocket event whose subscribers get it." };
        body.audience = { event_name: eventName.value.trim() };
      } else body.audience = { all: true };
      const d = parseObject(data.value, "Data");
      if (Object.keys(d).length) body.data = d;
      const w = checked("when");
      if (w === "later") {
        if (!at.value) throw { message: "Choose when to send it." };
        body.send_at = new Date(at.value).toISOString();
      } else if (w === "recurring") body.recurrence = { cron: cron.value.trim(), timezone: zone.value.trim() };
      const created = await api("POST", "/mailings", body);
      toast(`Mailing ${body.name}: ${created.status}`);
      location.hash = `#/mailings/${q(created.id)}`;
    } catch (e) {
      showError(err, e);
    }
  });
  sync();
  return [h("h1", {}, from ? `Clone of ${src.name}` : "Compose a mailing"), form];
}

// ---- history --------------------------------------------------------------------------------

async function historyView(params) {
  const inputs = {
    user_id: h("input", { type: "text", value: params.get("user_id") || "", autocomplete: "off" }),
    mailing_id: h("input", { type: "text", value: params.get("mailing_id") || "", autocomplete: "off" }),
    event_id: h("input", { type: "text", value: params.get("event_id") || "", autocomplete: "off" }),
  };
  const channel = select([["", "(any)"], ...CHANNELS.map((c) => [c, c])], params.get("channel") || "");
  const status = select([["", "(any)"], ...HISTORY_STATUSES.map((s) => [s, s])], params.get("status") || "");
  const err = errorBox(null);
  const results = h("div", { id: "history-results" });
  const filters = () => {
    const p = new URLSearchParams();
    for (const [k, el] of Object.entries(inputs)) if (el.value.trim()) p.set(k, el.value.trim());
    if (channel.value) p.set("channel", channel.value);
    if (status.value) p.set("status", status.value);
    return p;
  };
  const form = h(
    "form",
    {
      onsubmit: (ev) => {
        ev.preventDefault();
        location.hash = `#/history?${filters()}`;
      },
    },
    h("div", { class: "grid3" }, field("User id", inputs.user_id), field("Mailing id", inputs.mailing_id), field("Event id", inputs.event_id)),
    h("div", { class: "grid3" }, field("Channel", channel), field("Status", status)),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Show history")),
  );
  const p = filters();
  if (!p.get("user_id") && !p.get("mailing_id") && !p.get("event_id")) {
    results.append(h("p", { class: "empty" }, "Choose a user, a mailing or an event: history is kept per recipient and per send."));
  } else {
    const table = h("tbody", {});
    const more = h("div", { class: "row" });
    const load = async (cursor) => {
      const query = new URLSearchParams(p);
      if (cursor) query.set("cursor", cursor);
      try {
        const page = await api("GET", `/notifications?${query}`);
        showError(err, null);
        for (const n of page.items) {
          table.append(
            h(
              "tr",
              {},
              h("td", { "data-label": "When" }, fmtTime(n.updated_at || n.created_at)),
              h("td", { "data-label": "User" }, n.user_id),
              h("td", { "data-label": "Channel" }, n.channel),
              h("td", { "data-label": "Status" }, badge(n.status)),
              h("td", { "data-label": "Reason" }, n.reason || ""),
              h("td", { "data-label": "From" }, n.mailing_id ? h("a", { href: `#/mailings/${q(n.mailing_id)}` }, "mailing") : n.event_id ? `event ${n.event_id}` : ""),
            ),
          );
        }
        if (!table.children.length) results.replaceChildren(h("p", { class: "empty" }, "Nothing matches these filters yet."));
        more.replaceChildren(...(page.cursor ? [h("button", { type: "button", class: "secondary", onclick: () => load(page.cursor) }, "Load more")] : []));
      } catch (e) {
        showError(err, e);
      }
    };
    results.append(
      h("table", { class: "responsive" }, h("thead", {}, h("tr", {}, ["When", "User", "Channel", "Status", "Reason", "From"].map((c) => h("th", { scope: "col" }, c)))), table),
      more,
    );
    await load(null);
  }
  return [h("h1", {}, "History"), form, err, results];
}

// ---- outbox ---------------------------------------------------------------------------------

async function outboxView() {
  let items;
  try {
    ({ items } = await api("GET", "/outbox"));
  } catch (e) {
    if (e.status === 404) return [h("h1", {}, "Outbox"), h("p", { class: "empty" }, "The outbox exists on herald-local's embedded backend only: elsewhere email and SMS are really sent.")];
    throw e;
  }
  const rows = items.length
    ? h(
        "table",
        { class: "responsive" },
        h("thead", {}, h("tr", {}, ["Sent", "Channel", "To", "Subject", "Body"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          items
            .slice()
            .reverse()
            .map((i) =>
              h(
                "tr",
                {},
                h("td", { "data-label": "Sent" }, fmtTime(i.sent_at)),
                h("td", { "data-label": "Channel" }, i.channel),
                h("td", { "data-label": "To" }, i.to),
                h("td", { "data-label": "Subject" }, i.subject || ""),
                h("td", { "data-label": "Body", class: "pre" }, i.body),
              ),
            ),
        ),
      )
    : h("p", { class: "empty" }, "Nothing sent yet. Email and SMS that herald-local would have sent appear here.");
  return [h("h1", {}, "Outbox"), h("p", { class: "hint" }, "What email and SMS would have gone out (herald-local's embedded backend keeps them instead of sending)."), rows];
}

// ---- routing --------------------------------------------------------------------------------

const routes = [
  [/^\/templates$/, templatesView],
  [/^\/templates\/new$/, () => templateView(null)],
  [/^\/templates\/([^/]+)$/, (id) => templateView(decodeURIComponent(id))],
  [/^\/users$/, usersView],
  [/^\/users\/([^/]+)$/, (id) => userView(decodeURIComponent(id))],
  [/^\/event-types$/, eventTypesView],
  [/^\/event-types\/([^/]+)$/, (name) => eventTypeView(decodeURIComponent(name))],
  [/^\/mailings$/, mailingsView],
  [/^\/mailings\/new$/, (params) => composeView(params)],
  [/^\/mailings\/([^/]+)$/, (id) => mailingView(decodeURIComponent(id))],
  [/^\/history$/, (params) => historyView(params)],
  [/^\/outbox$/, outboxView],
];

let rendering = 0;
async function render() {
  const run = ++rendering;
  const [path, query] = (location.hash.replace(/^#/, "") || "/templates").split("?");
  const params = new URLSearchParams(query || "");
  const signedIn = !!token();
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn;
  for (const a of document.querySelectorAll("#nav a")) {
    if (path.startsWith(a.getAttribute("href").slice(1))) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  let view;
  if (!signedIn || path === "/signin") {
    if (signedIn) return void (location.hash = "#/templates");
    view = () => signInView();
  } else {
    const found = routes.find(([re]) => re.test(path));
    if (!found) view = () => [h("h1", {}, "Not found"), h("p", {}, "No such screen. "), h("a", { href: "#/templates" }, "Go to templates")];
    else {
      const m = found[0].exec(path);
      view = () => (m.length > 1 ? found[1](m[1], params) : found[1](params));
    }
  }
  let content;
  try {
    content = await view();
  } catch (e) {
    if (e.status === 401) return;
    content = [h("h1", {}, "Something went wrong"), errorBox(e)];
  }
  if (run !== rendering) return;
  main.replaceChildren(...[content].flat(Infinity).filter(Boolean));
  document.title = `${(main.querySelector("h1") || {}).textContent || "Herald"} · Herald admin`;
  main.focus();
}

document.getElementById("signout").addEventListener("click", () => signOut(null));
window.addEventListener("hashchange", render);
render();
