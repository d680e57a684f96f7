/* dashboard.js: live parts of a page (the dashboard, a broadcast's page): the element #live is refreshed every
   few seconds from its data-poll-url, a JSON view whose "html" the server rendered with escaping;
   we only swap it. Polling survives flaky proxies better than a long-lived stream. A view that
   answers "final": true (a finished broadcast) is not asked again. */
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var url = live.getAttribute("data-poll-url");
  var every = parseInt(live.getAttribute("data-poll-ms"), 10) || 2000;
  var status = document.getElementById("live-status");
  var failures = 0;
  var stopped = live.getAttribute("data-final") === "true";

  function schedule() { if (!stopped) { setTimeout(refresh, document.hidden ? every * 3 : every); } }

  function swap(html) {
    /* The view may render the whole page part, wrapper included: take what is inside #live. */
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("live");
    live.innerHTML = fresh ? fresh.innerHTML : doc.body.innerHTML;
  }

  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) {
        if (resp.status === 401) { window.location.reload(); return null; }
        if (!resp.ok) { throw new Error(String(resp.status)); }
        return resp.json();
      })
      .then(function (data) {
        if (!data) { return; }
        swap(data.html);
        live.setAttribute("data-updated", data.updated || "");
        if (failures && status) { status.textContent = "Đã kết nối lại."; }
        failures = 0;
        if (data.final) { stopped = true; }
      })
      .catch(function () {
        failures += 1;
        if (status && failures >= 2) { status.textContent = "Mất kết nối tới máy chủ, đang thử lại…"; }
      })
      .then(schedule, schedule);
  }
  schedule();
})();
