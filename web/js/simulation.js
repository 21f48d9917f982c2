// The simulation page: a room form with materials from the catalogue, a top view, and the results.
import { $, h } from "./dom.js";
import { httpJson } from "./gateway.js";
import { pairKey, renderResults } from "./results.js";

const SHOEBOX_WALLS = ["wall 0 (y = 0)", "wall 1 (x = length)", "wall 2 (y = width)", "wall 3 (x = 0)"];
const DEFAULT_HEIGHT_M = 1.2;

/** "id: x, y, z" lines -> [{id, position_m}]; throws naming the line that does not read. */
export function parsePlacements(text, kind) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line, index) => {
    const match = line.match(/^([^:]+):\s*(.+)$/);
    const numbers = match ? match[2].split(/[,\s]+/).filter(Boolean).map(Number) : [];
    if (!match || numbers.length !== 3 || numbers.some((n) => !Number.isFinite(n))) {
      throw Object.assign(new Error(`${kind} line ${index + 1} ("${line}") should read "id: x, y, z"`), { code: "bad_request" });
    }
    return { id: match[1].trim(), position_m: numbers };
  });
}

export function parseVertices(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line, index) => {
    const numbers = line.split(/[,\s]+/).filter(Boolean).map(Number);
    if (numbers.length !== 2 || numbers.some((n) => !Number.isFinite(n))) {
      throw Object.assign(new Error(`corner ${index + 1} ("${line}") should read "x, y"`), { code: "bad_request" });
    }
    return numbers;
  });
}

/**
 * A simulation request for a lobby's shared room (`map.room`: vertices, height_m, materials, positions by slot)
 * covering the analysed pairs whose slots have positions; null when there is nothing to simulate.
 */
export function snapshotSimulationRequest(room, items) {
  const positions = new Map((room.positions ?? []).map((p) => [p.slot_id, p.position_m ?? p.position]));
  if (!Array.isArray(room.vertices) || !room.height_m) return null;
  const place = (id) => {
    const p = positions.get(id);
    return { id, position_m: p.length >= 3 ? p.slice(0, 3) : [p[0], p[1], DEFAULT_HEIGHT_M] };
  };
  const ok = items.filter((i) => i.status !== "failed");
  const speakers = [...new Set(ok.map((i) => i.speaker_slot_id))].filter((id) => positions.has(id));
  const mics = [...new Set(ok.map((i) => i.mic_slot_id))].filter((id) => positions.has(id));
  if (!speakers.length || !mics.length) return null;
  const materials = room.materials ?? {};
  const simRoom = { type: "polygon", vertices: room.vertices, height_m: room.height_m };
  if (materials.default_material) simRoom.default_material = materials.default_material;
  if (materials.surfaces) simRoom.surfaces = materials.surfaces;
  return { room: simRoom, sources: speakers.map(place), microphones: mics.map(place), method: "hybrid" };
}

/** Simulation pairs in the shape of measurement result items, so one renderer serves both. */
export function pairsAsItems(results) {
  return results.map((r) => ({
    speaker_slot_id: r.source_id, mic_slot_id: r.microphone_id, status: "ok", error: null,
    broadband: r.broadband, bands: r.bands, quality: { ...r.quality, null_reasons: r.null_reasons }, plots: r.plots,
  }));
}

export class SimulationView {
  constructor() {
    this.form = $("#sim-form");
    this.materials = null;
    this.form.addEventListener("input", () => this.drawTopView());
    this.form.addEventListener("change", (event) => {
      if (event.target.name === "room_type" || event.target.name === "vertices") this.renderSurfaces();
      this.drawTopView();
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run();
    });
  }

  async open() {
    if (this.materials) return;
    try {
      this.materials = (await httpJson("/v1/simulation/materials")).materials;
    } catch (error) {
      $("#sim-error").textContent = `The material catalogue did not load: ${error.code}: ${error.message}`;
      this.materials = [];
    }
    this.renderSurfaces();
    this.drawTopView();
  }

  get roomType() {
    return this.form.elements.room_type.value;
  }

  surfaceNames() {
    if (this.roomType === "shoebox") return SHOEBOX_WALLS;
    let n = 0;
    try {
      n = parseVertices(this.form.elements.vertices.value).length;
    } catch {
      n = 0;
    }
    return Array.from({ length: n }, (_, i) => `wall ${i} (corner ${i} to ${(i + 1) % n})`);
  }

  materialSelect(id, label, { allowDefault }) {
    const byCategory = new Map();
    for (const m of this.materials ?? []) {
      if (!byCategory.has(m.category)) byCategory.set(m.category, []);
      byCategory.get(m.category).push(m);
    }
    const select = h("select", { id, name: id },
      allowDefault ? h("option", { value: "" }, "same as the default") : h("option", { value: "" }, "plain, absorption 0.15"),
      [...byCategory].map(([category, list]) => h("optgroup", { label: category },
        list.map((m) => h("option", { value: m.name }, m.description ?? m.name)))));
    return [h("label", { for: id }, label), select];
  }

  renderSurfaces() {
    const box = $("#sim-materials");
    const previous = new Map([...box.querySelectorAll("select")].map((s) => [s.id, s.value]));
    const rows = [this.materialSelect("mat-default", "Default (every surface not set below)", { allowDefault: false }),
      this.materialSelect("mat-floor", "Floor", { allowDefault: true }),
      this.materialSelect("mat-ceiling", "Ceiling", { allowDefault: true }),
      ...this.surfaceNames().map((name, i) => this.materialSelect(`mat-wall-${i}`, name[0].toUpperCase() + name.slice(1), { allowDefault: true }))];
    box.replaceChildren(...rows.flat());
    for (const select of box.querySelectorAll("select")) if (previous.has(select.id)) select.value = previous.get(select.id);
    $("#sim-shoebox").hidden = this.roomType !== "shoebox";
    $("#sim-polygon").hidden = this.roomType !== "polygon";
  }

