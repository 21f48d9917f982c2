// The live protocol timeline: every push as a line, and the current speaker's cycle step by step.
import { clock, h } from "./dom.js";

export const STEPS = [
  ["awaiting_ready", "everyone ready"],
  ["awaiting_audio", "signal downloaded"],
  ["awaiting_recording", "microphones recording"],
  ["awaiting_playback", "sweep playing"],
  ["awaiting_uploads", "recordings uploaded"],
];
const FINAL = { analyzing: "analysing", complete: "complete", cancelled: "cancelled", failed: "failed", idle: "waiting for the admin" };

/** One human line for a push (or null to skip it). */
export function describe(event, data) {
  const d = data ?? {};
  switch (event) {
    case "lobby.updated":
      return `lobby: ${d.type?.replaceAll("_", " ")}${d.device_id ? ` (${d.device_id})` : ""}`;
    case "lobby.room_snapshot":
      return `room shared by ${d.device_id}`;
    case "measurement.start_measurement":
      return `speaker ${d.speaker_slot_id} (${(d.speaker_index ?? 0) + 1} of ${d.speaker_count ?? "?"}) starts`;
    case "measurement.speaker_complete":
      return `speaker ${d.speaker_slot_id} complete${d.next_speaker_slot_id ? `; next ${d.next_speaker_slot_id}` : ""}`;
    case "measurement.session_complete":
      return `session complete: ${(d.recordings ?? []).length} recordings; analysing`;
    case "measurement.analysis_complete":
    case "measurement.analysis_results":
      return "analysis complete";
    case "measurement.session_cancelled":
      return `session cancelled: ${d.reason ?? ""}${d.cancelled_by ? ` by ${d.cancelled_by}` : ""}`;
    case "measurement.error": {
      const who = d.missing_device_ids?.length ? `; waiting for ${d.missing_device_ids.join(", ")}` : d.device_id ? ` from ${d.device_id}` : "";
      return `error ${d.code ?? d.error_code ?? ""} at ${d.step ?? "?"}: ${d.message ?? d.error_message ?? d.reason ?? ""}${who}`;
    }
    case "measurement.phase_update":
      return `${d.phase_description ?? d.phase ?? d.step ?? "?"}${d.current_speaker_slot_id ? ` (${d.current_speaker_slot_id})` : ""}${progressText(d)}`;
    default:
      return event.startsWith("measurement.") ? event.slice("measurement.".length).replaceAll("_", " ") : null;
  }
}

/** " · ready 2/3 · recording 1/2 · uploads 0/2" from a phase_update's counters. */
export function progressText(d) {
  const parts = [];
  if (d.total_devices != null) parts.push(`ready ${d.devices_ready}/${d.total_devices}`);
  if (d.total_microphones != null) parts.push(`recording ${d.recordings_started}/${d.total_microphones}`);
  if (d.total_microphones != null) parts.push(`uploads ${d.uploads_received}/${d.total_microphones}`);
  if (d.total_recordings != null) parts.push(`recordings ${d.recordings_received}/${d.total_recordings}`);
  return parts.length ? ` · ${parts.join(" · ")}` : "";
}

export class Timeline {
  constructor(list, statusBox) {
    this.list = list;
    this.statusBox = statusBox;
  }

  add(event, data) {
    const text = describe(event, data);
    if (!text) return;
    const isError = event === "measurement.error" || event === "measurement.session_cancelled";
    const item = h("li", { class: isError ? "error" : "", "data-event": event }, h("time", {}, clock()), text);
    this.list.append(item);
    item.scrollIntoView?.({ block: "nearest" });
  }

  clear() {
    this.list.replaceChildren();
    this.statusBox.replaceChildren();
  }

  /** Render a session status (from measurement.session_status, create_session or a phase_update push). */
  showStatus(status) {
    if (!status) return;
    const state = status.state ?? status.phase;
    const current = STEPS.findIndex(([key]) => key === state);
    const speaker = status.current_speaker?.slot_id ?? status.speaker_slot_id;
    const steps = h("ol", { class: "steps", "aria-label": "Steps of the current speaker" },
      STEPS.map(([key, label], index) => {
        let cls = "";
        if (current >= 0 && index < current) cls = "done";
        else if (index === current) cls = state === "failed" ? "failed" : "current";
        else if (["analyzing", "complete"].includes(state)) cls = "done";
        return h("li", { class: cls, "aria-current": index === current ? "step" : null }, label);
      }));
    const lines = [
      h("p", {}, `Session ${String(status.session_id ?? "").slice(0, 8)}: `, h("strong", { "data-state": state }, FINAL[state] ?? state ?? "?"),
        speaker ? ` · speaker ${speaker}` : "",
        status.speaker_index != null && status.speakers ? ` (${status.speaker_index + 1} of ${status.speakers.length})` : ""),
      steps,
    ];
    if (status.progress) lines.push(h("p", { class: "progress" }, `${status.progress.phase_description ?? ""}${progressText(status.progress)}`));
    const awaited = status.awaiting_device_ids ?? [];
    if (awaited.length) lines.push(h("p", {}, `Waiting for: ${awaited.join(", ")}`));
    const gone = status.disconnected_device_ids ?? [];
    if (gone.length) lines.push(h("p", { class: "error" }, `Disconnected: ${gone.join(", ")}`));
    if (status.last_error) {
      const e = status.last_error;
      lines.push(h("p", { class: "error" }, `Last error ${e.code} at ${e.step ?? "?"}: ${e.message ?? ""}${e.device_ids?.length ? ` (${e.device_ids.join(", ")})` : ""}`));
    }
    if (status.analysis_error) lines.push(h("p", { class: "error" }, `Analysis failed: ${status.analysis_error}`));
    this.statusBox.replaceChildren(...lines);
  }
}
