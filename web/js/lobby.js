// The lobby view: create or join as a browser device, participants live from pushes, the admin's controls.
import { $, h } from "./dom.js";
import { Timeline } from "./timeline.js";

const ACTIVE_STATES = new Set(["idle", "awaiting_ready", "awaiting_audio", "awaiting_recording", "awaiting_playback", "awaiting_uploads", "failed", "analyzing"]);
const POLL_MS = 1000;

export class LobbyView {
  /** `onAnalysis(jobId, lobby)` is called when a session's analysis is complete. */
  constructor(gateway, { onAnalysis }) {
    this.gw = gateway;
    this.onAnalysis = onAnalysis;
    this.lobby = null;
    this.session = null;
    this.drafts = new Map();
    this.pollTimer = null;
    this.timeline = new Timeline($("#timeline"), $("#session-status"));
    this.error = $("#lobby-error");
    $("#lobby-create").addEventListener("click", () => this.guard(() => this.create()));
    $("#lobby-join-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.guard(() => this.join($("#lobby-join-code").value));
    });
    $("#lobby-leave").addEventListener("click", () => this.guard(() => this.leave()));
    $("#session-create").addEventListener("click", () => this.guard(() => this.createSession()));
    $("#session-start").addEventListener("click", () => this.guard(() => this.start()));
    $("#session-cancel").addEventListener("click", () => this.guard(() => this.cancel()));
    gateway.on("*", (data, event) => this.push(event, data));
    gateway.on("connection", ({ connected }) => connected && this.resume());
  }

  get me() {
    return this.gw.deviceId;
  }

  get isAdmin() {
    return Boolean(this.lobby && this.lobby.creator_device_id === this.me);
  }

  async guard(action) {
    this.error.textContent = "";
    try {
      await action();
    } catch (error) {
      this.error.textContent = `${error.code ?? "error"}: ${error.message}`;
    }
  }

  async create() {
    this.show(await this.gw.request("lobby.create", {}));
    this.timeline.clear();
  }

  async join(code) {
    this.show(await this.gw.request("lobby.join", { code: code.trim() }));
    this.timeline.clear();
  }

  async leave() {
    if (!this.lobby) return;
    await this.gw.request("lobby.leave", { lobby_id: this.lobby.lobby_id });
    localStorage.removeItem("sonalyze.lobby_id");
    this.lobby = null;
    this.stopPolling();
    this.render();
  }

  /** After a reconnect (or a reload): read the lobby and the session again, since pushes may have been missed. */
  async resume() {
    const lobbyId = this.lobby?.lobby_id ?? localStorage.getItem("sonalyze.lobby_id");
    if (!lobbyId) return;
    try {
      const lobby = await this.gw.request("lobby.get", { lobby_id: lobbyId });
      const mine = lobby.participants.find((p) => p.device_id === this.me && p.status === "joined");
      if (mine && lobby.state !== "closed") this.show(lobby);
      if (this.session) await this.refreshSession();
    } catch {
      localStorage.removeItem("sonalyze.lobby_id");
    }
  }

  show(lobby) {
    this.lobby = lobby;
    localStorage.setItem("sonalyze.lobby_id", lobby.lobby_id);
    this.render();
  }

  push(event, data) {
    if (event === "connection") return;
    if (event === "lobby.updated" && this.lobby && data.lobby_id === this.lobby.lobby_id) {
      this.lobby = data.lobby;
      this.render();
    } else if (event === "lobby.room_snapshot" && this.lobby && data.lobby_id === this.lobby.lobby_id) {
      this.lobby.room_snapshot = data.room;
      this.render();
    }
    if (!event.startsWith("measurement.") && !event.startsWith("lobby.")) return;
    if (event.startsWith("measurement.") && this.session && data.session_id && data.session_id !== this.session.session_id) return;
    this.timeline.add(event, data);
    if (event === "measurement.phase_update") {
      // the phase and its counters, pushed by the coordinator at every move (the status poll fills in the rest)
      this.lastProgress = data;
      const speaker = data.current_speaker_slot_id ? { slot_id: data.current_speaker_slot_id, device_id: data.speaker_device_id } : null;
      this.timeline.showStatus({ ...(this.session ?? {}), state: data.step, current_speaker: speaker, speaker_index: data.speaker_index, progress: data });
    }
    if (event.startsWith("measurement.") && this.session) this.refreshSession();
    if (event === "measurement.analysis_complete" || event === "measurement.analysis_results") {
      const jobId = data.job_id ?? this.session?.job_id;
      if (jobId && this.analysedJob !== jobId) {
        this.analysedJob = jobId;
        this.onAnalysis(jobId, this.lobby);
      }
    }
  }

  // ---- admin: roles and the session -------------------------------------------------------------

  async assign(target, role, slotId) {
    const data = { lobby_id: this.lobby.lobby_id, target_device_id: target, role };
    if (role !== "none") data.role_slot_id = slotId.trim() || this.suggestSlot(role);
    this.show(await this.gw.request("role.assign", data));
  }

  suggestSlot(role) {
    const prefix = role === "speaker" ? "speaker_" : "mic_";
    const taken = new Set(this.lobby.participants.map((p) => p.role_slot_id));
    for (let n = 1; ; n++) if (!taken.has(`${prefix}${n}`)) return `${prefix}${n}`;
  }

  async createSession() {
    const joined = this.lobby.participants.filter((p) => p.status === "joined");
    const slots = (role) => joined.filter((p) => p.role === role).map((p) => ({ device_id: p.device_id, slot_id: p.role_slot_id }));
    const speakers = slots("speaker");
    const microphones = slots("microphone");
    if (!speakers.length || !microphones.length) throw Object.assign(new Error("give at least one speaker and one microphone a role first"), { code: "bad_request" });
    const map = this.lobby.room_snapshot ? { room: this.lobby.room_snapshot } : {};
    const job = await this.gw.request("measurement.create_job", { map, meta: { lobby_id: this.lobby.lobby_id, client: "web" } });
    const status = await this.gw.request("measurement.create_session", { job_id: job.job_id, lobby_id: this.lobby.lobby_id, speakers, microphones });
    this.session = status;
    this.analysedJob = null;
    this.timeline.add("measurement.session_created", {});
    this.timeline.showStatus(status);
    this.startPolling();
    this.render();
  }

  async start() {
    this.session = await this.gw.request("measurement.start_speaker", { session_id: this.session.session_id });
    this.timeline.showStatus(this.session);
    this.startPolling();
    this.render();
  }

  async cancel() {
    this.session = await this.gw.request("measurement.cancel_session", { session_id: this.session.session_id, reason: "cancelled from the web page" });
    this.timeline.showStatus(this.session);
    this.render();
  }

  startPolling() {
    if (this.pollTimer) return;
    this.pollTimer = setInterval(() => this.refreshSession(), POLL_MS);
  }

  stopPolling() {
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  async refreshSession() {
    if (!this.session || !this.gw.connected) return;
    try {
      this.session = await this.gw.request("measurement.session_status", { session_id: this.session.session_id });
    } catch {
      return;
    }
    const progress = this.lastProgress?.session_id === this.session.session_id && this.lastProgress.step === this.session.state ? this.lastProgress : null;
    this.timeline.showStatus({ ...this.session, progress });
    if (!ACTIVE_STATES.has(this.session.state)) this.stopPolling();
    if (this.session.state === "complete" && this.session.job_id && this.analysedJob !== this.session.job_id) {
      this.analysedJob = this.session.job_id;
      this.onAnalysis(this.session.job_id, this.lobby);
    }
    this.renderControls();
  }

  // ---- rendering ----------------------------------------------------------------------------------

  render() {
    document.body.classList.toggle("is-admin", this.isAdmin);
    $("#lobby-panel").hidden = !this.lobby;
    if (!this.lobby) return;
    const lobby = this.lobby;
    $("#lobby-code").textContent = lobby.code;
    $("#lobby-state").textContent = lobby.state.replaceAll("_", " ");
    $("#lobby-admin-note").textContent = this.isAdmin ? "you are the admin" : `admin ${lobby.creator_device_id}`;
    const canAssign = this.isAdmin && lobby.state === "open";
    // pushes re-render the table at any moment: keep the control that has the focus focused (drafts keep its value)
    const focused = document.activeElement?.closest?.("#participants tr[data-device]") ? document.activeElement : null;
    const focusKey = focused ? [focused.closest("tr").dataset.device, focused.className] : null;
    $("#participants tbody").replaceChildren(...lobby.participants.map((p) => this.participantRow(p, canAssign)));
    if (focusKey) {
      const row = [...document.querySelectorAll("#participants tr[data-device]")].find((r) => r.dataset.device === focusKey[0]);
      row?.querySelector(`.${focusKey[1].split(" ")[0]}`)?.focus();
    }
    const positions = lobby.room_snapshot?.positions?.length ?? 0;
    $("#room-note").textContent = lobby.room_snapshot
      ? `Room shared: ${lobby.room_snapshot.vertices?.length ?? "?"} corners, ${lobby.room_snapshot.height_m ?? "?"} m high, ${positions} positions.`
      : "No room shared yet (the comparison with a simulation needs one with positions).";
    this.renderControls();
  }

  participantRow(p, canAssign) {
    const row = h("tr", { "data-device": p.device_id },
      h("th", { scope: "row" }, p.device_id, p.device_id === this.me ? " (this browser)" : ""),
      h("td", { class: "role" }, p.role),
      h("td", { class: "slot" }, p.role_slot_id ?? ""),
      h("td", {}, p.role_slot_label ?? ""),
      h("td", {}, p.status),
      h("td", {}, h("span", { class: `pill ${p.connected ? "online" : ""}` }, p.connected ? "connected" : "offline")));
    const controls = h("td", { class: "admin-only" });
    if (canAssign && p.status === "joined") {
      const label = `role of ${p.device_id}`;
      // what the admin has chosen but not yet assigned survives the re-renders that pushes cause
      const draft = this.drafts.get(p.device_id) ?? { role: p.role, slot: p.role_slot_id ?? "" };
      const role = h("select", { "aria-label": label, class: "role-select" },
        ["none", "speaker", "microphone"].map((r) => h("option", { value: r, selected: r === draft.role }, r)));
      const slot = h("input", { "aria-label": `slot of ${p.device_id}`, class: "slot-input", size: 10, value: draft.slot, placeholder: "auto" });
      const keep = () => this.drafts.set(p.device_id, { role: role.value, slot: slot.value });
      role.addEventListener("change", keep);
      slot.addEventListener("input", keep);
      const button = h("button", { type: "button", class: "assign" }, "Assign");
      button.addEventListener("click", () => this.guard(async () => {
        await this.assign(p.device_id, role.value, slot.value);
        this.drafts.delete(p.device_id);
        this.render();
      }));
      controls.append(role, " ", slot, " ", button);
    }
    row.append(controls);
    return row;
  }

  renderControls() {
    const state = this.session?.state;
    const live = this.session && ACTIVE_STATES.has(state);
    $("#session-create").disabled = !this.isAdmin || Boolean(live) || this.lobby?.state === "closed";
    const start = $("#session-start");
    start.disabled = !live || !["idle", "failed"].includes(state);
    start.textContent = state === "failed" ? "Retry this speaker" : "Start";
    $("#session-cancel").disabled = !live || state === "analyzing";
  }
}
