/* Compose page: preview (normalized text + audio, rendered on the server's worker),
   document import, recording upload and microphone recording. */
(function () {
  "use strict";
  var form = document.getElementById("compose-form");
  if (!form || !window.Loa) { return; }
  var Loa = window.Loa;
  var text = document.getElementById("text");
  var charCount = document.getElementById("char-count");

  function $(id) { return document.getElementById(id); }
  function setStatus(el, message, isError) {
    if (!el) { return; }
    el.textContent = message || "";
    el.classList.toggle("error", !!isError);
  }

  /* character counter */
  function updateCount() {
    if (charCount && text) { charCount.textContent = "(" + text.value.length.toLocaleString("vi-VN") + " ký tự)"; }
  }
  if (text) { text.addEventListener("input", updateCount); updateCount(); }

  /* "all" and zones: show what is covered */
  var all = $("target-all");
  function syncTargets() {
    var allOn = all && all.checked;
    form.querySelectorAll('input[name="targets"]').forEach(function (box) {
      if (box === all) { return; }
      var zone = box.getAttribute("data-in-zone");
      var zoneBox = zone ? form.querySelector('input[data-zone="' + CSS.escape(zone) + '"]') : null;
      var covered = allOn || (zoneBox && zoneBox.checked);
      box.closest("label").classList.toggle("muted", !!covered);
    });
  }
  form.addEventListener("change", function (ev) { if (ev.target.name === "targets") { syncTargets(); } });
  syncTargets();

  /* schedule kind */
  function syncWhen() {
    var weekly = form.querySelector('input[name="when"][value="weekly"]');
    var isWeekly = weekly && weekly.checked;
    form.querySelectorAll(".when-once").forEach(function (el) { el.hidden = isWeekly; });
    form.querySelectorAll(".when-weekly").forEach(function (el) { el.hidden = !isWeekly; });
  }
  form.addEventListener("change", function (ev) { if (ev.target.name === "when") { syncWhen(); } });
  syncWhen();

  /* voices follow the chosen engine */
  var engine = $("engine"), voice = $("voice");
  function syncVoices() {
    if (!engine || !voice) { return; }
    voice.querySelectorAll("option[data-engine]").forEach(function (opt) {
      var show = !engine.value || opt.getAttribute("data-engine") === engine.value;
      opt.hidden = !show;
      opt.disabled = !show;
      if (!show && opt.selected) { voice.value = ""; }
    });
  }
  if (engine) { engine.addEventListener("change", syncVoices); syncVoices(); }

  /* preview */
  var previewBtn = $("preview-btn"), previewStatus = $("preview-status"), previewText = $("preview-text");
  var progress = $("preview-progress"), previewAudio = $("preview-audio");
  var previewRun = 0;

  function showSegments(segments) {
    previewText.textContent = "";
    segments.forEach(function (seg) {
      if (seg.original !== null && seg.original !== undefined) {
        var mark = document.createElement("mark");
        mark.textContent = seg.text;
        mark.title = "Chữ gốc: " + seg.original;
        mark.setAttribute("tabindex", "0");
        mark.setAttribute("aria-label", seg.text + " (chữ gốc: " + seg.original + ")");
        previewText.appendChild(mark);
      } else {
        previewText.appendChild(document.createTextNode(seg.text));
      }
    });
  }

  function previewData() {
    var data = new FormData();
    ["text", "engine", "voice", "repeat", "audio_key"].forEach(function (name) {
      var el = form.elements[name];
      if (el) { data.append(name, el.value); }
    });
    return data;
  }

  if (previewBtn) {
    previewBtn.addEventListener("click", function () {
      var run = ++previewRun;
      previewBtn.disabled = true;
      previewAudio.hidden = true;
      previewAudio.removeAttribute("src");
      setStatus(previewStatus, "Đang chuẩn hóa nội dung…");
      Loa.post(form.getAttribute("data-preview-url"), previewData()).then(function (r) {
        if (run !== previewRun) { return; }
        if (!r.ok) {
          previewBtn.disabled = false;
          setStatus(previewStatus, Loa.firstError(r.data), true);
          return;
        }
        showSegments(r.data.segments || []);
        if (!r.data.status_url) { /* an uploaded recording: nothing to render */
          previewBtn.disabled = false;
          previewAudio.src = r.data.audio_url;
          previewAudio.hidden = false;
          setStatus(previewStatus, "Nghe thử bản ghi âm đã tải lên.");
          return;
        }
        var changed = r.data.changed || 0;
        var intro = changed ? ("Có " + changed + " chỗ được đổi cách đọc (tô màu). ") : "";
        progress.hidden = false;
        setStatus(previewStatus, intro + "Đang tạo âm thanh…");
        Loa.pollJob(r.data.status_url, function (s) {
          if (run === previewRun) { setStatus(previewStatus, intro + "Đang tạo âm thanh… " + Math.round(s.elapsed_s) + " giây"); }
        }).then(function (done) {
          if (run !== previewRun) { return; }
          progress.hidden = true;
          previewBtn.disabled = false;
          previewAudio.src = done.audio_url;
          previewAudio.hidden = false;
          setStatus(previewStatus, intro + "Âm thanh sẵn sàng: dài " + Math.round(done.duration_s) + " giây. Bấm ▶ để nghe thử.");
        }, function (err) {
          if (run !== previewRun) { return; }
          progress.hidden = true;
          previewBtn.disabled = false;
          setStatus(previewStatus, err.message, true);
        });
      }, function () {
        previewBtn.disabled = false;
        setStatus(previewStatus, "Không kết nối được tới máy chủ. Vui lòng thử lại.", true);
      });
    });
  }

  /* document import (the button also works without this script: it posts the whole form) */
  var importBtn = $("import-btn"), docInput = $("document"), importStatus = $("import-status");
  var undoText = null;
  if (importBtn && docInput) {
    importBtn.addEventListener("click", function (ev) {
      ev.preventDefault();
      if (!docInput.files || !docInput.files.length) { setStatus(importStatus, "Vui lòng chọn tệp văn bản.", true); return; }
      var data = new FormData();
      data.append("document", docInput.files[0]);
      importBtn.disabled = true;
      setStatus(importStatus, "Đang đọc tệp…");
      Loa.post(form.getAttribute("data-import-url"), data).then(function (r) {
        importBtn.disabled = false;
        if (!r.ok) { setStatus(importStatus, Loa.firstError(r.data), true); return; }
        undoText = text.value;
        text.value = r.data.text;
        updateCount();
        docInput.value = "";
        setStatus(importStatus, "Đã lấy " + r.data.chars.toLocaleString("vi-VN") + " ký tự vào ô nội dung. Vui lòng đọc lại và sửa trước khi phát.");
        if (undoText) {
          var undo = document.createElement("button");
          undo.type = "button";
          undo.className = "btn small";
          undo.textContent = "Hoàn tác";
          undo.addEventListener("click", function () { text.value = undoText; updateCount(); setStatus(importStatus, "Đã khôi phục nội dung trước đó."); });
          importStatus.appendChild(document.createTextNode(" "));
          importStatus.appendChild(undo);
        }
        text.focus();
      }, function () {
        importBtn.disabled = false;
        setStatus(importStatus, "Không kết nối được tới máy chủ. Vui lòng thử lại.", true);
      });
    });
  }

  /* recordings: upload a file or record from the microphone */
  var recInput = $("recording"), uploadBtn = $("upload-btn"), recStatus = $("recording-status");
  var recAudio = $("recording-audio"), clearBtn = $("audio-clear");
  var keyField = $("audio_key"), nameField = $("audio_name");
  var recordBtn = $("record-btn"), stopBtn = $("record-stop");

  function uploadRecording(blob, filename) {
    var data = new FormData();
    data.append("recording", blob, filename);
    setStatus(recStatus, "Đang tải lên và chuẩn hóa âm lượng…");
    if (uploadBtn) { uploadBtn.disabled = true; }
    return Loa.post(form.getAttribute("data-recording-url"), data).then(function (r) {
      if (!r.ok) { throw new Error(Loa.firstError(r.data)); }
      return Loa.pollJob(r.data.status_url, function (s) {
        setStatus(recStatus, "Đang chuẩn hóa bản ghi âm… " + Math.round(s.elapsed_s) + " giây");
      });
    }).then(function (done) {
      if (uploadBtn) { uploadBtn.disabled = false; }
      keyField.value = done.key;
      nameField.value = filename;
      recAudio.src = done.audio_url;
      recAudio.hidden = false;
      clearBtn.hidden = false;
      setStatus(recStatus, "Sẽ phát bản ghi âm “" + filename + "” (dài " + Math.round(done.duration_s) + " giây) thay cho giọng đọc máy.");
    }, function (err) {
      if (uploadBtn) { uploadBtn.disabled = false; }
      setStatus(recStatus, err.message || "Không tải lên được.", true);
    });
  }

  if (uploadBtn && recInput) {
    uploadBtn.addEventListener("click", function () {
      if (!recInput.files || !recInput.files.length) { setStatus(recStatus, "Vui lòng chọn tệp ghi âm (.mp3 hoặc .wav).", true); return; }
      var file = recInput.files[0];
      uploadRecording(file, file.name).then(function () { recInput.value = ""; });
    });
  }
  if (clearBtn) {
    clearBtn.addEventListener("click", function () {
      keyField.value = ""; nameField.value = "";
      recAudio.hidden = true; recAudio.removeAttribute("src");
      clearBtn.hidden = true;
      setStatus(recStatus, "Đã bỏ bản ghi âm; sẽ dùng giọng đọc máy.");
    });
  }

  var canRecord = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder);
  if (recordBtn && stopBtn && canRecord) {
    recordBtn.hidden = false;
    var recorder = null, chunks = [], startedAt = 0, timer = null;
    recordBtn.addEventListener("click", function () {
      navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
        var type = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/ogg"].filter(function (t) {
          return MediaRecorder.isTypeSupported(t);
        })[0] || "";
        recorder = type ? new MediaRecorder(stream, { mimeType: type }) : new MediaRecorder(stream);
        chunks = [];
        recorder.ondataavailable = function (e) { if (e.data && e.data.size) { chunks.push(e.data); } };
        recorder.onstop = function () {
          clearInterval(timer);
          stream.getTracks().forEach(function (t) { t.stop(); });
          recordBtn.hidden = false; stopBtn.hidden = true;
          var mime = recorder.mimeType || "audio/webm";
          var ext = mime.indexOf("ogg") >= 0 ? ".ogg" : ".webm";
          uploadRecording(new Blob(chunks, { type: mime }), "ghi-am" + ext);
        };
        recorder.start(1000);
        startedAt = Date.now();
        recordBtn.hidden = true; stopBtn.hidden = false;
        stopBtn.focus();
        setStatus(recStatus, "Đang ghi âm… 0 giây. Bấm “Dừng ghi” khi xong.");
        timer = setInterval(function () {
          setStatus(recStatus, "Đang ghi âm… " + Math.round((Date.now() - startedAt) / 1000) + " giây. Bấm “Dừng ghi” khi xong.");
        }, 1000);
      }, function () {
        setStatus(recStatus, "Không mở được micro. Hãy cho phép trình duyệt dùng micro (trang phải mở qua https hoặc trên chính máy chủ).", true);
      });
    });
    stopBtn.addEventListener("click", function () { if (recorder && recorder.state !== "inactive") { recorder.stop(); } });
  }
})();
