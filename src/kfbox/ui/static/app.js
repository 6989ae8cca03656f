// Small behaviours shared by every page; each is opt-in by a data- attribute, nothing runs inline.
(function () {
  "use strict";

  // <div data-refresh="5"> ... </div>: while the page's "auto-refresh" box is ticked, swap in the
  // same element from a fresh copy of the page every N seconds (keeps focus and scroll elsewhere).
  function autoRefresh(el) {
    var seconds = parseInt(el.getAttribute("data-refresh"), 10) || 5;
    var toggle = document.getElementById("auto-refresh");
    setInterval(function () {
      if (toggle && !toggle.checked) { return; }
      if (document.hidden) { return; }
      fetch(window.location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(el.id);
          if (fresh) { el.replaceChildren.apply(el, Array.prototype.slice.call(fresh.childNodes)); }
        })
        .catch(function () {});
    }, seconds * 1000);
  }

  // <form data-confirm="Really?">: ask before a destructive POST.
  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
      });
    });
  }

  // <input type="range" data-output="id">: show the value beside a slider.
  function rangeOutputs() {
    document.querySelectorAll("input[type=range][data-output]").forEach(function (r) {
      var out = document.getElementById(r.getAttribute("data-output"));
      var show = function () { if (out) { out.textContent = r.value + "%"; } };
      r.addEventListener("input", show); show();
    });
  }

  // <select data-submit>: submit its form when the choice changes (the button stays for keyboards).
  function autoSubmit() {
    document.querySelectorAll("select[data-submit]").forEach(function (s) {
      s.addEventListener("change", function () { s.form.submit(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh][id]").forEach(autoRefresh);
    confirmForms(); rangeOutputs(); autoSubmit();
  });
})();
