// Demo page: call the agent over WebRTC (POST /webrtc/offer + an "events" data channel),
// or over the /ws web-client protocol (PCM16 both ways) when WebRTC is unavailable.
// Plain script, no build step. An optional ?token=T in the page URL is sent as the
// bearer token of /webrtc and /ws.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
const authHeaders = token ? { Authorization: "Bearer " + token } : {};
const WS_RATE = 16000;
const CONNECT_TIMEOUT_MS = 10000;

const ui = {
  call: $("call"), hangup: $("hangup"), transport: $("transport"), state: $("state"),
  via: $("via"), level: $("level"), speaking: $("speaking"), error: $("error"),
  transcript: $("transcript"), text: $("text"), send: $("send"), say: $("say"),
  keypad: $("keypad"), remote: $("remote"),
};
if (params.get("transport")) ui.transport.value = params.get("transport");

let session = null; // the active call: {kind, hangup(), sendJson(obj)}
let mic = null; // MediaStream
let meter = null; // {ctx, raf}
let agentLine = null; // the agent message being spoken
let interruptedLine = null; // the agent message the caller talked over
let lastTranscript = { key: "", at: 0 }; // the loop may report one transcript twice
let peakLevel = 0; // highest meter reading of this page (exposed as data-peak)

// -- UI helpers ----------------------------------------------------------------------------
function setState(state, via) {
  ui.state.textContent = state;
  ui.state.dataset.state = state;
  if (via !== undefined) ui.via.textContent = via ? "(" + via + ")" : "";
  const live = ["connecting", "connected"].includes(state);
  ui.call.disabled = live;
  ui.hangup.disabled = !live;
  ui.text.disabled = ui.send.disabled = state !== "connected";
  for (const b of ui.keypad.querySelectorAll("button")) b.disabled = state !== "connected";
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

function addItem(cls, html) {
  const li = document.createElement("li");
  li.className = cls;
  if (html instanceof Node) li.appendChild(html); else li.textContent = html;
  ui.transcript.appendChild(li);
  li.scrollIntoView({ block: "nearest" });
  return li;
}

function message(role, text) {
  const li = document.createElement("li");
  li.className = "msg " + role;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Agent";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(who, body);
  ui.transcript.appendChild(li);
  li.scrollIntoView({ block: "nearest" });
  return li;
}

// -- session events (the same JSON on the data channel and on /ws) --------------------------
function onEvent(ev) {
  switch (ev.type) {
    case "started":
      setState("connected");
      break;
    case "agent.speak":
      agentLine = message("agent", ev.text || "");
      break;
    case "agent.llm.response.start":
      agentLine = message("agent", "");
      break;
    case "agent.llm.response.chunk":
      if (!agentLine) agentLine = message("agent", "");
      agentLine.querySelector(".text").textContent += ev.text || "";
      break;
    case "agent.llm.response.end":
      break;
    case "system.control.interrupt":
      if (agentLine) {
        agentLine.classList.add("interrupted");
        interruptedLine = agentLine;
      }
      addItem("mark interrupt", "you interrupted the agent");
      agentLine = null;
      break;
    case "agent.transcript.update": {
      const key = ev.role + "\u0000" + (ev.content || "");
      const now = performance.now();
      if (key === lastTranscript.key && now - lastTranscript.at < 1500) break;
      lastTranscript = { key, at: now };
      if (ev.role === "user") {
        message("user", ev.content || "");
      } else if (interruptedLine) {
        const heard = document.createElement("span");
        heard.className = "heard";
        heard.textContent = "heard before the interruption: \u201c" + (ev.content || "") + "\u201d";
        interruptedLine.appendChild(heard);
        interruptedLine = null;
      }
      break;
    }
    case "system.user.started_speaking":
      ui.speaking.hidden = false;
      break;
    case "system.user.stopped_speaking":
      ui.speaking.hidden = true;
      break;
    case "system.dtmf":
      addItem("note", "key " + ev.digit);
      break;
    case "agent.transfer_call":
      addItem("note", "the agent transfers the call to " + (ev.transfer_call_number || "?"));
      break;
    case "agent.end_call":
      addItem("note", "the agent ends the call");
      break;
    case "agent.error":
      addItem("note", "agent error: " + (ev.message || ""));
      break;
    case "error":
      showError("Server: " + ev.message);
      break;
    case "clear":
      if (session && session.clear) session.clear();
      break;
    case "end":
      finish("ended", ev.reason ? "call ended: " + ev.reason : "");
      break;
    default:
      break;
  }
}

// -- microphone -----------------------------------------------------------------------------
async function openMic() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("This browser cannot use a microphone here (it needs https or localhost).");
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    if (err.name === "NotAllowedError" || err.name === "SecurityError") {
      throw new Error("Microphone access was refused. Allow the microphone for this page " +
                      "(the icon in the address bar) and press Call again.");
    }
    if (err.name === "NotFoundError" || err.name === "OverconstrainedError") {
      throw new Error("No microphone was found. Connect one and press Call again.");
    }
    if (err.name === "NotReadableError") {
      throw new Error("The microphone is in use by another application.");
    }
    throw new Error("Could not open the microphone: " + err.message);
  }
}

