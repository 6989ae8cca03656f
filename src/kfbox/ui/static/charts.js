// Live charts: each <figure class="live-chart" data-src="/monitoring/series/NS/NAME?minutes=15">
// polls its JSON ({t, rps, success, p50, p95, p99, inflight, desired, ready}) and draws stacked
// SVG panels on one time axis. Our own code, no library; CSP-safe (no inline script or style).
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 720, H = 92, LEFT = 52, RIGHT = 8, GAP = 18;
  var SERVICE_PANELS = [
    { title: "requests/s", fields: [["rps", "#2563eb", "req/s"]] },
    { title: "success %", fields: [["success", "#16a34a", "success"]], scale: 100, max: 100 },
    { title: "latency ms", fields: [["p50", "#0891b2", "p50"], ["p95", "#d97706", "p95"], ["p99", "#dc2626", "p99"]] },
    { title: "replicas · in flight", fields: [["desired", "#7c3aed", "desired"], ["ready", "#16a34a", "ready"], ["inflight", "#64748b", "in flight"]] }
  ];

  var PIPELINE_PANELS = [
    { title: "runs queued · running", fields: [["pending", "#d97706", "pending"], ["running", "#2563eb", "running"]] },
    { title: "runs finished", fields: [["succeeded", "#16a34a", "succeeded"], ["failed", "#dc2626", "failed"]] }
  ];

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function last(values) {
    for (var i = values.length - 1; i >= 0; i--) { if (values[i] !== null) { return values[i]; } }
    return null;
  }

  function fmt(v, digits) { return v === null ? "–" : (Math.round(v * Math.pow(10, digits)) / Math.pow(10, digits)).toString(); }

  function clock(t) { var d = new Date(t * 1000); return d.toTimeString().slice(0, 8); }

  function draw(fig, data) {
    var t = data.t || [];
    var PANELS = fig.getAttribute("data-kind") === "pipelines" ? PIPELINE_PANELS : SERVICE_PANELS;
    var old = fig.querySelector("svg");
    var svg = el("svg", { viewBox: "0 0 " + W + " " + (PANELS.length * (H + GAP) + 16), role: "img",
      "class": "chart", "aria-label": "live metrics" });
    var t0 = t.length ? t[0] : 0, t1 = t.length ? t[t.length - 1] : 1;
    var span = Math.max(t1 - t0, 1);
    function x(ti) { return LEFT + (W - LEFT - RIGHT) * (ti - t0) / span; }
    PANELS.forEach(function (panel, p) {
      var top = p * (H + GAP) + 12;
      var scale = panel.scale || 1, max = panel.max || 0;
      panel.fields.forEach(function (f) {
        (data[f[0]] || []).forEach(function (v) { if (v !== null && v * scale > max) { max = v * scale; } });
      });
      max = max > 0 ? max * 1.1 : 1;
      el("rect", { x: LEFT, y: top, width: W - LEFT - RIGHT, height: H, fill: "none", stroke: "#cbd5e1" }, svg);
      var label = el("text", { x: 4, y: top + 10, "font-size": "10", fill: "#334155" }, svg);
      label.textContent = panel.title;
      var top_ = el("text", { x: LEFT - 4, y: top + 20, "font-size": "9", "text-anchor": "end", fill: "#64748b" }, svg);
      top_.textContent = fmt(max, max < 10 ? 2 : 0);
      var legend = LEFT + 6;
      panel.fields.forEach(function (f) {
        var values = data[f[0]] || [];
        var d = "", pen = false;
        for (var i = 0; i < t.length; i++) {
          var v = values[i];
          if (v === null || v === undefined) { pen = false; continue; }
          var y = top + H - H * Math.min(v * scale, max) / max;
          d += (pen ? "L" : "M") + x(t[i]).toFixed(1) + " " + y.toFixed(1);
          pen = true;
        }
        if (d) { el("path", { d: d, fill: "none", stroke: f[1], "stroke-width": "1.5", "data-field": f[0] }, svg); }
        var key = el("text", { x: legend, y: top + H + 12, "font-size": "9", fill: f[1] }, svg);
        var now = last(values);
        key.textContent = f[2] + " " + fmt(now === null ? null : now * scale, 2);
        legend += 110;
      });
    });
    if (t.length) {
      var a = el("text", { x: LEFT, y: PANELS.length * (H + GAP) + 12, "font-size": "9", fill: "#64748b" }, svg);
      a.textContent = clock(t0);
      var b = el("text", { x: W - RIGHT, y: PANELS.length * (H + GAP) + 12, "font-size": "9", fill: "#64748b", "text-anchor": "end" }, svg);
      b.textContent = clock(t1);
    }
    if (old) { fig.replaceChild(svg, old); } else { fig.insertBefore(svg, fig.firstChild); }
    ["rps", "p99", "ready", "desired", "inflight", "pending", "failed"].forEach(function (f) {
      var v = last(data[f] || []);
      fig.setAttribute("data-last-" + f, v === null ? "" : String(v));
    });
    var cap = fig.querySelector("figcaption");
    if (cap && PANELS === PIPELINE_PANELS) {
      cap.textContent = "from " + data.source + " · " + fmt(last(data.pending || []), 0) + " pending · " +
        fmt(last(data.running || []), 0) + " running · updated " + clock(Date.now() / 1000);
    } else if (cap) {
      cap.textContent = "from " + data.source + " · " + fmt(last(data.rps || []), 1) + " req/s · p99 " +
        fmt(last(data.p99 || []), 1) + " ms · " + fmt(last(data.ready || []), 0) + "/" + fmt(last(data.desired || []), 0) +
        " replicas ready · updated " + clock(Date.now() / 1000);
    }
  }

  function poll(fig) {
    var every = parseFloat(fig.getAttribute("data-refresh") || "5") * 1000;
    function tick() {
      fetch(fig.getAttribute("data-src"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) { draw(fig, data); } })
        .catch(function () { /* the server restarts: try again next tick */ })
        .then(function () { setTimeout(tick, every); });
    }
    tick();
  }

  document.querySelectorAll("figure.live-chart[data-src]").forEach(poll);
}());
