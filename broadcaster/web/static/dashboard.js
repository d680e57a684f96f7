/* Dashboard: refresh the live part every few seconds (polling survives flaky proxies better
   than a long-lived stream). The server renders the fragment with escaping; we only swap it. */
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var url = live.getAttribute("data-poll-url");
  var every = parseInt(live.getAttribute("data-poll-ms"), 10) || 2000;
  var status = document.getElementById("live-status");
  var failures = 0;

  function schedule() { setTimeout(refresh, document.hidden ? every * 3 : every); }

  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) {
        if (resp.status === 401) { window.location.reload(); return null; }
        if (!resp.ok) { throw new Error(String(resp.status)); }
        return resp.json();
      })
      .then(function (data) {
        if (!data) { return; }
        live.innerHTML = data.html;
        live.setAttribute("data-updated", data.updated || "");
        if (failures && status) { status.textContent = "Đã kết nối lại."; }
        failures = 0;
      })
      .catch(function () {
        failures += 1;
        if (status && failures >= 2) { status.textContent = "Mất kết nối tới máy chủ, đang thử lại…"; }
      })
      .then(schedule, schedule);
  }
  schedule();
})();
