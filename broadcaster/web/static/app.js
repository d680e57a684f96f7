/* Loa xã: shared helpers. Plain JavaScript, no framework, nothing loaded from outside. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  /* The menu button of narrow screens: opens and closes the menu. */
  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.getElementById("menu-toggle");
    var nav = document.getElementById("main-nav");
    if (!toggle || !nav) { return; }
    toggle.addEventListener("click", function () {
      var open = !nav.classList.contains("open");
      nav.classList.toggle("open", open);
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  });

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  /* POST a FormData (or nothing) with the CSRF header; resolves to {ok, status, data}. */
  function post(url, body) {
    return fetch(url, {
      method: "POST",
      body: body || new FormData(),
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "Accept": "application/json" }
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        return { ok: resp.ok, status: resp.status, data: data };
      });
    });
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (data) {
          return { ok: resp.ok, status: resp.status, data: data };
        });
      });
  }

  /* Poll a job-status URL until it is done or failed; onTick gets each running status. */
  function pollJob(url, onTick) {
    return new Promise(function (resolve, reject) {
      var delay = 400;
      function tick() {
        getJSON(url).then(function (r) {
          if (!r.ok) { reject(new Error((r.data && r.data.error) || "Lỗi kết nối tới máy chủ.")); return; }
          if (r.data.state === "done") { resolve(r.data); return; }
          if (r.data.state === "error") { reject(new Error(r.data.error || "Không thực hiện được.")); return; }
          if (onTick) { onTick(r.data); }
          delay = Math.min(delay * 1.3, 1500);
          setTimeout(tick, delay);
        }, function () {
          setTimeout(tick, 2000); /* flaky network: keep trying */
        });
      }
      tick();
    });
  }

  function firstError(data, fallback) {
    if (data && data.errors) {
      for (var key in data.errors) { if (Object.prototype.hasOwnProperty.call(data.errors, key)) { return data.errors[key]; } }
    }
    return (data && data.error) || fallback || "Có lỗi xảy ra. Vui lòng thử lại.";
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var message = form.getAttribute && form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { ev.preventDefault(); }
  });

  document.addEventListener("click", function (ev) {
    var opener = ev.target.closest && ev.target.closest("[data-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-dialog"));
      if (dialog && typeof dialog.showModal === "function") {
        ev.preventDefault();
        dialog.showModal();
        var cancel = dialog.querySelector("[data-close]");
        if (cancel) { cancel.focus(); }
      }
      return;
    }
    var closer = ev.target.closest && ev.target.closest("[data-close]");
    if (closer) {
      var dlg = closer.closest("dialog");
      if (dlg) { dlg.close(); }
    }
  });

  window.Loa = { post: post, getJSON: getJSON, pollJob: pollJob, firstError: firstError, csrfToken: csrfToken };
})();
