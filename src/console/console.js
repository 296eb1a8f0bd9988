// hookgate web console: one plain script, no framework, no build step.
//
// Why vanilla JS: the console is a few tables over the admin JSON API. A Rust infrastructure
// team keeps it without a JavaScript toolchain (no npm, no bundler, no lock file of hundreds
// of packages), and there is nothing to audit but this one file, which the binary embeds
// (src/console.rs) so it works offline.
//
// Safety rules, kept by every line below:
// - data is rendered with textContent / createElement only, never parsed as markup (no
//   HTML strings anywhere: tests/it/console.rs checks this file for the property);
// - the token lives in sessionStorage (gone with the tab) and travels only in the
//   Authorization header of same-origin requests;
// - replay is a POST with the token, after a confirm() step.
"use strict";

(function () {
  const TOKEN_KEY = "hookgate.admin_token";
  const $ = (id) => document.getElementById(id);
  let current = null; // the event shown in the detail pane: {source, id}

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function status(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = kind || "";
  }

  class Unauthorized extends Error {}
  // An answer to a request made before the token was forgotten: dropped, never shown.
  class Forgotten extends Error {}
  let generation = 0;

  // A same-origin JSON request with the token; throws with the API's error message.
  async function api(method, path, body) {
    const asked = generation;
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
    });
    if (asked !== generation) throw new Forgotten("the token was forgotten meanwhile");
    if (r.status === 401) throw new Unauthorized("the admin token is required or wrong");
    let data = null;
    try {
      data = await r.json();
    } catch (_) {
      data = null;
    }
    if (asked !== generation) throw new Forgotten("the token was forgotten meanwhile");
    if (!r.ok) throw new Error((data && data.error) || "HTTP " + r.status);
    return data;
  }

  // createElement with text content and an optional class.
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  // Characters that change how the text around them reads (bidi overrides, zero-width and
  // control characters) are shown as \u{…}: ids that differ only by them do not look alike.
  const HIDDEN = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/gu;
  function visible(s) {
    return String(s).replace(
      HIDDEN,
      (c) => "\\u{" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + "}",
    );
  }

  function row(cells, classes) {
    const tr = document.createElement("tr");
    cells.forEach((c, i) => tr.appendChild(el("td", c, classes && classes[i])));
    return tr;
  }

  function fill(tbody, rows, empty, columns) {
    tbody.replaceChildren();
    if (rows.length === 0) {
      const td = el("td", empty, "empty");
      td.colSpan = columns;
      const tr = document.createElement("tr");
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
    rows.forEach((r) => tbody.appendChild(r));
  }

  function failed(e) {
    if (e instanceof Forgotten) return;
    if (e instanceof Unauthorized) {
      status("Enter the admin token (server.admin_token) to see data.", "error");
      $("token").focus();
    } else {
      status("Error: " + e.message, "error");
    }
  }

  function counts(map) {
    const parts = Object.keys(map || {}).map((k) => k + " " + map[k]);
    return parts.length ? parts.join(", ") : "–";
  }

  function sum(map) {
    return Object.values(map || {}).reduce((a, b) => a + b, 0);
  }

  async function loadSummary() {
    const s = await api("GET", "/summary");
    const tbody = document.querySelector("#summary tbody");
    fill(
      tbody,
      s.sources.map((x) =>
        row(
          [x.source, x.accepted, x.duplicate, x.published, x.dead, sum(x.refused), counts(x.recent_rejections)],
          [null, "num", "num", "num", x.dead ? "num warn" : "num", sum(x.refused) ? "num warn" : "num", null],
        ),
      ),
      "no sources configured",
      7,
    );
    $("totals").textContent =
      "Outbox pending: " + s.outbox_pending +
      " · dead letters kept: " + s.dead_letters +
      " · broker: " + (s.broker.connected ? "connected" : "not connected (" + s.broker.state + ")");
    // The source filter offers the configured sources.
    const select = $("f-source");
    const chosen = select.value;
    select.replaceChildren(el("option", "all"));
    select.firstChild.value = "";
    s.sources.forEach((x) => select.appendChild(el("option", x.source)));
    select.value = chosen;
  }

  function filters() {
    const f = {};
    const put = (k, v) => {
      if (v.trim() !== "") f[k] = v.trim();
    };
    put("source", $("f-source").value);
    put("type", $("f-type").value);
    put("status", $("f-status").value);
    put("since", $("f-since").value);
    return f;
  }

  async function loadEvents() {
    const f = filters();
    const q = new URLSearchParams(f);
    q.set("limit", $("f-limit").value || "50");
    const data = await api("GET", "/events?" + q.toString());
    const rows = data.events.map((e) => {
      const tr = row(
        [e.received, e.source, visible(e.id), e.type, e.status + (e.replay ? " (replay)" : ""), e.size + " B"],
        [null, null, "mono", null, "st-" + e.status, "num wide"],
      );
      tr.tabIndex = 0;
      tr.dataset.source = e.source;
      tr.dataset.id = e.id;
      const open = () => showEvent(e.source, e.id).catch(failed);
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter") open();
      });
      return tr;
    });
    fill(document.querySelector("#events tbody"), rows, "no kept events match", 6);
    $("events-note").textContent = data.events.length + " shown, newest first. Click a row for its envelope.";
  }

  async function loadRejections() {
    const q = new URLSearchParams({ limit: "50" });
    if ($("f-source").value) q.set("source", $("f-source").value);
    const data = await api("GET", "/rejections?" + q.toString());
    const rows = data.rejections.map((r) =>
      row(
        [
          r.time,
          r.source,
          r.client_ip,
          r.status,
          r.reason,
          r.body_bytes === undefined ? "not read" : r.body_bytes + " B, sha256 " + String(r.body_sha256).slice(0, 12) + "…",
          (r.headers || []).join(" "),
        ],
        [null, null, "mono", "num", "reason", "wide mono", "wide small"],
      ),
    );
    fill(document.querySelector("#rejections tbody"), rows, "no refused requests kept", 7);
  }

  async function showEvent(source, id) {
    const d = await api("GET", "/events/" + encodeURIComponent(source) + "/" + encodeURIComponent(id) + "?text=true");
    current = { source: d.source, id: d.id };
    $("detail-title").textContent = d.source + " / " + visible(d.id);
    const meta = $("detail-meta");
    meta.replaceChildren();
    const pairs = [
      ["Status", d.status],
      ["Type", d.type],
      ["Received", d.received],
      ["Provider", d.provider],
      ["Routing key", d.routing_key],
      ["Size", d.size + " B"],
    ];
    if (d.attempts !== undefined) pairs.push(["Attempts", d.attempts]);
    if (d.last_error !== undefined) pairs.push(["Last error", d.last_error]);
    if (d.dead_at !== undefined) pairs.push(["Dead since", d.dead_at]);
    pairs.push(["Replays", (d.replays || []).map((r) => r.received + " " + r.status).join("; ") || "none"]);
    pairs.forEach(([k, v]) => {
      meta.appendChild(el("dt", k));
      meta.appendChild(el("dd", v));
    });
    // The gateway's own indentation of the envelope as sent (a parse here would round
    // integers past 2^53 and drop a repeated key).
    $("envelope").textContent = visible(d.envelope_text ?? JSON.stringify(d.envelope, null, 2));
    $("detail-section").hidden = false;
    document.querySelectorAll("#events tbody tr").forEach((tr) => {
      tr.classList.toggle("selected", tr.dataset.source === d.source && tr.dataset.id === d.id);
    });
  }

  async function replayOne() {
    if (!current) return;
    // Its own copy: the pane may be closed (or the token forgotten) while this runs.
    const ev = current;
    const what = ev.source + " / " + visible(ev.id);
    if (!window.confirm("Replay event " + what + " to the broker?\nConsumers will receive it again (header x-hookgate-replay: true).")) {
      status("Replay cancelled.");
      return;
    }
    const r = await api("POST", "/replay", { source: ev.source, id: ev.id });
    status("Replayed " + r.replayed + " event (" + what + ").", "ok");
    await refresh();
    await showEvent(ev.source, ev.id);
  }

  async function replayFilter() {
    const f = filters();
    if (!f.source) {
      status("Choose a source to replay by filter.", "error");
      return;
    }
    if (!f.since && f.status !== "dead") {
      status("Set Since (e.g. 1h) to replay by filter, or choose status dead.", "error");
      return;
    }
    const dry = await api("POST", "/replay", Object.assign({ dry_run: true }, f));
    if (dry.replayed === 0) {
      status("No kept event matches: nothing to replay.");
      return;
    }
    // The window as the gateway read it for the dry run: the replay selects what was counted
    // (a relative "1h" read again later also took what arrived while the dialog was open).
    if (dry.since) f.since = dry.since;
    if (dry.until) f.until = dry.until;
    const desc = Object.keys(f).map((k) => k + "=" + f[k]).join(" ");
    if (!window.confirm("Replay " + dry.replayed + " event(s) matching " + desc + " to the broker?")) {
      status("Replay cancelled.");
      return;
    }
    const r = await api("POST", "/replay", f);
    status("Replayed " + r.replayed + " event(s) matching " + desc + ".", "ok");
    await refresh();
  }

  async function refresh() {
    try {
      await loadSummary();
      await Promise.all([loadEvents(), loadRejections()]);
      if ($("status").className !== "ok") status("Updated " + new Date().toLocaleTimeString() + ".");
    } catch (e) {
      failed(e);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      status("Token kept for this tab.");
      refresh();
    });
    $("token-clear").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      generation += 1;
      // What the token showed goes with it (the configured sources in the filter too).
      $("f-source").replaceChildren(el("option", "all"));
      $("f-source").firstChild.value = "";
      ["#summary tbody", "#events tbody", "#rejections tbody"].forEach((s) =>
        document.querySelector(s).replaceChildren(),
      );
      ["totals", "events-note", "envelope"].forEach((id) => ($(id).textContent = ""));
      $("detail-section").hidden = true;
      current = null;
      status("Token forgotten.");
    });
    $("filters").addEventListener("submit", (ev) => {
      ev.preventDefault();
      status("");
      refresh();
    });
    $("replay-filter").addEventListener("click", () => replayFilter().catch(failed));
    $("replay-one").addEventListener("click", () => replayOne().catch(failed));
    $("detail-close").addEventListener("click", () => {
      $("detail-section").hidden = true;
      current = null;
    });
    refresh();
  });
})();