function startMeter(stream) {
  const ctx = new AudioContext();
  const src = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  src.connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const m = { ctx, raf: 0 };
  const draw = () => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
    const db = 10 * Math.log10(sum / buf.length + 1e-10); // dBFS
    const pct = Math.max(0, Math.min(100, (db + 60) * (100 / 60)));
    ui.level.style.width = pct.toFixed(0) + "%";
    if (pct > peakLevel) ui.level.dataset.peak = String(Math.round((peakLevel = pct)));
    m.raf = requestAnimationFrame(draw);
  };
  draw();
  ctx.resume().catch(() => {});
  return m;
}

function stopMic() {
  if (meter) {
    cancelAnimationFrame(meter.raf);
    meter.ctx.close().catch(() => {});
    meter = null;
  }
  ui.level.style.width = "0";
  if (mic) {
    for (const t of mic.getTracks()) t.stop();
    mic = null;
  }
}

// -- WebRTC -----------------------------------------------------------------------------------
class Unreachable extends Error {}

async function api(path, options) {
  let res;
  try {
    res = await fetch(path, { ...options, headers: { ...authHeaders, ...(options || {}).headers } });
  } catch (err) {
    throw new Unreachable("The server is unreachable (" + err.message + "). Is the gateway " +
                          "running at " + location.host + "?");
  }
  if (res.status === 401) {
    const e = new Error("The server refused the call: wrong or missing token " +
                        "(add ?token=... to the page address).");
    e.final = true;
    throw e;
  }
  if (res.status === 404 && path.startsWith("/webrtc")) {
    const e = new Error("This server does not offer WebRTC.");
    e.noWebRtc = true;
    throw e;
  }
  if (!res.ok) throw new Error("The server answered " + res.status + ": " + (await res.text()));
  return res.json();
}

function gatheringDone(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

async function callWebRtc(stream) {
  const config = await api("/webrtc/config");
  const pc = new RTCPeerConnection(config);
  const dc = pc.createDataChannel("events");
  let id = null;
  let connected = false;
  for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
  pc.ontrack = (e) => { ui.remote.srcObject = e.streams[0] || new MediaStream([e.track]); };
  dc.onmessage = (e) => { try { onEvent(JSON.parse(e.data)); } catch (err) { console.warn(err); } };
  const s = {
    kind: "webrtc",
    sendJson: (obj) => { if (dc.readyState === "open") dc.send(JSON.stringify(obj)); },
    hangup: () => {
      try { if (dc.readyState === "open") dc.send(JSON.stringify({ type: "hangup" })); } catch (e) {}
      if (id) fetch("/webrtc/" + id, { method: "DELETE", headers: authHeaders, keepalive: true })
        .catch(() => {});
      pc.close();
    },
  };
  session = s;
  const connectedOrFailed = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("WebRTC did not connect in time")),
                             CONNECT_TIMEOUT_MS);
    pc.addEventListener("connectionstatechange", () => {
      const st = pc.connectionState;
      if (session !== s) return;
      if (st === "connected") {
        connected = true;
        clearTimeout(timer);
        setState("connected");
        resolve();
      } else if (st === "failed") {
        clearTimeout(timer);
        if (!connected) reject(new Error("WebRTC connection failed"));
        else finish("failed", "The connection to the server was lost.");
      } else if (st === "closed" || st === "disconnected") {
        if (connected && st === "closed") finish("ended");
      }
    });
  });
  connectedOrFailed.catch(() => {}); // awaited below; no unhandled rejection if we fail first
  dc.onclose = () => { if (session === s && connected) finish("ended"); };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringDone(pc, 3000);
    const answer = await api("/webrtc/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" }),
    });
    id = answer.id;
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    await connectedOrFailed;
  } catch (err) {
    s.hangup();
    if (session === s) session = null;
    throw err;
  }
}

// -- /ws fallback: PCM16 over a WebSocket ----------------------------------------------------
const WORKLET = `
class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) this.port.postMessage(ch.slice(0));
    return true;
  }
}
registerProcessor("capture", Capture);`;

