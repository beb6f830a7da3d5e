// LineWatch operator page: live alerts over SSE, acknowledge/resolve/comment, periodic tiles.
"use strict";
(function () {
  const $ = (sel, el) => (el || document).querySelector(sel);
  const body = document.body;
  // A link whose fragment holds the token stores it once; a fragment never reaches the server (no
  // token in a URL the feed, a proxy or a Referer could log), and it is removed at once.
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("token")) {
    localStorage.setItem("lw_token", frag.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  let token = localStorage.getItem("lw_token") || "";
  let ticket = "";                                // short-lived read ticket for URLs
  let lastId = Number(body.dataset.lastEventId || 0);
  let source = null;
  let renew = null;

  const esc = (v) => String(v == null ? "" : v).replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const when = (v) => (v ? String(v).replace(/\.\d+/, "").replace("+00:00", "") : "");
  // EventSource and <img> cannot send the Authorization header: they get a ticket instead.
  const withTicket = (path) => (ticket ? path + (path.includes("?") ? "&" : "?") +
    "ticket=" + encodeURIComponent(ticket) : path);
  const say = (text) => { $("#msg").textContent = text || ""; };

  async function api(method, path, payload) {
    const headers = { "Accept": "application/json" };
    if (token) headers["Authorization"] = "Bearer " + token;
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers,
      body: payload === undefined ? undefined : JSON.stringify(payload) });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error((data.error || res.status) + ": " + JSON.stringify(data.detail || ""));
    return data;
  }

  function alertRow(a) {
    const img = a.evidence_key ? `<img class="thumb" loading="lazy" alt="evidence" src="${esc(withTicket("/api/alerts/" + a.id + "/image"))}">` : "";
    return `<tr class="alert sev-${esc(a.severity)} st-${esc(a.status)}" data-alert-id="${a.id}">` +
      `<td>${img}</td><td class="sev">${esc(a.severity)}</td><td class="status">${esc(a.status)}</td>` +
      `<td>${esc(a.kind)}</td><td>${esc(a.line)}/${esc(a.station)}</td><td>${esc(a.family || "")}</td>` +
      `<td class="count">${esc(a.count)}</td><td class="msg">${esc(a.message)}</td>` +
      `<td class="seen">${esc(when(a.last_seen))}</td><td class="ackby">${esc(a.acknowledged_by || "")}</td>` +
      `<td class="actions"><button class="ack"${a.status === "active" ? "" : " disabled"}>Acknowledge</button>` +
      `<button class="resolve"${a.status === "resolved" ? " disabled" : ""}>Resolve</button>` +
      `<input class="comment-text" placeholder="comment" maxlength="2000">` +
      `<button class="comment">Comment</button></td></tr>`;
  }

  // A row is re-rendered whenever its alert changes (SSE, an action's answer); a comment the
  // operator is typing in it must survive that, text and focus alike.
  function draftsIn(root) {
    const out = new Map();
    for (const input of root.querySelectorAll("tr[data-alert-id] .comment-text")) {
      if (input.value) out.set(input.closest("tr").dataset.alertId, input.value);
    }
    const focused = document.activeElement;
    const focusId = focused && focused.classList.contains("comment-text")
      ? focused.closest("tr").dataset.alertId : null;
    return { values: out, focusId };
  }
  function restoreDrafts(root, drafts) {
    for (const [id, value] of drafts.values) {
      const input = root.querySelector(`tr[data-alert-id="${id}"] .comment-text`);
      if (input && !input.value) input.value = value;
    }
    if (drafts.focusId) {
      const input = root.querySelector(`tr[data-alert-id="${drafts.focusId}"] .comment-text`);
      if (input) input.focus();
    }
  }

  function upsert(a, fresh) {
    const tbody = $("#alerts tbody");
    const old = tbody.querySelector(`tr[data-alert-id="${a.id}"]`);
    const drafts = old ? draftsIn(old) : null;
    const tpl = document.createElement("tbody");
    tpl.innerHTML = alertRow(a);
    const row = tpl.firstElementChild;
    if (fresh) row.classList.add("new");
    if (old && !fresh) old.replaceWith(row); else { if (old) old.remove(); tbody.prepend(row); }
    if (drafts) restoreDrafts(tbody, drafts);
    applyFilter();
  }

  function applyFilter() {
    const want = $("#f-status").value;
    let shown = 0;
    for (const tr of document.querySelectorAll("#alerts tbody tr")) {
      const st = tr.querySelector(".status").textContent;
      const ok = want === "all" || (want === "" ? st !== "resolved" : st === want);
      tr.hidden = !ok; if (ok) shown += 1;
    }
    $("#alert-count").textContent = `(${shown})`;
  }

  async function connect() {
    if (source) source.close();
    clearTimeout(renew);
    ticket = "";
    if (token) {
      try { ticket = (await api("POST", "/api/stream/ticket")).ticket; }
      catch (err) { say("stream: " + err.message); renew = setTimeout(connect, 5000); return; }
      renew = setTimeout(connect, 240000);          // tickets live 5 minutes: renew before
    }
    source = new EventSource(withTicket("/api/stream?after=" + lastId));
    source.addEventListener("open", () => { $("#live").textContent = "live"; $("#live").className = "live on"; });
    source.addEventListener("error", () => {
      $("#live").textContent = "reconnecting…"; $("#live").className = "live off";
      if (source.readyState === EventSource.CLOSED) { clearTimeout(renew); renew = setTimeout(connect, 2000); }
    });
    source.addEventListener("alert", (ev) => {
      const data = JSON.parse(ev.data);
      lastId = Math.max(lastId, Number(ev.lastEventId || data.event_id));
      upsert(data.alert, data.action === "raised" || data.action === "repeated");
    });
  }

  async function act(tr, action) {
    const id = tr.dataset.alertId;
    try {
      let payload = {};
      if (action === "comment") {
        const text = tr.querySelector(".comment-text").value.trim();
        if (!text) return;
        payload = { text };
      }
      const a = await api("POST", `/api/alerts/${id}/${action}`, payload);
      if (action === "comment") {  // sent: no longer a draft (the row may have been re-rendered)
        const cur = $(`#alerts tbody tr[data-alert-id="${id}"] .comment-text`);
        if (cur) cur.value = "";
      }
      upsert(a, false); say("");
    } catch (err) { say(`${action} #${id}: ${err.message}`); }
  }

  $("#alerts").addEventListener("click", (ev) => {
    const btn = ev.target.closest("button"); if (!btn) return;
    const tr = btn.closest("tr");
    if (btn.classList.contains("ack")) act(tr, "ack");
    else if (btn.classList.contains("resolve")) act(tr, "resolve");
    else if (btn.classList.contains("comment")) act(tr, "comment");
  });
  $("#bulk-ack").addEventListener("click", async () => {
    const ids = [...document.querySelectorAll("#alerts tbody tr:not([hidden])")]
      .filter((tr) => tr.querySelector(".status").textContent === "active").map((tr) => Number(tr.dataset.alertId));
    if (!ids.length) return;
    try { const r = await api("POST", "/api/alerts/bulk/ack", { ids }); say(`acknowledged ${r.acknowledged.length}`); refreshAlerts(); }
    catch (err) { say("bulk ack: " + err.message); }
  });
  $("#f-status").addEventListener("change", applyFilter);
  $("#tokenform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("#token").value.trim(); localStorage.setItem("lw_token", token); $("#token").value = "";
    $("#who").textContent = token ? "token set" : ""; connect().then(refreshAll);
  });

  async function refreshAlerts() {
    const r = await api("GET", "/api/alerts?limit=100");
    const tbody = $("#alerts tbody");
    const drafts = draftsIn(tbody);
    tbody.innerHTML = r.items.map(alertRow).join("");
    restoreDrafts(tbody, drafts);
    applyFilter();
  }
  async function refreshTiles() {
    const [lines, workers] = await Promise.all([api("GET", "/api/lines"), api("GET", "/api/workers")]);
    $("#lines").innerHTML = lines.items.map((x) => {
      const rate = Number(x.defect_rate || 0), level = rate >= 0.1 ? "bad" : rate >= 0.02 ? "warn" : "good";
      return `<div class="card tile ${level}"><h3>${esc(x.line)} / ${esc(x.station)}</h3>` +
        `<p class="rate">${(rate * 100).toFixed(1)}% defects</p><p>${Number(x.frames_per_min || 0).toFixed(1)} frames/min · last ${esc(x.last_verdict)}</p></div>`;
    }).join("");
    $("#workers tbody").innerHTML = workers.items.map((w) => {
      const a = w.assignment || {};
      return `<tr class="worker st-${esc(w.state)}"><td>${esc(w.worker)}</td><td>${esc(w.role)}</td><td>${esc(w.state)}</td>` +
        `<td>${Number(w.load || 0).toFixed(2)}</td><td>${esc(w.queue_depth)}</td><td>${Number(w.p95_ms || 0).toFixed(1)}</td>` +
        `<td>${esc(a.epoch == null ? "" : a.epoch)}</td><td>${esc((a.streams || w.streams || []).join(", "))}</td><td>${esc(when(w.last_seen))}</td></tr>`;
    }).join("");
  }
  function refreshAll() {
    refreshAlerts().catch((e) => say(e.message));
    refreshTiles().catch(() => {});
  }

  if (token) $("#who").textContent = "token set";
  applyFilter();
  connect().then(() => { if (body.dataset.loaded !== "1") refreshAll(); });
  setInterval(() => refreshTiles().catch(() => {}), 10000);
})();
