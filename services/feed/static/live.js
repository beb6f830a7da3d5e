// Shared helpers of the page's live views (tiles.js, charts.js, gallery.js) and of teaching
// (feedback.js): reads and calls with the operator's token, picture URLs with a read ticket,
// escaping, times, and the lightbox.
"use strict";
window.LW = (function () {
  const token = () => localStorage.getItem("lw_token") || "";
  let ticket = "";
  let ticketAt = 0;

  const esc = (v) => String(v == null ? "" : v).replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  async function get(path) {
    const headers = { "Accept": "application/json" };
    if (token()) headers["Authorization"] = "Bearer " + token();
    const res = await fetch(path, { headers });
    if (!res.ok) throw new Error(path + ": " + res.status);
    return res.json();
  }

  // A call with the operator's token; an error names the API's error code and detail.
  async function api(method, path, payload) {
    const headers = { "Accept": "application/json" };
    if (token()) headers["Authorization"] = "Bearer " + token();
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers,
      body: payload === undefined ? undefined : JSON.stringify(payload) });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error((data.error || res.status) + ": " + JSON.stringify(data.detail || ""));
    return data;
  }

  // <img> cannot send the Authorization header: with a token, pictures carry a read ticket
  // (renewed well before its 5 minutes are up).
  async function ready() {
    if (!token()) { ticket = ""; return; }
    if (ticket && Date.now() - ticketAt < 180000) return;
    const res = await fetch("/api/stream/ticket", { method: "POST",
      headers: { "Authorization": "Bearer " + token(), "Accept": "application/json" } });
    if (res.ok) { ticket = (await res.json()).ticket; ticketAt = Date.now(); }
  }
  const src = (path) => esc(ticket ? path + "?ticket=" + encodeURIComponent(ticket) : path);

  const ms = (v) => (v ? Date.parse(String(v).replace(/(\.\d{3})\d+/, "$1")) : NaN);
  function ago(v) {
    const s = (Date.now() - ms(v)) / 1000;
    if (!isFinite(s)) return "";
    if (s < 90) return Math.max(0, Math.round(s)) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 129600) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  const clock = (v) => { const d = new Date(ms(v)); return isNaN(d) ? "" : d.toLocaleTimeString(); };
  const stamp = (v) => { const d = new Date(ms(v)); return isNaN(d) ? "" : d.toLocaleString(); };
  const pct = (x) => (100 * Number(x || 0)).toFixed(1) + "%";

  // Re-render a region only when its data changed (no flicker of cached pictures).
  const last = new Map();
  function paint(sel, data, html) {
    const el = document.querySelector(sel);
    if (!el) return false;
    const key = JSON.stringify(data) + ticket + Math.floor(Date.now() / 15000);  // "… ago" ages
    if (last.get(sel) === key) return false;
    last.set(sel, key);
    el.innerHTML = html(data);
    return true;
  }

  // Every picture marked .zoom opens large in the lightbox; a click or Escape closes it.
  function lightbox() {
    const box = document.getElementById("lightbox");
    if (!box) return;
    const close = () => { box.hidden = true; box.querySelector("img").removeAttribute("src"); };
    document.addEventListener("click", (ev) => {
      const img = ev.target.closest("img.zoom");
      if (img) {
        box.querySelector("img").src = img.currentSrc || img.src;
        box.querySelector("figcaption").textContent = img.dataset.caption || img.alt || "";
        box.hidden = false;
      } else if (!box.hidden && ev.target.closest("#lightbox")) close();
    });
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !box.hidden) close(); });
  }

  function every(seconds, fn) {
    const run = () => ready().then(fn).catch((err) => console.warn(err.message));
    run();
    setInterval(run, seconds * 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", lightbox);
  else lightbox();
  return { esc, get, api, src, ago, clock, stamp, pct, paint, every };
})();
