// Run page: while the run is active, poll the run's state deltas and recolour graph nodes and table
// rows; follow the open task's log by byte offset. Reloads once when the run ends (artifacts appear).
(function () {
  "use strict";
  var root = document.getElementById("run");
  if (!root) { return; }
  var runId = root.getAttribute("data-run");
  var open = root.getAttribute("data-open");

  // Each poll sends the version the page shows and gets back only the nodes and tasks that changed
  // since (all of them, with reset: true, when the server no longer has that version).
  var version = root.getAttribute("data-version") || "";

  function poll() {
    if (root.getAttribute("data-final") === "true") { return; }
    var url = "/runs/" + encodeURIComponent(runId) + "/states.json?since=" + encodeURIComponent(version) +
      (open ? "&open=" + encodeURIComponent(open) : "");
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : null; }).then(function (data) {
      if (!data) { setTimeout(poll, 3000); return; }
      version = data.version;
      var states = data.nodes || {};
      Object.keys(states).forEach(function (id) {
        var g = document.querySelector('#dag [data-node="' + CSS.escape(id) + '"]');
        var s = states[id];
        if (g && g.getAttribute("data-state") !== s) {
          g.setAttribute("data-state", s);
          var label = g.querySelector("[data-state-text]");
          if (label) { label.textContent = s.toLowerCase(); }
        }
      });
      var added = false;
      (data.tasks || []).forEach(function (t) {
        var tr = document.querySelector('#task-table tr[data-task="' + CSS.escape(t.task_id) + '"]');
        if (!tr) { added = true; return; }
        var badge = tr.querySelector("[data-cell=state] .state");
        if (badge && badge.textContent !== t.state) {
          badge.textContent = t.state;
          badge.className = "state state-" + t.state.toLowerCase();
        }
      });
      if (data.run && data.run.final) { window.location.reload(); return; }
      if (added && !root.getAttribute("data-task")) { window.location.reload(); return; }
      setTimeout(poll, 1500);
    }).catch(function () { setTimeout(poll, 3000); });
  }

  function follow(pre) {
    if (pre.getAttribute("data-live") !== "true") { return; }
    var offset = parseInt(pre.getAttribute("data-offset"), 10) || 0;
    var tick = function () {
      fetch(pre.getAttribute("data-log") + "&offset=" + offset, { credentials: "same-origin" }).then(function (r) {
        var next = parseInt(r.headers.get("X-Log-Offset"), 10);
        var state = r.headers.get("X-Task-State");
        return r.text().then(function (text) {
          if (text) {
            var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
            pre.appendChild(document.createTextNode(text));
            if (atEnd) { pre.scrollTop = pre.scrollHeight; }
          }
          if (!isNaN(next)) { offset = next; }
          if (state === "RUNNING" || state === "PENDING") { setTimeout(tick, 1000); }
        });
      }).catch(function () { setTimeout(tick, 3000); });
    };
    tick();
  }

  setTimeout(poll, 1500);
  document.querySelectorAll("pre.log[data-log]").forEach(follow);
})();
