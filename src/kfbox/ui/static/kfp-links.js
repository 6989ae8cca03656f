// Kubeflow Pipelines UI links keep their target after '#', which browsers never send to a server:
// '#/runs/details/<id>' -> '/runs/<id>', likewise experiments and pipelines (and their versions).
(function () {
  "use strict";
  var hash = window.location.hash.replace(/^#/, "");
  var m = hash.match(/^\/(runs|experiments|pipelines)\/details\/([A-Za-z0-9._-]+)(?:\/version\/([A-Za-z0-9._-]+))?/);
  var target = "/";
  if (m) {
    target = "/" + m[1] + "/" + encodeURIComponent(m[2]);
    if (m[1] === "pipelines" && m[3]) { target += "?version=" + encodeURIComponent(m[3]); }
  } else if (/^\/(runs|experiments|pipelines)\/?$/.test(hash)) {
    target = hash.replace(/\/$/, "");
  }
  var note = document.getElementById("kfp-link");
  if (note) { note.textContent = "Opening " + target + " …"; }
  window.location.replace(target);
})();
