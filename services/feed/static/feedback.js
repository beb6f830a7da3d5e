// LineWatch operator page, teaching: mark an alert's frame (not a defect / confirmed / unsure),
// see what each camera was taught, and roll a change back (docs/model.md, "Teaching").
"use strict";
(function () {
  const $ = (sel, el) => (el || document).querySelector(sel);
  const esc = window.LW.esc;
  const say = (text) => { const m = $("#teach-msg"); if (m) m.textContent = text || ""; };
  const api = window.LW.api;  // live.js: calls with the operator's token

  const section = document.createElement("section");
  section.id = "teach-section";
  section.innerHTML = `<h2>Teaching</h2><div class="toolbar">` +
    `<input id="teach-camera" placeholder="site/line/station/camera" size="36" maxlength="400">` +
    `<button id="teach-show">Show taught changes</button> <span id="teach-msg" role="status"></span></div>` +
    `<table id="teach"><thead><tr><th>version</th><th>action</th><th>by</th><th>novelty threshold</th>` +
    `<th>false alarms before → after</th><th>recall on confirmed</th><th>at</th><th></th></tr></thead>` +
    `<tbody></tbody></table>`;
  $("main").appendChild(section);

  async function wait(id) {                       // the worker answers asynchronously
    for (let i = 0; i < 40; i++) {
      const fb = await api("GET", "/api/feedback/" + id);
      if (fb.status !== "requested") return fb;
      await new Promise((r) => setTimeout(r, 250));
    }
    return { status: "requested", reason: "no answer yet" };
  }

  async function mark(row, label) {
    const body = { alert_id: Number(row.dataset.alertId), label };
    if (label === "confirmed") {
      const family = prompt("Family (existing or new id), empty for none", "");
      if (family) body.family = family;
    }
    say("sending " + label + "…");
    const sent = await api("POST", "/api/feedback", body);
    const fb = await wait(sent.id);
    say(`feedback ${sent.id}: ${fb.status}${fb.reason ? " (" + fb.reason + ")" : ""}`);
    $("#teach-camera").value = sent.stream.replace("/camera/", "/");
    await show();
  }

  function decorate(row) {
    const cell = row.querySelector(".actions");
    if (!cell || cell.querySelector(".fb")) return;
    for (const [label, text] of [["not_a_defect", "Not a defect"], ["confirmed", "Confirm"],
                                 ["unsure", "Unsure"]]) {
      const b = document.createElement("button");
      b.className = "fb fb-" + label;
      b.textContent = text;
      b.addEventListener("click", () => mark(row, label).catch((e) => say(e.message)));
      cell.appendChild(b);
    }
  }
  const tbody = $("#alerts tbody");
  if (tbody) {
    tbody.querySelectorAll("tr[data-alert-id]").forEach(decorate);
    new MutationObserver(() => tbody.querySelectorAll("tr[data-alert-id]").forEach(decorate))
      .observe(tbody, { childList: true, subtree: true });
  }

  const num = (v) => (v == null ? "configured" : Number(v).toPrecision(4));
  const pct = (v, n) => (v == null ? "–" : (100 * v).toFixed(1) + " % of " + n);
  async function show() {
    const cam = $("#teach-camera").value.trim();
    if (!cam) return;
    const data = await api("GET", "/api/cameras/" + cam + "/teach");
    $("#teach tbody").innerHTML = data.items.map((c) =>
      `<tr data-version="${esc(c.version)}"><td>${esc(c.version)}</td><td>${esc(c.action)}</td>` +
      `<td>${esc(c.actor)}</td><td>${esc(num(c.previous_novelty_threshold))} → ${esc(num(c.novelty_threshold))}</td>` +
      `<td>${esc(pct(c.false_alarm_before, c.frames_before))} → ${esc(pct(c.false_alarm_after, c.frames_after))}</td>` +
      `<td>${c.recall_after == null ? "" : esc(c.recall_before) + " → " + esc(c.recall_after)}</td>` +
      `<td>${esc(c.ts)}</td><td><button class="rollback">Roll back</button></td></tr>`).join("");
  }
  $("#teach-show").addEventListener("click", () => show().catch((e) => say(e.message)));
  $("#teach tbody").addEventListener("click", (ev) => {
    const btn = ev.target.closest("button.rollback");
    if (!btn) return;
    const version = Number(btn.closest("tr").dataset.version);
    const cam = $("#teach-camera").value.trim();
    api("POST", "/api/cameras/" + cam + "/teach/rollback", { version })
      .then(async (r) => {
        say(`rolling back v${r.undone} (restores v${r.restores})`);
        const newest = Math.max(...[...$("#teach tbody").rows].map((x) => Number(x.dataset.version)));
        for (let i = 0; i < 40; i++) {             // the worker applies it asynchronously
          await show();
          if ($(`#teach tbody tr[data-version="${newest + 1}"]`)) return;
          await new Promise((res) => setTimeout(res, 250));
        }
      })
      .catch((e) => say(e.message));
  });
})();
