// Live charts: each <figure class="live-chart" data-src="/monitoring/series/NS/NAME?minutes=15&svg=1">
// polls its JSON ({t, rps, success, p50, p95, p99, inflight, desired, ready, svg}) and swaps in the
// SVG the server drew (stacked panels on one time axis; the same renderer as `kfbox loadtest --plot`).
// Our own code, no library; CSP-safe (no inline script or style).
(function () {
  "use strict";
  var PARSER = new DOMParser();
  function last(values) {
    for (var i = values.length - 1; i >= 0; i--) { if (values[i] !== null) { return values[i]; } }
    return null;
  }

  function fmt(v, digits) { return v === null ? "–" : (Math.round(v * Math.pow(10, digits)) / Math.pow(10, digits)).toString(); }

  function clock(t) { var d = new Date(t * 1000); return d.toTimeString().slice(0, 8); }

  function draw(fig, data) {
    var pipelines = fig.getAttribute("data-kind") === "pipelines";
    var old = fig.querySelector("svg");
    // the server draws the panels (kfbox.chart_svg, as `kfbox loadtest --plot` does)
    var svg = document.importNode(PARSER.parseFromString(data.svg, "image/svg+xml").documentElement, true);
    if (old) { fig.replaceChild(svg, old); } else { fig.insertBefore(svg, fig.firstChild); }
    ["rps", "p99", "ready", "desired", "inflight", "pending", "failed"].forEach(function (f) {
      var v = last(data[f] || []);
      fig.setAttribute("data-last-" + f, v === null ? "" : String(v));
    });
    var cap = fig.querySelector("figcaption");
    if (cap && pipelines) {
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
