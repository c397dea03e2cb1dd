// The page: microphone -> 16 kHz 16-bit PCM over the WebSocket /v1/stream; results drawn live.
"use strict";

const COLOURS = {  // the terminal display's colours (streamer/sinks/base.py), as CSS
  neutral: "#9e9e9e", happy: "#ffd700", excited: "#ffaf00", sad: "#1c86ee", angry: "#cd0000",
  frustrated: "#cd6600", surprised: "#ff00ff", fearful: "#af87ff", disgusted: "#008700",
  bored: "#5f5f5f", calm: "#00cdcd",
};
const FRAME_S = 0.1;  // audio per WebSocket frame
const $ = (id) => document.getElementById(id);
let session = null;  // {socket, context, media, utterances: [], streamTime}

function colour(label) { return COLOURS[label] || "#40c0c0"; }

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function bars(emotions, top) {
  const box = document.createElement("div");
  box.className = "bars";
  for (const [label, p] of Object.entries(emotions)) {
    const row = document.createElement("div");
    row.className = "bar" + (label === top ? " top" : "");
    row.innerHTML = `<span></span><div class="fill"></div><span></span>`;
    row.children[0].textContent = label;
    row.children[1].style.width = `${(100 * p).toFixed(1)}%`;
    row.children[1].style.background = colour(label);
    row.children[2].textContent = `${Math.round(100 * p)}%`;
    box.appendChild(row);
  }
  return box;
}

function row(u, kind) {
  // kind: "utterance" (decided) or "partial" (in progress, replaced by the utterance with its id)
  const row = document.createElement("div");
  row.className = kind;
  row.dataset.id = u.id;
  const who = document.createElement("div");
  who.className = `speaker ${u.speaker || ""}`;
  who.textContent = u.speaker || "?";
  const time = document.createElement("div");
  time.className = "time";
  time.textContent = `${u.start.toFixed(1)}–${u.end.toFixed(1)} s`;
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = u.text || "…";
  row.append(who, time, text, bars(u.emotions, u.emotion));
  return row;
}

function showPartial(p) {
  const old = document.querySelector(`.partial[data-id="${p.id}"]`);
  if (old) old.replaceWith(row(p, "partial"));
  else $("utterances").prepend(row(p, "partial"));
}

function reviseSpeakers(revisions) {
  // earlier utterances whose speaker the new evidence changed (the record's speaker_revisions)
  for (const r of revisions || []) {
    const earlier = session.utterances.find((u) => u.id === r.id);
    if (earlier) earlier.speaker = r.speaker;
    const who = document.querySelector(`.utterance[data-id="${r.id}"] .speaker`);
    if (who) { who.className = `speaker ${r.speaker}`; who.textContent = r.speaker; }
  }
}

function showUtterance(u) {
  reviseSpeakers(u.speaker_revisions);
  session.utterances.push(u);
  // partials of utterances Whisper then judged not speech never get theirs: drop them once passed
  document.querySelectorAll(".partial").forEach((e) => { if (Number(e.dataset.id) < u.id) e.remove(); });
  const partial = document.querySelector(`.partial[data-id="${u.id}"]`);
  if (partial) partial.replaceWith(row(u, "utterance"));
  else $("utterances").prepend(row(u, "utterance"));
  drawTimeline();
}

function drawTimeline() {
  const box = $("timeline");
  box.querySelectorAll(".span").forEach((e) => e.remove());
  const last = session.utterances.reduce((t, u) => Math.max(t, u.end), 0);
  const total = Math.max(30, session.streamTime, last);
  for (const u of session.utterances) {
    const span = document.createElement("div");
    span.className = "span";
    span.title = `${u.speaker} ${u.emotion} ${Math.round(100 * u.confidence)}%: ${u.text}`;
    span.style.left = `${(100 * u.start) / total}%`;
    span.style.width = `${Math.max(0.3, (100 * (u.end - u.start)) / total)}%`;
    span.style.top = u.speaker === "A" ? "0.2rem" : "1.8rem";
    span.style.background = colour(u.emotion);
    box.appendChild(span);
  }
}

function showSummary(s) {
  document.querySelectorAll(".partial").forEach((e) => e.remove());
  const box = $("summary");
  box.innerHTML = "";
  const head = document.createElement("div");
  head.textContent = `Summary: ${s.duration_s.toFixed(1)} s, ${s.utterances} utterances`;
  box.appendChild(head);
  for (const [speaker, v] of Object.entries(s.speakers)) {
    const line = document.createElement("div");
    line.className = "speaker-summary";
    line.textContent = `${speaker}: ${v.utterances} utterances, ${v.speaking_time_s.toFixed(1)} s, mostly ${v.dominant_emotion}, ${v.emotion_changes} changes`;
    box.append(line, bars(v.mean_emotions, v.dominant_emotion));
  }
}

function onRecord(record) {
  if (record.type === "utterance") showUtterance(record);
  else if (record.type === "partial") showPartial(record);
  else if (record.type === "summary") { showSummary(record); setStatus("Finished."); }
  else if (record.type === "status") setStatus(record.warning);
  else if (record.type === "error") setStatus(`Error: ${record.message}`, true);
}

async function start() {
  $("start").disabled = true;
  $("utterances").innerHTML = "";
  $("summary").innerHTML = "";
  let context;
  try {
    context = new AudioContext({ sampleRate: 16000 });  // the browser resamples the microphone
  } catch (err) {
    context = new AudioContext();  // no resampling here: the server resamples (sample_rate=)
  }
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false } });
  } catch (err) {
    setStatus(`No microphone: ${err.message}`, true);
    $("start").disabled = false;
    return;
  }
  const rate = context.sampleRate;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/stream?sample_rate=${rate}&channels=1&partials=1`);
  session = { socket, context, media, utterances: [], streamTime: 0 };
  socket.onmessage = (msg) => onRecord(JSON.parse(msg.data));
  socket.onclose = (e) => {
    if (e.code !== 1000) setStatus(`Connection closed (${e.code}${e.reason ? ": " + e.reason : ""}).`, true);
    stopAudio();
    $("start").disabled = false;
    $("stop").disabled = true;
  };
  await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
  await context.audioWorklet.addModule("/static/pcm-worklet.js");
  const framer = new AudioWorkletNode(context, "pcm-framer", { processorOptions: { frameSamples: Math.round(rate * FRAME_S) } });
  framer.port.onmessage = (e) => {
    if (socket.readyState !== WebSocket.OPEN || session.ended) return;
    socket.send(e.data);
    session.streamTime += FRAME_S;
    setStatus(`Listening: ${session.streamTime.toFixed(1)} s (${rate} Hz)`);
    if (session.utterances.length) drawTimeline();
  };
  context.createMediaStreamSource(media).connect(framer);
  $("stop").disabled = false;
}

function stopAudio() {
  if (!session) return;
  session.media.getTracks().forEach((t) => t.stop());
  if (session.context.state !== "closed") session.context.close();
}

function stop() {
  $("stop").disabled = true;
  session.ended = true;
  stopAudio();
  session.socket.send(JSON.stringify({ type: "end" }));
  setStatus("Finishing…");
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
