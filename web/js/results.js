// Results per (speaker, microphone) pair: the per-band table (copyable as CSV) and the plots.
import { h } from "./dom.js";
import { BANDS, comparePlot, decayPlot, frequencyPlot, impulsePlot } from "./plots.js";

export const TABLE_ROWS = [
  ["t20_s", "T20 (s)", 2], ["t30_s", "T30 (s)", 2], ["edt_s", "EDT (s)", 2], ["c50_db", "C50 (dB)", 1],
  ["c80_db", "C80 (dB)", 1], ["d50", "D50", 2], ["drr_db", "DRR (dB)", 1], ["sti", "STI", 2],
];
const COLUMNS = [...BANDS, "broadband"];

/** Value and null reason of one cell; STI exists only broadband. */
function cell(item, metric, column) {
  if (metric === "sti" && column !== "broadband") return { value: null, reason: null, absent: true };
  const source = column === "broadband" ? item.broadband : item.bands?.[column];
  const value = source?.[metric] ?? null;
  const key = column === "broadband" ? `broadband.${metric}` : `bands.${column}.${metric}`;
  const reasons = item.quality?.null_reasons ?? item.null_reasons ?? {};
  const reason = value === null ? reasons[key] ?? item.error?.message ?? "not computed" : null;
  return { value, reason, absent: false };
}

export function pairKey(speaker, mic) {
  return `${speaker ?? "?"}|${mic ?? "?"}`;
}

/** CSV of every given pair: speaker, microphone, metric, one column per band, broadband. */
export function resultsCsv(items) {
  const lines = [["speaker_slot_id", "mic_slot_id", "metric", ...BANDS.map((b) => `${b}_hz`), "broadband"].join(",")];
  for (const item of items) {
    for (const [metric] of TABLE_ROWS) {
      const values = COLUMNS.map((column) => {
        const { value } = cell(item, metric, column);
        return value === null ? "" : String(value);
      });
      lines.push([csvField(item.speaker_slot_id), csvField(item.mic_slot_id), metric, ...values].join(","));
    }
  }
  return lines.join("\n") + "\n";
}

function csvField(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function formatted(value, digits) {
  return Number(value).toFixed(digits);
}

/** The per-band table of one pair; null cells say why, in their title and in the numbered list under the table. */
function bandTable(item, caption) {
  const reasons = [];
  const body = TABLE_ROWS.map(([metric, label, digits]) =>
    h("tr", {}, h("th", { scope: "row" }, label), COLUMNS.map((column) => {
      const { value, reason, absent } = cell(item, metric, column);
      if (absent) return h("td", { class: "na" }, "");
      if (value !== null) return h("td", { "data-metric": metric, "data-band": column }, formatted(value, digits));
      let index = reasons.indexOf(reason);
      if (index < 0) index = reasons.push(reason) - 1;
      return h("td", { class: "null", title: reason, "data-metric": metric, "data-band": column }, "—", h("sup", {}, String(index + 1)));
    })));
  const table = h("table", { class: "grid results-table" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Metric"), COLUMNS.map((c) => h("th", { scope: "col" }, c === "broadband" ? "Broadband" : `${c} Hz`)))),
    h("tbody", {}, body));
  const list = reasons.length
    ? h("ol", { class: "reasons", "aria-label": "Why values are missing" }, reasons.map((r) => h("li", {}, r)))
    : null;
  return [table, list];
}

async function copyText(text, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = `Copied ${text.trim().split("\n").length - 1} rows as CSV.`;
  } catch {
    // no clipboard permission: show the text selected, for Ctrl+C
    const area = h("textarea", { rows: 6, cols: 80, readonly: true, "aria-label": "CSV" }, text);
    status.replaceChildren("Clipboard not available; select and copy:", area);
    area.focus();
    area.select();
  }
}

function csvButtons(items, label, status) {
  const text = resultsCsv(items);
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  return h("span", { class: "inline" },
    h("button", { type: "button", class: "copy-csv", onclick: () => copyText(text, status) }, label),
    h("a", { href: url, download: "sonalyze-results.csv" }, "download CSV"));
}

function qualityLine(item) {
  const q = item.quality ?? {};
  const parts = [];
  if (q.drift_ppm != null) parts.push(`clock drift ${q.drift_ppm.toFixed(1)} ppm`);
  if (q.recording_sample_rate_hz) parts.push(`${q.recording_sample_rate_hz} Hz recording`);
  if (q.peak_dbfs != null) parts.push(`peak ${q.peak_dbfs.toFixed(1)} dBFS`);
  if (q.direct_delay_ms != null) parts.push(`direct sound at ${q.direct_delay_ms.toFixed(1)} ms`);
  return parts.join(" · ");
}

/**
 * Render `items` (the measurement service's result items, or simulation pairs mapped to that shape) into
 * `container`. `simulated` maps pairKey(speaker, mic) to a simulation pair (with `bands`) for the comparison plot.
 */
export function renderResults(container, items, { simulated = null, idPrefix = "res", title = "" } = {}) {
  const status = h("p", { class: "note", role: "status" });
  const sorted = [...items].sort((a, b) => pairKey(a.speaker_slot_id, a.mic_slot_id).localeCompare(pairKey(b.speaker_slot_id, b.mic_slot_id)));
  container.replaceChildren(
    h("div", { class: "row" }, title ? h("strong", {}, title) : null, csvButtons(sorted, "Copy all pairs as CSV", status)),
    status,
  );
  sorted.forEach((item, index) => {
    const name = `${item.speaker_slot_id ?? "speaker ?"} → ${item.mic_slot_id ?? "microphone ?"}`;
    const prefix = `${idPrefix}-${index}`;
    const section = h("section", { class: "pair", "data-pair": pairKey(item.speaker_slot_id, item.mic_slot_id), "data-status": item.status ?? "ok", "aria-label": name },
      h("h3", {}, name, item.upload_name ? h("small", {}, ` (${item.upload_name})`) : null));
    container.append(section);
    if (item.status === "failed") {
      section.append(h("p", { class: "error" }, `Not analysed: ${item.error?.code ?? "failed"}: ${item.error?.message ?? ""}`));
      return;
    }
    const line = qualityLine(item);
    if (line) section.append(h("p", { class: "note" }, line));
    for (const warning of item.quality?.warnings ?? []) section.append(h("p", { class: "error" }, warning));
    section.append(...bandTable(item, `Per band: ${name}`).filter(Boolean), csvButtons([item], "Copy as CSV", status));
    const plots = h("div", { class: "plots" });
    section.append(plots);
    const p = item.plots ?? {};
    decayPlot(plots, p.decay_curves, prefix);
    impulsePlot(plots, p.impulse_response);
    impulsePlot(plots, p.impulse_response, { db: true });
    frequencyPlot(plots, p.frequency_response);
    const sim = simulated?.get(pairKey(item.speaker_slot_id, item.mic_slot_id));
    if (sim) comparePlot(plots, item.bands, sim.bands, prefix);
    else if (simulated) plots.append(h("p", { class: "note" }, "No simulation for this pair."));
  });
}