function toPcm16(f32) {
  const out = new Int16Array(f32.length);
  for (let i = 0; i < f32.length; i++) {
    const v = Math.max(-1, Math.min(1, f32[i]));
    out[i] = v < 0 ? v * 0x8000 : v * 0x7fff;
  }
  return out.buffer;
}

async function callWebSocket(stream) {
  let ctx;
  try { ctx = new AudioContext({ sampleRate: WS_RATE }); } catch (e) { ctx = new AudioContext(); }
  const rate = ctx.sampleRate;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const url = proto + "//" + location.host + "/ws" + (token ? "?token=" + encodeURIComponent(token) : "");
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  let playAt = 0;
  let sources = [];
  let capture = null;
  const s = {
    kind: "ws",
    sendJson: (obj) => { if (ws.readyState === 1) ws.send(JSON.stringify(obj)); },
    clear: () => { for (const src of sources) { try { src.stop(); } catch (e) {} } sources = []; playAt = 0; },
    hangup: () => {
      try { if (ws.readyState === 1) ws.send(JSON.stringify({ type: "hangup" })); } catch (e) {}
      ws.close();
      if (capture) capture.disconnect();
      ctx.close().catch(() => {});
    },
  };
  session = s;
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Unreachable("The server is unreachable: the WebSocket to " +
                                              url + " could not be opened."));
  });
  ws.onclose = () => { if (session === s) finish("ended"); };
  ws.onmessage = (e) => {
    if (typeof e.data === "string") {
      try { onEvent(JSON.parse(e.data)); } catch (err) { console.warn(err); }
      return;
    }
    const pcm = new Int16Array(e.data);
    const buf = ctx.createBuffer(1, pcm.length, rate);
    const ch = buf.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = ctx.createBufferSource();
    src.buffer = buf;
    src.connect(ctx.destination);
    playAt = Math.max(playAt, ctx.currentTime + 0.03);
    src.start(playAt);
    playAt += buf.duration;
    sources.push(src);
    src.onended = () => { sources = sources.filter((x) => x !== src); };
  };
  ws.send(JSON.stringify({ type: "start", sample_rate: rate }));
  const source = ctx.createMediaStreamSource(stream);
  const send = (f32) => { if (ws.readyState === 1) ws.send(toPcm16(f32)); };
  if (ctx.audioWorklet) {
    const blobUrl = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
    await ctx.audioWorklet.addModule(blobUrl);
    capture = new AudioWorkletNode(ctx, "capture");
    capture.port.onmessage = (e) => send(e.data);
  } else {
    capture = ctx.createScriptProcessor(1024, 1, 1);
    capture.onaudioprocess = (e) => send(e.inputBuffer.getChannelData(0));
  }
  source.connect(capture);
  capture.connect(ctx.destination); // keeps the node running; it outputs silence
  await ctx.resume();
  setState("connected");
}

// -- call / hang up ----------------------------------------------------------------------------
function finish(state, msg) {
  const s = session;
  session = null;
  if (s) { try { s.hangup(); } catch (e) {} }
  stopMic();
  ui.speaking.hidden = true;
  agentLine = null;
  setState(state);
  if (msg) addItem("note", msg);
}

async function startCall() {
  showError("");
  setState("connecting", "");
  try {
    mic = await openMic();
    meter = startMeter(mic);
  } catch (err) {
    showError(err.message);
    finish("idle");
    return;
  }
  addItem("note", "calling\u2026");
  const choice = ui.transport.value;
  const canRtc = typeof RTCPeerConnection !== "undefined";
  try {
    if (choice === "ws" || (!canRtc && choice === "auto")) {
      setState("connecting", "WebSocket");
      await callWebSocket(mic);
    } else {
      setState("connecting", "WebRTC");
      try {
        await callWebRtc(mic);
      } catch (err) {
        if (choice !== "auto" || err instanceof Unreachable || err.final) throw err;
        addItem("note", err.message + "; trying the WebSocket instead");
        setState("connecting", "WebSocket");
        await callWebSocket(mic);
      }
    }
  } catch (err) {
    showError(err.message);
    finish("failed");
  }
}

ui.call.addEventListener("click", startCall);
ui.hangup.addEventListener("click", () => finish("ended", "you hung up"));
ui.say.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.text.value.trim();
  if (!text || !session) return;
  session.sendJson({ type: "text", text });
  ui.text.value = "";
});
for (const d of "123456789*0#") {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = d;
  b.addEventListener("click", () => session && session.sendJson({ type: "dtmf", digit: d }));
  ui.keypad.appendChild(b);
}
window.addEventListener("pagehide", () => { if (session) session.hangup(); });
setState("idle", "");
