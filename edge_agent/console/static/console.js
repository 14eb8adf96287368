// edge-agent console: live sections over server-sent events, and the trend chart (SVG, no library).
"use strict";

const LEVEL_COLOURS = ["#2e7d32", "#1565c0", "#f9c21b", "#ef6c00", "#c62828"];

function connect(page, onSample) {
  const conn = document.getElementById("conn");
  const es = new EventSource("/live?page=" + encodeURIComponent(page));
  es.onopen = () => { conn.dataset.state = "on"; };
  es.onerror = () => { conn.dataset.state = "off"; };     // EventSource reconnects by itself
  es.addEventListener("sections", (e) => {
    const sections = JSON.parse(e.data);
    for (const [name, html] of Object.entries(sections)) {
      const el = document.querySelector('[data-section="' + name + '"]');
      if (el) el.innerHTML = html;
    }
    document.body.dataset.updated = String(Date.now());
  });
  es.addEventListener("sample", (e) => onSample && onSample(JSON.parse(e.data)));
  return es;
}

// ------------------------------------------------------------------ chart

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const n = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
  if (parent) parent.appendChild(n);
  return n;
}

function hhmm(t) {
  const d = new Date(t * 1000);
  return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
}

function niceStep(span) {
  const raw = span / 5, p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

class Trend {
  constructor(box) {
    this.box = box;
    this.src = box.dataset.src;
    this.span = "hour";
    this.data = null;
    this.live = [];
    document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => {
      document.querySelectorAll(".tabs button").forEach((x) => x.classList.toggle("on", x === b));
      this.span = b.dataset.span;
      this.draw();
    }));
    window.addEventListener("resize", () => this.draw());
    this.load();
    setInterval(() => this.load(), 60000);
  }

  async load() {
    const r = await fetch(this.src, { cache: "no-store" });
    if (!r.ok) return;
    this.data = await r.json();
    this.draw();
  }

  sample(s) {
    if (s.v === null || s.v === undefined) return;
    this.live.push([s.t, s.v]);
    if (this.live.length > 3600) this.live.shift();
    if (this.data) { this.data.now = s.t; this.draw(); }
  }

  draw() {
    const d = this.data;
    if (!d) return;
    const W = this.box.clientWidth || 800, H = this.box.clientHeight || 340;
    const m = { l: 56, r: 110, t: 12, b: 28 };
    const spanS = this.span === "hour" ? 3600 : 86400;
    const t1 = d.now, t0 = t1 - spanS;
    const buckets = (this.span === "hour" ? d.hour : d.day).filter((b) => b[0] >= t0 - 120);
    const live = this.span === "hour" ? this.live.filter((p) => p[0] >= t0) : [];
    let lo = Infinity, hi = -Infinity;
    for (const b of buckets) { lo = Math.min(lo, b[1]); hi = Math.max(hi, b[2]); }
    for (const p of live) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); }
    if (!isFinite(lo)) { lo = d.range[0]; hi = d.range[1]; }
    for (const th of d.thresholds) {          // thresholds stay in view when they are near the data
      if (th.value <= hi + (hi - lo + 1e-9) * 1.5 && th.value >= lo - (hi - lo + 1e-9) * 1.5) {
        lo = Math.min(lo, th.value); hi = Math.max(hi, th.value);
      }
    }
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
    const x = (t) => m.l + (t - t0) / (t1 - t0) * (W - m.l - m.r);
    const y = (v) => m.t + (hi - v) / (hi - lo) * (H - m.t - m.b);
    this.box.textContent = "";
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "trend" }, this.box);
    el("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: "#fbfcfd", stroke: "#d9dee4" }, svg);
    const step = niceStep(hi - lo);
    for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
      el("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v), stroke: "#eef1f4" }, svg);
      el("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#6b7785" }, svg)
        .textContent = +v.toFixed(Math.max(0, d.decimals));
    }
    const tstep = this.span === "hour" ? 600 : 3 * 3600;
    for (let t = Math.ceil(t0 / tstep) * tstep; t <= t1; t += tstep) {
      el("line", { x1: x(t), x2: x(t), y1: m.t, y2: H - m.b, stroke: "#eef1f4" }, svg);
      el("text", { x: x(t), y: H - 8, "text-anchor": "middle", "font-size": 11, fill: "#6b7785" }, svg).textContent = hhmm(t);
    }
    if (buckets.length) {
      const width = this.span === "hour" ? 10 : 120;
      let top = "", bottom = "";
      for (const b of buckets) {
        top += `${x(Math.max(b[0], t0))},${y(b[2])} ${x(Math.min(b[0] + width, t1))},${y(b[2])} `;
      }
      for (const b of [...buckets].reverse()) {
        bottom += `${x(Math.min(b[0] + width, t1))},${y(b[1])} ${x(Math.max(b[0], t0))},${y(b[1])} `;
      }
      el("polygon", { points: top + bottom, fill: "#90b4dc", "fill-opacity": 0.55, stroke: "#5b8cc4",
                      "stroke-width": 1, class: "band" }, svg);
    }
    if (live.length) {
      el("polyline", { points: live.map((p) => `${x(p[0])},${y(p[1])}`).join(" "), fill: "none",
                       stroke: "#17324d", "stroke-width": 1.6, class: "live" }, svg);
    }
    for (const th of d.thresholds) {
      if (th.value < lo || th.value > hi) continue;
      const c = LEVEL_COLOURS[th.level] || "#888";
      el("line", { x1: m.l, x2: W - m.r, y1: y(th.value), y2: y(th.value), stroke: c, "stroke-width": 1.5,
                   "stroke-dasharray": "6 4", class: "threshold" }, svg);
      el("text", { x: W - m.r + 4, y: y(th.value) + 4, "font-size": 11, fill: c }, svg)
        .textContent = `${th.name} ${th.value}`;
    }
    svg.dataset.buckets = String(buckets.length);
    svg.dataset.live = String(live.length);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("chart");
  const chart = box ? new Trend(box) : null;
  const page = document.body.dataset.live;
  if (page) connect(page, chart ? (s) => chart.sample(s) : null);
});