  /** The request the form describes (throws a readable error for a line that does not parse). */
  request() {
    const f = this.form.elements;
    const room = this.roomType === "shoebox"
      ? { type: "shoebox", dimensions_m: [Number(f.x_m.value), Number(f.y_m.value), Number(f.z_m.value)] }
      : { type: "polygon", vertices: parseVertices(f.vertices.value), height_m: Number(f.height_m.value) };
    const value = (id) => $(`#${id}`)?.value ?? "";
    if (value("mat-default")) room.default_material = { name: value("mat-default") };
    const surfaces = {};
    if (value("mat-floor")) surfaces.floor = { name: value("mat-floor") };
    if (value("mat-ceiling")) surfaces.ceiling = { name: value("mat-ceiling") };
    const walls = {};
    this.surfaceNames().forEach((_, i) => {
      if (value(`mat-wall-${i}`)) walls[String(i)] = { name: value(`mat-wall-${i}`) };
    });
    if (Object.keys(walls).length) surfaces.walls = walls;
    if (Object.keys(surfaces).length) room.surfaces = surfaces;
    const body = {
      room,
      sources: parsePlacements(f.sources.value, "source"),
      microphones: parsePlacements(f.microphones.value, "microphone"),
      method: f.method.value,
      plots: true,
    };
    if (f.max_order.value !== "") body.max_order = Number(f.max_order.value);
    return body;
  }

  drawTopView() {
    const svg = $("#sim-topview");
    const ns = "http://www.w3.org/2000/svg";
    const el = (tag, attrs, text) => {
      const node = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
      if (text) node.textContent = text;
      return node;
    };
    let corners;
    let sources = [];
    let mics = [];
    try {
      const f = this.form.elements;
      corners = this.roomType === "shoebox"
        ? (([x, y]) => [[0, 0], [x, 0], [x, y], [0, y]])([Number(f.x_m.value), Number(f.y_m.value)])
        : parseVertices(f.vertices.value);
      sources = parsePlacements(f.sources.value, "source");
      mics = parsePlacements(f.microphones.value, "microphone");
    } catch {
      if (!corners) return;
    }
    const xs = [...corners, ...sources.map((s) => s.position_m), ...mics.map((m) => m.position_m)].map((p) => p[0]);
    const ys = [...corners, ...sources.map((s) => s.position_m), ...mics.map((m) => m.position_m)].map((p) => p[1]);
    const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
    const span = Math.max(maxX - minX, maxY - minY, 1);
    const pad = span * 0.08;
    // y grows upwards in the room, downwards in SVG: flip it
    svg.setAttribute("viewBox", `${minX - pad} ${-(maxY + pad)} ${maxX - minX + 2 * pad} ${maxY - minY + 2 * pad}`);
    const r = span * 0.015;
    const font = span * 0.035;
    const shapes = [el("polygon", { points: corners.map(([x, y]) => `${x},${-y}`).join(" "), fill: "#ffffff", stroke: "#1b1f24", "stroke-width": span * 0.006 })];
    corners.forEach(([x, y], i) => shapes.push(el("text", { x, y: -y, "font-size": font * 0.8, fill: "#6e7781" }, String(i))));
    for (const s of sources) {
      const [x, y] = s.position_m;
      shapes.push(el("rect", { x: x - r, y: -y - r, width: 2 * r, height: 2 * r, fill: "#b3261e", class: "source" }),
        el("text", { x: x + 1.5 * r, y: -y, "font-size": font }, s.id));
    }
    for (const m of mics) {
      const [x, y] = m.position_m;
      shapes.push(el("circle", { cx: x, cy: -y, r, fill: "#0b5cad", class: "microphone" }),
        el("text", { x: x + 1.5 * r, y: -y, "font-size": font }, m.id));
    }
    svg.replaceChildren(...shapes);
  }

  async run() {
    const status = $("#sim-status");
    const error = $("#sim-error");
    const results = $("#sim-results");
    error.textContent = "";
    let body;
    try {
      body = this.request();
    } catch (problem) {
      error.textContent = problem.message;
      return;
    }
    status.textContent = "Simulating…";
    $("#sim-run").disabled = true;
    try {
      const answer = await httpJson("/v1/simulation/simulate", { method: "POST", body });
      const s = answer.settings;
      status.textContent = `Simulated ${answer.results.length} pairs in ${answer.elapsed_s.toFixed(2)} s (${s.method}, order ${s.max_order ?? "-"}, ` +
        `${s.n_rays ?? 0} rays; estimated ${s.estimated_cost_s} s of a ${s.cost_budget_s} s budget). Volume ${answer.room.volume_m3} m³, ` +
        `Eyring RT60 at 1 kHz ${answer.room.eyring_rt60_s["1000"]} s.`;
      const notes = (answer.notes ?? []).map((n) => h("p", { class: "note" }, n));
      const box = h("div");
      results.replaceChildren(...notes, box);
      renderResults(box, pairsAsItems(answer.results), { idPrefix: "sim", title: `Simulation ${answer.simulation_id.slice(0, 8)}` });
    } catch (problem) {
      status.textContent = "";
      const cost = problem.details?.estimated_cost_s != null
        ? ` (estimated ${problem.details.estimated_cost_s} s of work, budget ${problem.details.cost_budget_s} s)` : "";
      error.textContent = `The simulation was refused: ${problem.message}${cost}`;
      error.dataset.code = problem.code;
      results.replaceChildren();
    } finally {
      $("#sim-run").disabled = false;
    }
  }
}

export { pairKey };
