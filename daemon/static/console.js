// spoofwatch console: live streams over Server-Sent Events, and a WHIP session from the microphone.
"use strict";
const MAX_POINTS = 600;
const streams = new Map(); // stream_id -> {el, canvas, points, closed}
const $ = (id) => document.getElementById(id);

function card(id) {
  let s = streams.get(id);
  if (s) return s;
  const el = document.createElement("div");
  el.className = "stream";
  el.dataset.streamId = id;
  el.innerHTML = '<h2></h2><div class="meta"></div><div>decision <span class="decision">undecided</span> ' +
    '&middot; p_spoof <b class="ps">&ndash;</b> &middot; p_codec <b class="pc">&ndash;</b></div><canvas></canvas>';
  el.querySelector("h2").textContent = id;
  $("streams").prepend(el);
  s = { el, canvas: el.querySelector("canvas"), points: [], closed: false };
  streams.set(id, s);
  return s;
}

function setMeta(s, transport, metadata) {
  const parts = [transport].concat(Object.entries(metadata || {}).map(([k, v]) => k + "=" + v));
  s.el.querySelector(".meta").textContent = parts.filter(Boolean).join("  ");
}

function addResult(s, r) {
  s.points.push(r);
  if (s.points.length > MAX_POINTS) s.points.shift();
  const d = s.el.querySelector(".decision");
  d.textContent = r.decision;
  d.className = "decision " + r.decision;
  s.el.querySelector(".ps").textContent = r.p_spoof_smooth.toFixed(3);
  s.el.querySelector(".pc").textContent = r.p_codec_smooth.toFixed(3);
}

function draw(s) {
  const c = s.canvas, w = (c.width = c.clientWidth), h = (c.height = c.clientHeight), g = c.getContext("2d");
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#ddd"; g.fillStyle = "#999"; g.font = "10px sans-serif";
  g.beginPath(); g.moveTo(0, h / 2); g.lineTo(w, h / 2); g.stroke();
  g.fillText("1", 2, 10); g.fillText("0.5", 2, h / 2 - 2); g.fillText("0", 2, h - 2);
  const n = s.points.length;
  if (n < 2) return;
  const line = (key, color, width) => {
    g.strokeStyle = color; g.lineWidth = width; g.beginPath();
    s.points.forEach((p, i) => { const x = (i / (n - 1)) * w, y = h - p[key] * h; i ? g.lineTo(x, y) : g.moveTo(x, y); });
    g.stroke();
  };
  line("p_spoof", "rgba(220,38,38,.35)", 1); line("p_codec", "rgba(37,99,235,.35)", 1);
  line("p_spoof_smooth", "#dc2626", 2); line("p_codec_smooth", "#2563eb", 2);
}

function onMessage(m) {
  if (m.type === "snapshot") {
    for (const v of m.streams) {
      const s = card(v.stream_id);
      setMeta(s, v.transport, v.metadata);
      v.history.forEach((r) => addResult(s, r));
      if (v.closed) { s.closed = true; s.el.classList.add("closed"); }
      draw(s);
    }
  } else if (m.type === "opened") {
    setMeta(card(m.stream_id), m.transport, m.metadata);
  } else if (m.type === "result") {
    const s = card(m.stream_id);
    addResult(s, m);
    draw(s);
  } else if (m.type === "closed") {
    const s = card(m.stream_id);
    s.closed = true;
    s.el.classList.add("closed");
  }
}

function connectFeed() {
  const source = new EventSource("events");
  source.onopen = () => { $("feed-status").textContent = "live"; };
  source.onerror = () => { $("feed-status").textContent = "reconnecting…"; };
  source.onmessage = (e) => onMessage(JSON.parse(e.data));
}

// --- "send my microphone": WHIP (RFC 9725) from the browser, own scores on a data channel ---
let session = null; // {pc, stream, location}

async function startMic() {
  const media = await navigator.mediaDevices.getUserMedia({ audio: true });
  const pc = new RTCPeerConnection();
  media.getAudioTracks().forEach((t) => pc.addTransceiver(t, { direction: "sendonly" }));
  const channel = pc.createDataChannel("results");
  channel.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type !== "result") return;
    $("mine-spoof").textContent = m.p_spoof_smooth.toFixed(3);
    $("mine-codec").textContent = m.p_codec_smooth.toFixed(3);
    $("mine-decision").textContent = m.decision;
    $("mine-decision").className = "decision " + m.decision;
    $("mine-count").textContent = String(Number($("mine-count").textContent) + 1);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {  // no trickle: send the offer with all candidates
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 3000);
  });
  const id = "browser-" + Math.random().toString(36).slice(2, 10);
  const answer = await fetch("/whip?stream_id=" + id + "&source=console", {
    method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp });
  if (answer.status !== 201) throw new Error("WHIP " + answer.status + ": " + (await answer.text()));
  await pc.setRemoteDescription({ type: "answer", sdp: await answer.text() });
  session = { pc, media, location: answer.headers.get("Location") };
  $("mine-id").textContent = id;
}

async function stopMic() {
  const s = session;
  session = null;
  if (!s) return;
  if (s.location) await fetch(s.location, { method: "DELETE" }).catch(() => {});
  s.media.getTracks().forEach((t) => t.stop());
  s.pc.close();
}

$("mic").addEventListener("click", async () => {
  const button = $("mic");
  button.disabled = true;
  try {
    if (session) { await stopMic(); button.textContent = "Send my microphone"; button.className = ""; }
    else { await startMic(); button.textContent = "Stop"; button.className = "stop"; }
  } catch (err) {
    $("mine-id").textContent = "failed: " + err.message;
  } finally {
    button.disabled = false;
  }
});
window.addEventListener("resize", () => streams.forEach(draw));
connectFeed();
