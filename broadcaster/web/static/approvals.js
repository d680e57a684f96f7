/* Approvals: "Nghe thử" renders the item as it will air (on the server's worker) and plays it, so
   the approver hears it before approving. */
(function () {
  "use strict";
  if (!window.Loa) { return; }
  var Loa = window.Loa;
  document.querySelectorAll(".listen[data-listen-url]").forEach(function (box) {
    var button = box.querySelector(".listen-btn");
    var status = box.querySelector(".listen-status");
    var audio = box.querySelector("audio");
    function say(text, isError) {
      status.textContent = text || "";
      status.classList.toggle("error", !!isError);
    }
    button.addEventListener("click", function () {
      button.disabled = true;
      say("Đang tạo âm thanh…");
      Loa.post(box.getAttribute("data-listen-url")).then(function (r) {
        if (!r.ok) { throw new Error(Loa.firstError(r.data)); }
        if (r.data.audio_url) { return r.data; }
        return Loa.pollJob(r.data.status_url, function (s) {
          say("Đang tạo âm thanh… " + Math.round(s.elapsed_s) + " giây");
        });
      }).then(function (done) {
        button.disabled = false;
        audio.src = done.audio_url;
        audio.hidden = false;
        say("Bấm ▶ để nghe bản tin như khi phát.");
      }, function (err) {
        button.disabled = false;
        say((err && err.message) || "Không tạo được âm thanh.", true);
      });
    });
  });
})();
