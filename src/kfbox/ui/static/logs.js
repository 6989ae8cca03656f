// <pre data-stream="URL">: follow a log over Server-Sent Events. The server sends {text, offset}
// per event; the page keeps the last 256 KiB and stays scrolled to the end unless the reader
// scrolled up. EventSource reconnects by itself, resuming at the last offset (Last-Event-ID).
(function () {
  "use strict";
  var KEEP = 256 * 1024;

  function follow(pre) {
    var url = pre.getAttribute("data-stream");
    if (!url || !window.EventSource) { return; }
    var source = new EventSource(url);
    source.onmessage = function (e) {
      var data = JSON.parse(e.data);
      if (data.tail || !data.text) { return; }  // the page already shows the tail it was rendered with
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      if (pre.getAttribute("data-empty") === "true") { pre.textContent = ""; pre.setAttribute("data-empty", "false"); }
      pre.appendChild(document.createTextNode(data.text));
      if (pre.textContent.length > KEEP) { pre.textContent = pre.textContent.slice(-KEEP); }
      pre.setAttribute("data-offset", String(data.offset));
      if (atEnd) { pre.scrollTop = pre.scrollHeight; }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("pre[data-stream]").forEach(follow);
  });
})();
