// Charts drawn as inline SVG: defect rate per station over the last hour, and a sparkline
// (mean with its min-max band) per sensor.
"use strict";
(function () {
  const { esc, get, paint, every } = window.LW;
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const W = 860, H = 240, L = 44, R = 12, T = 12, B = 26;

  // Points to SVG path segments; a missing slot (no frames) breaks the line.
  function path(pts, x, y, step) {
    let d = "", prev = null;
    for (const [t, v] of pts) {
      d += (prev !== null && t - prev <= step ? "L" : "M") + x(t).toFixed(1) + " " + y(v).toFixed(1);
      prev = t;
    }
    return d;
  }

  function niceMax(v) {
    for (const m of [0.02, 0.04, 0.1, 0.2, 0.4, 0.6, 0.8, 1]) if (v <= m) return m;  // quarters read well
    return 1;
  }

  // The x axis: the last hour, or from the first frame (ten minutes at least) on a line that
  // has run for less, so a fresh line's first minutes are not a sliver at the right edge.
  function span(data, now) {
    const first = Math.min(...data.items.flatMap((s) => s.points.map((p) => p.t)));
    return Math.max(now - data.window_s, Math.min(first, now - 600));
  }
  const TICKS_MIN = [1, 2, 5, 10, 15, 20, 30];

  function rateChart(data) {
    const now = Date.now() / 1000, t0 = span(data, now), step = data.bucket_s;
    const series = data.items.map((s) => ({
      name: `${s.line}/${s.station}`,
      pts: s.points.map((p) => [p.t + step / 2, p.bad / p.frames]),
    }));
    const top = niceMax(Math.max(0.01, ...series.flatMap((s) => s.pts.map((p) => p[1]))));
    const x = (t) => L + (W - L - R) * (t - t0) / (now - t0);
    const y = (v) => T + (H - T - B) * (1 - v / top);
    let g = "";
    for (let i = 0; i <= 4; i++) {
      const v = top * i / 4;
      g += `<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/>` +
        `<text class="ylab" x="${L - 6}" y="${y(v) + 4}">${(v * 100).toFixed(v * 100 < 10 ? 1 : 0)}%</text>`;
    }
    const minutes = (now - t0) / 60;
    const every = TICKS_MIN.find((m) => minutes / m <= 7) || 60;
    for (let m = Math.floor(minutes / every) * every; m >= 0; m -= every) {
      const t = now - m * 60;
      g += `<text class="xlab" x="${x(t)}" y="${H - 6}">${m ? "−" + m + " min" : "now"}</text>`;
    }
    const lines = series.map((s, i) => {
      const c = COLORS[i % COLORS.length];
      const lastPt = s.pts[s.pts.length - 1];
      const dot = lastPt ? `<circle cx="${x(lastPt[0])}" cy="${y(lastPt[1])}" r="3" fill="${c}"/>` : "";
      return `<path class="series" data-station="${esc(s.name)}" d="${path(s.pts, x, y, step * 1.5)}" stroke="${c}"/>${dot}`;
    }).join("");
    const legend = series.map((s, i) => {
      const last = s.pts.length ? (100 * s.pts[s.pts.length - 1][1]).toFixed(1) + "%" : "–";
      return `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(s.name)} <b>${last}</b></span>`;
    }).join("");
    return `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="defect rate per station, last hour">` +
      `${g}${lines}</svg><div class="legend">${legend || "no frames in the last hour"}</div>`;
  }

  function spark(s) {
    const w = 200, h = 44, pts = s.points;
    if (!pts.length) return "";
    const t0 = pts[0][0], t1 = Math.max(pts[pts.length - 1][0], t0 + 1);
    let lo = Math.min(...pts.map((p) => p[2])), hi = Math.max(...pts.map((p) => p[3]));
    if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
    const x = (t) => 2 + (w - 4) * (t - t0) / (t1 - t0);
    const y = (v) => 2 + (h - 4) * (1 - (v - lo) / (hi - lo));
    const band = pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[3]).toFixed(1)}`)
      .concat(pts.slice().reverse().map((p) => `${x(p[0]).toFixed(1)},${y(p[2]).toFixed(1)}`)).join(" ");
    const mean = pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    const name = s.stream.split("/").slice(1).join("/").replace("/sensor/", " · ");
    const value = s.last == null ? "–" : Number(s.last).toPrecision(4) + (s.unit ? " " + s.unit : "");
    const alarm = s.anomalies ? `<span class="badge v-anomaly">${s.anomalies} anomal${s.anomalies > 1 ? "ies" : "y"}</span>` : "";
    return `<div class="sensor${s.anomalies ? " alarm" : ""}" data-stream="${esc(s.stream)}">` +
      `<div class="sensor-head"><span>${esc(name)}</span><b>${esc(value)}</b></div>` +
      `<svg class="spark" viewBox="0 0 ${w} ${h}" preserveAspectRatio="none">` +
      `<polygon class="band" points="${band}"/><polyline class="mean" points="${mean}"/></svg>${alarm}</div>`;
  }

  let bucket = 15;  // then 60 once the line has run for more than a quarter of an hour
  every(15, async () => {
    const data = await get(`/api/live/rates?window_s=3600&bucket_s=${bucket}`);
    const now = Date.now() / 1000;
    bucket = now - span(data, now) <= 900 ? 15 : 60;  // finer slots while the line is young
    paint("#rate-chart", data, rateChart);
  });
  every(5, async () => {
    const data = await get("/api/live/sensors?window_s=600&bucket_s=10");
    paint("#sensors", data.items, (items) => items.length ? items.map(spark).join("")
      : `<p class="empty">No sensor readings in the last 10 minutes.</p>`);
  });
})();
