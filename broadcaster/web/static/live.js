// «Phát trực tiếp»: microphone -> 16 kHz s16le PCM -> POST every ~250 ms to the controller.
(function () {
  "use strict";
  const RATE = 16000;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const status = document.getElementById("live-status");
  const startBtn = document.getElementById("live-start");
  const holdBtn = document.getElementById("live-hold");
  const endBtn = document.getElementById("live-end");
  let session = null;

  function post(url, body, type) {
    return fetch(url, {method: "POST", body: body, credentials: "same-origin",
      headers: {"X-CSRFToken": csrf, "Content-Type": type || "application/json"}});
  }

  function downsample(input, fromRate) {
    const ratio = fromRate / RATE;
    const out = new Int16Array(Math.floor(input.length / ratio));
    for (let i = 0; i < out.length; i++) {
      const s = Math.max(-1, Math.min(1, input[Math.floor(i * ratio)]));
      out[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
    }
    return out;
  }

  async function start() {
    if (session) return;
    if (!navigator.mediaDevices || !window.isSecureContext) {
      status.textContent = "Trình duyệt không cho dùng micrô trên trang này: hãy mở trang bằng https.";
      return;
    }
    const targets = Array.from(document.querySelectorAll('input[name="targets"]:checked')).map(e => e.value);
    const tier = document.getElementById("live-tier").value;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: true, autoGainControl: true}});
    } catch (e) {
      status.textContent = "Không mở được micrô: " + e.message;
      return;
    }
    const answer = await post("/live/start", JSON.stringify({tier: tier, targets: targets.length ? targets : ["all"]}));
    const data = await answer.json();
    if (!answer.ok) { status.textContent = data.error || "Không bắt đầu được."; stream.getTracks().forEach(t => t.stop()); return; }
    const context = new AudioContext();
    const source = context.createMediaStreamSource(stream);
    const node = context.createScriptProcessor(4096, 1, 1);
    const pending = [];
    node.onaudioprocess = (ev) => { pending.push(downsample(ev.inputBuffer.getChannelData(0), context.sampleRate)); };
    source.connect(node); node.connect(context.destination);
    session = {id: data.id, audio: data.audio_url, end: data.end_url, stream, context, pending, timer: null};
    session.timer = setInterval(flush, 250);
    window.loaLive = session;
    endBtn.disabled = false;
    status.textContent = "Đang phát trực tiếp (lượt phát #" + data.id + ").";
  }

  async function flush() {
    if (!session || !session.pending.length) return;
    const chunks = session.pending.splice(0);
    const total = chunks.reduce((n, c) => n + c.length, 0);
    const pcm = new Int16Array(total);
    let at = 0;
    for (const c of chunks) { pcm.set(c, at); at += c.length; }
    const answer = await post(session.audio, pcm.buffer, "application/octet-stream");
    if (answer.status === 410) { stop("Buổi phát trực tiếp đã kết thúc."); }
  }

  async function stop(message) {
    if (!session) return;
    const s = session; session = null;
    clearInterval(s.timer);
    s.stream.getTracks().forEach(t => t.stop());
    s.context.close();
    endBtn.disabled = true;
    await post(s.end, "{}");
    status.innerHTML = (message || "Đã kết thúc.") + ' <a href="/broadcasts/' + s.id + '">Xem lượt phát</a>';
  }

  startBtn.addEventListener("click", start);
  endBtn.addEventListener("click", () => stop());
  holdBtn.addEventListener("pointerdown", start);
  holdBtn.addEventListener("pointerup", () => stop());
  window.addEventListener("pagehide", () => { if (session) navigator.sendBeacon && stop(); });
})();
