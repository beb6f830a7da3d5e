// Camera tiles (one per camera: latest verdict, rate, last flagged frame with its anomaly
// map) and the strip of flagged frames, refreshed every few seconds.
"use strict";
(function () {
  const { esc, get, src, ago, stamp, pct, paint, every } = window.LW;

  function badge(verdict) {
    return `<span class="badge v-${esc(verdict)}">${esc(verdict)}</span>`;
  }
  function what(f) {
    return f.verdict === "defect" ? f.predicted_class : f.family ? "anomaly " + f.family : "anomaly";
  }

  function tile(t) {
    const cur = t.latest || {};
    const bad = t.last_flagged;
    const caption = bad ? `${t.stream} · ${what(bad)} · ${stamp(bad.decided_at)}` : "";
    const pic = bad && bad.image
      ? `<img class="zoom" loading="lazy" alt="last flagged frame of ${esc(t.camera)}" ` +
        `data-caption="${esc(caption)}" src="${src(bad.image)}">`
      : `<div class="noimg">no flagged frame yet</div>`;
    const level = t.defect_rate >= 0.1 ? "bad" : t.defect_rate >= 0.02 ? "warn" : "good";
    return `<article class="cam ${level}" data-stream="${esc(t.stream)}">` +
      `<div class="cam-pic">${pic}${badge(cur.verdict)}</div>` +
      `<div class="cam-body"><h3>${esc(t.line)} / ${esc(t.station)} / <b>${esc(t.camera)}</b></h3>` +
      `<p class="cam-rate"><span class="big">${pct(t.defect_rate)}</span> flagged · ` +
      `${Number(t.frames_per_min).toFixed(1)} frames/min</p>` +
      `<p class="cam-latest">latest #${esc(cur.seq)} ${esc(cur.verdict)} · ${esc(ago(cur.decided_at))}` +
      `${cur.part ? " · " + esc(cur.part) : ""}</p>` +
      `<p class="cam-defect">${bad ? "last defect: <b>" + esc(what(bad)) + "</b> · " + esc(ago(bad.decided_at)) : "no defect in view"}</p>` +
      `<p class="cam-model">model ${esc(cur.model_version)}</p></div></article>`;
  }

  function frame(f) {
    const caption = `${f.stream} · ${what(f)} · ${stamp(f.decided_at)} · model ${f.model_version}`;
    return `<figure class="flag" data-frame-id="${esc(f.id)}">` +
      `<img class="zoom" loading="lazy" alt="flagged frame ${esc(f.id)} with its anomaly map" ` +
      `data-caption="${esc(caption)}" src="${src(f.image)}">` +
      `<figcaption>${badge(f.verdict)} <b>${esc(what(f))}</b><br>` +
      `${esc(f.line)}/${esc(f.station)}/${esc(f.camera)} · ${esc(ago(f.decided_at))}</figcaption></figure>`;
  }

  every(3, async () => {
    const [cams, flagged] = await Promise.all([get("/api/live/cameras"), get("/api/live/flagged?limit=12")]);
    paint("#cameras", cams.items, (items) => items.length ? items.map(tile).join("")
      : `<p class="empty">No camera has sent a frame in the last ${Math.round(cams.window_s / 60)} minutes.</p>`);
    paint("#flagged", flagged.items, (items) => items.length ? items.map(frame).join("")
      : `<p class="empty">No flagged frame yet.</p>`);
  });
})();
