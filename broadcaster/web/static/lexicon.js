/* The lexicon page: choosing an engine shows its voices only (choosing a voice chooses its
   engine), and «Nghe thử» reads a word or a sentence with the chosen voice: the server renders it
   on a worker, the page polls the job and plays the audio in the page. */
(function () {
  "use strict";
  function syncVoices(engine, voice) {
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
  document.querySelectorAll("form").forEach(function (form) {
    var engine = form.querySelector("select.lex-engine"), voice = form.querySelector("select.lex-voice");
    if (!engine || !voice) { return; }
    engine.addEventListener("change", function () { syncVoices(engine, voice); });
    voice.addEventListener("change", function () {
      var chosen = voice.options[voice.selectedIndex];
      var owner = chosen && chosen.getAttribute("data-engine");
      if (owner && engine.value !== owner) { engine.value = owner; syncVoices(engine, voice); }
    });
    syncVoices(engine, voice);
  });

  var card = document.getElementById("lexicon-try");
  var status = document.getElementById("lexicon-try-status");
  var audio = document.getElementById("lexicon-try-audio");
  if (!card || !status || !audio || !window.Loa) { return; }
  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", !!isError);
  }
  function tryOut(button, text, engine, voice) {
    if (!text) { say("Vui lòng nhập từ hoặc câu cần nghe thử.", true); return; }
    var data = new FormData();
    data.append("text", text);
    data.append("engine", engine || "");
    data.append("voice", voice || "");
    button.disabled = true;
    audio.hidden = true;
    say("Đang tạo âm thanh «" + text + "»…");
    Loa.post(card.getAttribute("data-preview-url"), data).then(function (r) {
      if (!r.ok) { throw new Error(Loa.firstError(r.data)); }
      return Loa.pollJob(r.data.status_url);
    }).then(function (done) {
      button.disabled = false;
      audio.src = done.audio_url;
      audio.hidden = false;
      say("Đang phát «" + text + "». Bấm ▶ để nghe lại.");
      card.scrollIntoView({ block: "nearest" });
      var playing = audio.play();
      if (playing && playing.catch) { playing.catch(function () {}); }
    }, function (err) {
      button.disabled = false;
      say((err && err.message) || "Không tạo được âm thanh.", true);
    });
  }
  var tryForm = card.querySelector("form");
  if (tryForm) {  /* Enter in the text box plays it, it does not leave the page */
    tryForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      tryForm.querySelector("button.lex-try").click();
    });
  }
  document.querySelectorAll("button.lex-try").forEach(function (button) {
    button.addEventListener("click", function () {
      if (button.getAttribute("data-from-form")) {
        var form = button.form;
        tryOut(button, form.elements.text.value.trim(), form.elements.engine.value, form.elements.voice.value);
      } else {
        tryOut(button, button.getAttribute("data-text"), button.getAttribute("data-engine"),
               button.getAttribute("data-voice"));
      }
    });
  });
})();
