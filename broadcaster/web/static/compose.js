/* Compose page (and a schedule's edit page): who will hear it, the kind of timing, the voice
   picker and its sample, the preview (the text as it will be read + audio, rendered on the
   server's worker), document import, recording upload and microphone recording. */
(function () {
  "use strict";
  var form = document.getElementById("compose-form") || document.getElementById("schedule-form");
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

  /* Targets: "Tất cả loa" alone, or zones and clusters without it. A zone ticked means that zone
     only, so ticking one unticks "Tất cả loa" and the reverse. The summary above the send button
     says who will hear it, in the server's words (the one target resolver). */
  var all = $("target-all");
  var summary = $("targets-summary");
  var summaryRun = 0, summaryTimer = null;
  function targetBoxes() { return form.querySelectorAll('input[name="targets"]'); }
  function syncTargets() {
    var allOn = all && all.checked;
    targetBoxes().forEach(function (box) {
      if (box === all) { return; }
      var zone = box.getAttribute("data-in-zone");
      var zoneBox = zone ? form.querySelector('input[data-zone="' + CSS.escape(zone) + '"]') : null;
      var covered = allOn || (zoneBox && zoneBox.checked);
      box.closest("label").classList.toggle("muted", !!covered);
    });
  }
  function updateSummary() {
    var url = form.getAttribute("data-targets-url");
    if (!url || !summary) { return; }
    var params = new URLSearchParams();
    targetBoxes().forEach(function (box) { if (box.checked) { params.append("targets", box.value); } });
    var run = ++summaryRun;
    Loa.getJSON(url + "?" + params.toString()).then(function (r) {
      if (run !== summaryRun || !r.ok) { return; }
      summary.textContent = r.data.summary;
      summary.classList.toggle("error", !r.data.ok);
    });
  }
  form.addEventListener("change", function (ev) {
    var box = ev.target;
    if (box.name !== "targets") { return; }
    if (box.checked && box === all) {
      targetBoxes().forEach(function (other) { if (other !== all) { other.checked = false; } });
    } else if (box.checked && all) {
      all.checked = false;
    }
    syncTargets();
    clearTimeout(summaryTimer);
    summaryTimer = setTimeout(updateSummary, 120);
  });
  syncTargets();

  /* schedule kind: one-off date and time, every day, or days of the week */
  function syncWhen() {
    var checked = form.querySelector('input[name="when"]:checked');
    var kind = checked ? checked.value : "once";
    form.querySelectorAll(".when-once").forEach(function (el) { el.hidden = kind !== "once"; });
    form.querySelectorAll(".when-weekly").forEach(function (el) { el.hidden = kind === "once"; });
    form.querySelectorAll("fieldset.days").forEach(function (el) { el.hidden = kind === "daily"; });
  }
  form.addEventListener("change", function (ev) { if (ev.target.name === "when") { syncWhen(); } });
  syncWhen();

  /* Voices: choosing a voice chooses its engine; choosing an engine shows its voices only.
     "Nghe thử" reads a sample sentence with the chosen voice. */
  var engine = $("engine"), voice = $("voice");
  function syncVoices() {
    if (!engine || !voice) { return; }
    voice.querySelectorAll("option[data-engine]").forEach(function (opt) {
      var show = !engine.value || opt.getAttribute("data-engine") === engine.value;
      opt.hidden = !show;
      opt.disabled = !show;
      if (!show && opt.selected) { voice.value = ""; }
    });
    voice.querySelectorAll("optgroup").forEach(function (group) {
      group.hidden = !group.querySelector("option:not([hidden])");
    });
  }
  if (engine) { engine.addEventListener("change", syncVoices); syncVoices(); }
  if (voice && engine) {
    voice.addEventListener("change", function () {
      var chosen = voice.options[voice.selectedIndex];
      var owner = chosen && chosen.getAttribute("data-engine");
      if (owner && engine.value !== owner) { engine.value = owner; syncVoices(); }
    });
  }
  var sampleBtn = $("voice-sample-btn"), sampleStatus = $("voice-sample-status"), sampleAudio = $("voice-sample-audio");
  if (sampleBtn && sampleAudio && form.getAttribute("data-sample-url")) {
    sampleBtn.addEventListener("click", function () {
      var data = new FormData();
      data.append("engine", engine ? engine.value : "");
      data.append("voice", voice ? voice.value : "");
      sampleBtn.disabled = true;
      sampleAudio.hidden = true;
      setStatus(sampleStatus, "Đang tạo câu đọc mẫu…");
      Loa.post(form.getAttribute("data-sample-url"), data).then(function (r) {
        if (!r.ok) { throw new Error(Loa.firstError(r.data)); }
        return Loa.pollJob(r.data.status_url);
      }).then(function (done) {
        sampleBtn.disabled = false;
        sampleAudio.src = done.audio_url;
        sampleAudio.hidden = false;
        setStatus(sampleStatus, "Câu đọc mẫu sẵn sàng. Bấm ▶ để nghe.");
        var playing = sampleAudio.play();
        if (playing && playing.catch) { playing.catch(function () {}); }
      }, function (err) {
        sampleBtn.disabled = false;
        setStatus(sampleStatus, (err && err.message) || "Không tạo được câu đọc mẫu.", true);
      });
    });
  }

  /* preview */
  var previewBtn = $("preview-btn"), previewStatus = $("preview-status"), previewText = $("preview-text");
  var progress = $("preview-progress"), previewAudio = $("preview-audio");
  var previewRun = 0;

  var previewFlags = $("preview-flags");
  function showSegments(segments) {
    previewText.textContent = "";
    var flags = 0;
    segments.forEach(function (seg) {
      var changed = seg.original !== null && seg.original !== undefined;
      if (seg.note) {
        flags += 1;
        var flag = document.createElement("mark");
        flag.className = "flag";
        flag.textContent = seg.text;
        flag.title = seg.note + (changed ? " Chữ gốc: " + seg.original : "");
        flag.setAttribute("tabindex", "0");
        flag.setAttribute("aria-label", seg.text + " (cần kiểm tra: " + seg.note + ")");
        previewText.appendChild(flag);
      } else if (changed) {
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
    if (previewFlags) {
      previewFlags.hidden = !flags;
      previewFlags.textContent = flags ? "Có " + flags + " chỗ cần kiểm tra." : "";
    }
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
      setStatus(previewStatus, "Đang chuẩn bị nội dung đọc…");
      Loa.post(form.getAttribute("data-preview-url"), previewData()).then(function (r) {
        if (run !== previewRun) { return; }
        if (!r.ok) {
          previewBtn.disabled = false;
          previewText.textContent = "";
          if (previewFlags) { previewFlags.hidden = true; }
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

  /* document import (the button also works without this script: it posts the whole form).
     A scan or a photo is read on the server's worker: the reply is a job to poll. Words the
     machine was unsure of are listed under the text box, each with its context, for checking. */
  var importBtn = $("import-btn"), docInput = $("document"), importStatus = $("import-status");
  var review = $("ocr-review"), reviewList = $("ocr-words");
  var undoText = null;
  var MAX_LISTED = 60; /* a list longer than this is not read; the status line says "and N more" */
  var LOW_CONFIDENCE = 70; /* mean confidence under this: a blurred or dark photo */

  function hideReview() {
    if (review) { review.hidden = true; }
    if (reviewList) { reviewList.textContent = ""; }
  }

  /* Where a listed word is now: the occurrence nearest to where the machine put it (the officer
     may have edited the text since). */
  function locate(word) {
    var value = text.value, best = -1, from = 0, at;
    while ((at = value.indexOf(word.text, from)) !== -1) {
      if (best < 0 || Math.abs(at - word.start) < Math.abs(best - word.start)) { best = at; }
      from = at + 1;
    }
    return best;
  }

  function selectWord(word, button) {
    var at = locate(word);
    button.classList.add("seen");
    if (at < 0) { setStatus(importStatus, "Không còn thấy từ «" + word.text + "» trong ô nội dung (có thể đã sửa)."); return; }
    text.focus();
    text.setSelectionRange(at, at); /* scroll the box to the word, then select it */
    text.blur();
    text.focus();
    text.setSelectionRange(at, at + word.text.length);
  }

  /* Up to three words before (side < 0) or after the listed word, to find it on the paper. */
  function contextOf(result, word, side) {
    var span = 40, words;
    if (side < 0) {
      words = result.text.slice(Math.max(0, word.start - span), word.start).split(/\s+/);
      if (word.start > span) { words.shift(); } /* cut in the middle of a word */
      words = words.filter(function (w) { return w; });
      return words.slice(-3).join(" ");
    }
    words = result.text.slice(word.end, word.end + span).split(/\s+/);
    if (word.end + span < result.text.length) { words.pop(); }
    return words.filter(function (w) { return w; }).slice(0, 3).join(" ");
  }

  function showReview(result) {
    hideReview();
    var words = result.uncertain || [];
    if (!review || !reviewList || !words.length) { return; }
    var manyPages = (result.ocr_pages || []).length > 1;
    words.slice(0, MAX_LISTED).forEach(function (word) {
      var item = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "ocr-word";
      var before = contextOf(result, word, -1), after = contextOf(result, word, 1);
      if (before) { button.appendChild(document.createTextNode("…" + before + " ")); }
      var mark = document.createElement("mark");
      mark.textContent = word.text;
      button.appendChild(mark);
      if (after) { button.appendChild(document.createTextNode(" " + after + "…")); }
      if (manyPages) {
        var page = document.createElement("small");
        page.textContent = " (trang " + word.page + ")";
        button.appendChild(page);
      }
      button.setAttribute("aria-label", "Tìm từ «" + word.text + "» trong ô nội dung" + (manyPages ? ", trang " + word.page : ""));
      button.addEventListener("click", function () { selectWord(word, button); });
      item.appendChild(button);
      reviewList.appendChild(item);
    });
    review.hidden = false;
  }

  function importSummary(result) {
    var chars = result.chars.toLocaleString("vi-VN");
    if (!result.ocr) { return "Đã lấy " + chars + " ký tự vào ô nội dung. Vui lòng đọc lại và sửa trước khi phát."; }
    var words = (result.uncertain || []).length;
    var message = "Máy đã đọc chữ từ ảnh: " + chars + " ký tự. ";
    if (result.confidence !== null && result.confidence < LOW_CONFIDENCE) {
      message += "Ảnh mờ hoặc tối nên máy có thể đọc sai nhiều chỗ: vui lòng so kỹ với bản giấy. ";
    }
    if (words) {
      message += "Có " + words + " từ cần kiểm tra (tô màu dưới ô nội dung)" +
        (words > MAX_LISTED ? ", danh sách hiện " + MAX_LISTED + " từ đầu" : "") + ". ";
    }
    return message + "Vui lòng đọc lại toàn bộ và sửa trước khi phát.";
  }

  function fillEditor(result) {
    undoText = text.value;
    text.value = result.text;
    updateCount();
    docInput.value = "";
    showReview(result);
    setStatus(importStatus, importSummary(result));
    if (undoText) {
      var undo = document.createElement("button");
      undo.type = "button";
      undo.className = "btn small";
      undo.textContent = "Hoàn tác";
      undo.addEventListener("click", function () {
        text.value = undoText; updateCount(); hideReview();
        setStatus(importStatus, "Đã khôi phục nội dung trước đó.");
      });
      importStatus.appendChild(document.createTextNode(" "));
      importStatus.appendChild(undo);
    }
    text.focus();
  }

  if (importBtn && docInput) {
    importBtn.addEventListener("click", function (ev) {
      ev.preventDefault();
      if (!docInput.files || !docInput.files.length) { setStatus(importStatus, "Vui lòng chọn tệp văn bản hoặc ảnh chụp.", true); return; }
      var data = new FormData();
      data.append("document", docInput.files[0]);
      importBtn.disabled = true;
      setStatus(importStatus, "Đang đọc tệp…");
      Loa.post(form.getAttribute("data-import-url"), data).then(function (r) {
        if (!r.ok) { throw new Error(Loa.firstError(r.data)); }
        if (!r.data.status_url) { return r.data; }
        setStatus(importStatus, "Đang đọc chữ từ ảnh (bản scan hoặc ảnh chụp), mất khoảng vài giây mỗi trang…");
        return Loa.pollJob(r.data.status_url, function (s) {
          setStatus(importStatus, "Đang đọc chữ từ ảnh… " + Math.round(s.elapsed_s) + " giây");
        }).then(function (done) {
          if (done.errors) { throw new Error(Loa.firstError(done)); }
          return done;
        });
      }).then(function (result) {
        importBtn.disabled = false;
        fillEditor(result);
      }, function (err) {
        importBtn.disabled = false;
        setStatus(importStatus, (err && err.message && err.message !== "Failed to fetch") ? err.message : "Không kết nối được tới máy chủ. Vui lòng thử lại.", true);
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
      setStatus(recStatus, "Sẽ phát bản ghi âm «" + filename + "» (dài " + Math.round(done.duration_s) + " giây) thay cho giọng đọc máy.");
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
        setStatus(recStatus, "Đang ghi âm… 0 giây. Bấm «Dừng ghi» khi xong.");
        timer = setInterval(function () {
          setStatus(recStatus, "Đang ghi âm… " + Math.round((Date.now() - startedAt) / 1000) + " giây. Bấm «Dừng ghi» khi xong.");
        }, 1000);
      }, function () {
        setStatus(recStatus, "Không mở được micro. Hãy cho phép trình duyệt dùng micro (trang phải mở qua https hoặc trên chính máy chủ).", true);
      });
    });
    stopBtn.addEventListener("click", function () { if (recorder && recorder.state !== "inactive") { recorder.stop(); } });
  }
})();
