// The browser as a phone: plays the signal with Web Audio (speaker role), records with getUserMedia and
// uploads (microphone role), answering every step of the lobby's protocol like the app does.

/** Raw microphone: no echo cancellation, noise suppression or automatic gain (they would alter the room's response). */
export const MIC_CONSTRAINTS = { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 } };
const TAIL_S = 1.5;
const MAX_EXTRA_WAIT_S = 40;

/** Mono float32 samples -> a 32-bit float WAV (WAVE_FORMAT_IEEE_FLOAT). */
export function floatWav(samples, sampleRateHz) {
  const buffer = new ArrayBuffer(44 + samples.length * 4);
  const view = new DataView(buffer);
  const text = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 4, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 3, true); // IEEE float
  view.setUint16(22, 1, true);
  view.setUint32(24, sampleRateHz, true);
  view.setUint32(28, sampleRateHz * 4, true);
  view.setUint16(32, 4, true);
  view.setUint16(34, 32, true);
  text(36, "data");
  view.setUint32(40, samples.length * 4, true);
  new Float32Array(buffer, 44).set(samples);
  return buffer;
}

async function sha256Hex(bytes) {
  if (!crypto.subtle) return null; // only in a secure context (https or localhost); the hash is optional
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class BrowserPhone {
  /** `report(text, isError)` shows what the phone does. */
  constructor(gateway, report) {
    this.gw = gateway;
    this.report = report;
    this.context = null;
    this.stream = null;
    this.recorder = null;
    this.chunks = [];
    this.recordingSince = null;
    this.signal = null;
    this.busy = Promise.resolve();
    const handlers = {
      "measurement.start_measurement": (d) => this.onStartMeasurement(d),
      "measurement.request_audio": (d) => this.onRequestAudio(d),
      "measurement.start_playback": (d) => this.onStartPlayback(d),
      "measurement.start_recording": (d) => this.onStartRecording(d),
      "measurement.stop_recording": (d) => this.onStopRecording(d),
      "measurement.session_cancelled": () => this.stopCapture(),
      "measurement.error": () => this.stopCapture(),
    };
    for (const [event, handler] of Object.entries(handlers)) {
      // one step at a time, in the order the pushes came, like the app's state machine
      gateway.on(event, (data) => {
        this.busy = this.busy.then(() => handler(data)).catch((error) => this.fail(data, error));
      });
    }
  }

  get enabled() {
    return Boolean(this.context && this.ready);
  }

  /**
   * Needs a user gesture (autoplay and the microphone permission): creates the audio context, loads the recorder
   * and asks for the microphone once. The microphone itself is opened for each recording and closed after it.
   */
  async enable() {
    this.context ??= new AudioContext({ latencyHint: "interactive" });
    await this.context.resume();
    if (!this.workletLoaded) {
      await this.context.audioWorklet.addModule(new URL("./recorder-worklet.js", import.meta.url));
      this.workletLoaded = true;
    }
    const stream = await navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
    const settings = stream.getAudioTracks()[0]?.getSettings() ?? {};
    stream.getTracks().forEach((track) => track.stop());
    this.ready = true;
    const onOff = (flag) => (flag ? "ON" : "off");
    this.report(`phone ready: audio at ${this.context.sampleRate} Hz; echo cancellation ${onOff(settings.echoCancellation)}, ` +
      `noise suppression ${onOff(settings.noiseSuppression)}, auto gain ${onOff(settings.autoGainControl)}`);
  }

  /** Open the microphone and route it into the recorder (the graph is pulled through a muted gain). */
  async openMicrophone() {
    this.stream = await navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
    this.source = this.context.createMediaStreamSource(this.stream);
    this.recorder = new AudioWorkletNode(this.context, "sonalyze-recorder", { numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1 });
    this.recorder.port.onmessage = (message) => this.chunks.push(message.data);
    this.mute = this.context.createGain();
    this.mute.gain.value = 0;
    this.source.connect(this.recorder).connect(this.mute).connect(this.context.destination);
  }

  closeMicrophone() {
    this.recorder?.port.postMessage("stop");
    this.source?.disconnect();
    this.recorder?.disconnect();
    this.mute?.disconnect();
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = this.source = this.recorder = this.mute = null;
  }

  async fail(data, error) {
    this.report(`phone error: ${error.message}`, true);
    this.stopCapture();
    if (!data?.session_id) return;
    try {
      await this.gw.request("measurement.error", { session_id: data.session_id, error_message: `browser: ${error.message}`.slice(0, 500), error_code: error.code ?? "browser_error" });
    } catch {
      // the session may be over already
    }
  }

  async onStartMeasurement(data) {
    const speaker = data.speaker_device_id === this.gw.deviceId;
    if (!this.enabled) throw Object.assign(new Error("this browser's audio is not enabled (press 'Use this browser as a phone')"), { code: "device_not_ready" });
    this.signal = null;
    await this.gw.request("measurement.ready", { session_id: data.session_id });
    this.report(`ready as ${speaker ? "speaker" : "microphone"} for ${data.speaker_slot_id}`);
  }

  async onRequestAudio(data) {
    const response = await fetch(data.audio_url);
    if (!response.ok) throw new Error(`the signal did not download (HTTP ${response.status})`);
    const bytes = await response.arrayBuffer();
    const audioHash = await sha256Hex(bytes);
    if (audioHash && data.expected_hash && data.expected_hash.replace(/^sha256:/, "") !== audioHash) {
      throw Object.assign(new Error(`the downloaded signal's SHA-256 ${audioHash.slice(0, 12)}… is not the expected ${data.expected_hash.slice(0, 12)}…`), { code: "audio_hash_mismatch" });
    }
    this.signal = await this.context.decodeAudioData(bytes.slice(0));
    const body = { session_id: data.session_id };
    if (audioHash) body.audio_hash = audioHash;
    await this.gw.request("measurement.speaker_audio_ready", body);
    this.report(`signal downloaded: ${this.signal.duration.toFixed(1)} s`);
  }

  async onStartPlayback(data) {
    if (!this.signal) throw new Error("asked to play before the signal was downloaded");
    await this.context.resume();
    const source = this.context.createBufferSource();
    source.buffer = this.signal;
    source.connect(this.context.destination);
    const ended = new Promise((resolve) => source.addEventListener("ended", resolve, { once: true }));
    source.start();
    this.report("playing the sweep");
    await ended;
    await this.gw.request("measurement.playback_complete", { session_id: data.session_id });
    this.report("playback complete");
  }

  async onStartRecording(data) {
    await this.context.resume();
    this.closeMicrophone();
    this.chunks = [];
    await this.openMicrophone();
    this.minRecordingS = (data.signal_duration_s ?? 0) + TAIL_S;
    this.recorder.port.postMessage("start");
    this.recordingSince = this.context.currentTime;
    await this.gw.request("measurement.recording_started", { session_id: data.session_id });
    this.report("recording");
  }

  recordedSeconds() {
    return this.chunks.reduce((n, c) => n + c.length, 0) / this.context.sampleRate;
  }

  async onStopRecording(data) {
    // a recording always covers the whole signal and its decay, however early the stop comes
    const deadline = performance.now() + MAX_EXTRA_WAIT_S * 1000;
    while (this.recordedSeconds() < this.minRecordingS && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.closeMicrophone();
    const total = this.chunks.reduce((n, c) => n + c.length, 0);
    const samples = new Float32Array(total);
    let offset = 0;
    for (const chunk of this.chunks) {
      samples.set(chunk, offset);
      offset += chunk.length;
    }
    this.chunks = [];
    const wav = floatWav(samples, this.context.sampleRate);
    this.report(`recorded ${(total / this.context.sampleRate).toFixed(1)} s at ${this.context.sampleRate} Hz; uploading`);
    const response = await fetch(data.upload_url, { method: "POST", body: wav, headers: { "Content-Type": "audio/wav", "X-Device-Id": this.gw.deviceId } });
    if (!response.ok) {
      const text = await response.text();
      throw Object.assign(new Error(`upload refused (HTTP ${response.status}): ${text.slice(0, 200)}`), { code: "upload_failed" });
    }
    await this.gw.request("measurement.recording_uploaded", { session_id: data.session_id, upload_name: data.upload_name });
    this.report(`uploaded ${data.upload_name}`);
  }

  stopCapture() {
    this.closeMicrophone();
    this.chunks = [];
  }
}
