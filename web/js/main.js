// Entry point: connect as a browser device, wire the three views together.
import { GatewaySocket, browserDeviceId, httpJson } from "./gateway.js";
import { LobbyView } from "./lobby.js";
import { BrowserPhone } from "./phone.js";
import { $, clock, h } from "./dom.js";
import { pairKey, renderResults } from "./results.js";
import { SimulationView, snapshotSimulationRequest } from "./simulation.js";

const deviceId = browserDeviceId();
const gateway = new GatewaySocket(deviceId);
$("#device-id").textContent = deviceId;

function selectView(name) {
  for (const tab of document.querySelectorAll("button.tab")) tab.setAttribute("aria-pressed", String(tab.dataset.view === name));
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  if (name === "simulation") simulation.open();
}
for (const tab of document.querySelectorAll("button.tab")) tab.addEventListener("click", () => selectView(tab.dataset.view));

gateway.on("connection", ({ connected }) => {
  const pill = $("#connection");
  pill.textContent = connected ? "connected" : "offline, reconnecting";
  pill.classList.toggle("online", connected);
});

/** Show a job's results; with a shared room that has positions, simulate it too and compare. */
async function showJob(jobId, lobby = null) {
  const status = $("#results-status");
  const container = $("#results");
  $("#results-job-id").value = jobId;
  status.textContent = `Loading the results of job ${jobId}…`;
  const job = await httpJson(`/v1/jobs/${encodeURIComponent(jobId)}`);
  const items = job.analysis?.results ?? [];
  if (!items.length) {
    status.textContent = `Job ${jobId}: analysis ${job.analysis?.state ?? "not started"}, no results yet.`;
    container.replaceChildren();
    return;
  }
  const room = lobby?.room_snapshot ?? job.map?.room ?? null;
  renderResults(container, items, { idPrefix: "res", title: `Job ${jobId.slice(0, 8)}` });
  status.textContent = `${items.length} recordings analysed.`;
  const request = room ? snapshotSimulationRequest(room, items) : null;
  if (!request) return;
  status.textContent = `${items.length} recordings analysed; simulating the shared room for comparison…`;
  try {
    const answer = await httpJson("/v1/simulation/simulate", { method: "POST", body: request });
    const simulated = new Map(answer.results.map((r) => [pairKey(r.source_id, r.microphone_id), r]));
    renderResults(container, items, { simulated, idPrefix: "res", title: `Job ${jobId.slice(0, 8)}` });
    status.textContent = `${items.length} recordings analysed; compared with simulation ${answer.simulation_id.slice(0, 8)} (${answer.settings.method}).`;
  } catch (error) {
    status.textContent = `${items.length} recordings analysed; no comparison: the simulation answered ${error.code}: ${error.message}`;
  }
}

$("#results-load-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await showJob($("#results-job-id").value.trim());
  } catch (error) {
    $("#results-status").textContent = `${error.code}: ${error.message}`;
  }
});

const simulation = new SimulationView();
new LobbyView(gateway, {
  onAnalysis: (jobId, lobby) => {
    selectView("results");
    showJob(jobId, lobby).catch((error) => ($("#results-status").textContent = `${error.code}: ${error.message}`));
  },
});
const phone = new BrowserPhone(gateway, (text, isError = false) => {
  $("#phone-log").append(h("li", { class: isError ? "error" : "" }, h("time", {}, clock()), text));
});
$("#phone-enable").addEventListener("click", async () => {
  try {
    await phone.enable();
    $("#phone-enable").textContent = "Phone mode on";
    $("#phone-enable").disabled = true;
  } catch (error) {
    $("#phone-log").append(h("li", { class: "error" }, `could not open the microphone: ${error.name}: ${error.message}`));
  }
});
gateway.connect();
window.sonalyze = { gateway, showJob, selectView, phone };
