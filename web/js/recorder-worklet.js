// Audio thread: hands the microphone's samples (first channel, float32) to the page while recording.
class SonalyzeRecorder extends AudioWorkletProcessor {
  constructor() {
    super();
    this.recording = false;
    this.port.onmessage = (message) => {
      this.recording = message.data === "start";
    };
  }

  process(inputs) {
    const channel = inputs[0]?.[0];
    if (this.recording && channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}

registerProcessor("sonalyze-recorder", SonalyzeRecorder);
