// The defect family gallery: exemplar pictures of each family with its size and when it
// was first and last seen.
"use strict";
(function () {
  const { esc, get, src, ago, clock, paint, every } = window.LW;

  function family(f) {
    const pics = f.sample_images.map((path, i) =>
      `<img class="zoom" loading="lazy" alt="${esc(f.name)} exemplar ${i + 1}" ` +
      `data-caption="${esc(f.name)} (${esc(f.family)}) exemplar ${i + 1}" src="${src(path)}">`).join("");
    return `<article class="fam" data-family="${esc(f.family)}">` +
      `<header><h3>${esc(f.name)}</h3><small>${esc(f.family)}</small>` +
      `<span class="count">${esc(f.size)}</span></header>` +
      `<div class="fam-pics">${pics || '<div class="noimg">no exemplar picture</div>'}</div>` +
      `<p>first seen ${esc(clock(f.first_seen))} · last seen ${esc(ago(f.last_seen))} · ` +
      `${Number(f.rate_per_hour || 0).toFixed(1)}/h</p>` +
      `<p class="fam-cams">${f.cameras.map((c) => esc(c.split("/").slice(1).join("/"))).join(", ")}</p></article>`;
  }

  every(10, async () => {
    const data = await get("/api/live/families?samples=6");
    paint("#gallery", data.items, (items) => items.length ? items.map(family).join("")
      : `<p class="empty">No defect family yet: families form as flagged frames are clustered.</p>`);
  });
})();
