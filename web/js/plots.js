// The result plots, drawn with uPlot (web/vendor, rebuilt by `make web`).
import uPlot from "../vendor/uplot.esm.js";
import { h } from "./dom.js";

export const BANDS = ["125", "250", "500", "1000", "2000", "4000", "8000"];
const COLORS = { curve: "#0b5cad", edt: "#b3261e", t20: "#1a7f37", t30: "#8250df", min: "#6e7781", max: "#0b5cad", sim: "#d4580a" };
const HEIGHT = 240;

function widthOf(element) {
  return Math.max(320, Math.min(560, (element.clientWidth || 540) - 10));
}

/** A figure with a caption, optional controls, and a uPlot chart; `data-points` counts what it draws. */
function figure(title, controls = []) {
  const chart = h("div", { class: "chart" });
  const fig = h("figure", { class: "plot" }, h("figcaption", {}, title), ...controls, chart);
  return { fig, chart };
}

function countPoints(data) {
  return data.slice(1).reduce((n, series) => n + series.filter((v) => v !== null && Number.isFinite(v)).length, 0);
}

function draw(fig, chart, options, data) {
  fig.dataset.points = String(countPoints(data));
  const plot = new uPlot({ width: widthOf(fig.parentElement ?? chart), height: HEIGHT, ...options }, data, chart);
  fig._plot = plot;
  return plot;
}

function setData(fig, plot, data) {
  fig.dataset.points = String(countPoints(data));
  plot.setData(data);
}

const axis = (label, extra = {}) => ({ label, stroke: "#1b1f24", grid: { stroke: "#eaeef2" }, ...extra });

function fitLine(fit, time) {
  if (!fit) return time.map(() => null);
  return time.map((t) => (t >= fit.start_s && t <= fit.end_s ? fit.intercept_db + fit.slope_db_per_s * t : null));
}

/** Energy decay curve of one band (chosen by a select) with the EDT, T20 and T30 regression lines over their ranges. */
export function decayPlot(parent, curves, idPrefix) {
  const available = ["broadband", ...BANDS].filter((key) => curves?.[key]);
  const select = h("select", { id: `${idPrefix}-band`, "aria-label": "Band of the decay curve" },
    available.map((key) => h("option", { value: key, selected: key === "1000" }, key === "broadband" ? "broadband" : `${key} Hz`)));
  const { fig, chart } = figure("Energy decay curve with fitted ranges", [h("label", { for: select.id }, "Band "), select]);
  fig.classList.add("plot-decay");
  parent.append(fig);
  if (!available.length) {
    fig.append(h("p", { class: "note" }, "No decay curve (the analysis failed)."));
    return fig;
  }
  const dataFor = (key) => {
    const curve = curves[key];
    const time = curve.time_s;
    return [time, curve.level_db, fitLine(curve.fits.edt, time), fitLine(curve.fits.t20, time), fitLine(curve.fits.t30, time)];
  };
  const plot = draw(fig, chart, {
    scales: { x: { time: false }, y: { range: (u, min) => [Math.max(Math.floor(min / 10) * 10, -100), 5] } },
    axes: [axis("time after the direct sound (s)"), axis("level (dB)")],
    series: [
      { label: "t (s)", value: (u, v) => (v == null ? "—" : v.toFixed(3)) },
      { label: "Schroeder curve", stroke: COLORS.curve, width: 1.5 },
      { label: "EDT fit", stroke: COLORS.edt, dash: [8, 4], width: 3 },
      { label: "T20 fit", stroke: COLORS.t20, dash: [8, 4], width: 3 },
      { label: "T30 fit", stroke: COLORS.t30, dash: [3, 3], width: 3 },
    ],
  }, dataFor(select.value));
  select.addEventListener("change", () => setData(fig, plot, dataFor(select.value)));
  return fig;
}

/** The impulse response: linear (min/max envelope per bin) or its level in dB. */
export function impulsePlot(parent, ir, { db = false } = {}) {
  const { fig, chart } = figure(db ? "Impulse response (dB)" : "Impulse response (linear, first 250 ms)");
  fig.classList.add(db ? "plot-ir-db" : "plot-ir");
  parent.append(fig);
  if (!ir) {
    fig.append(h("p", { class: "note" }, "No impulse response."));
    return fig;
  }
  const series = db
    ? [{ label: "t (s)" }, { label: "level (dB re peak)", stroke: COLORS.curve, width: 1 }]
    : [{ label: "t (s)" }, { label: "max", stroke: COLORS.max, width: 1 }, { label: "min", stroke: COLORS.min, width: 1 }];
  const data = db ? [ir.time_s, ir.level_db] : [ir.time_s, ir.max, ir.min];
  draw(fig, chart, {
    // the linear view shows the early part (direct sound and first reflections), the dB view the whole decay
    scales: { x: db ? { time: false } : { time: false, range: [-0.005, Math.min(0.25, ir.time_s.at(-1))] }, y: db ? { range: [-90, 3] } : { range: [-1.05, 1.05] } },
    axes: [axis("time after the direct sound (s)"), axis(db ? "dB" : "amplitude")],
    series,
  }, data);
  return fig;
}

/** Magnitude response, 1/6-octave smoothed, on a logarithmic frequency axis. */
export function frequencyPlot(parent, fr) {
  const { fig, chart } = figure("Frequency response");
  fig.classList.add("plot-fr");
  parent.append(fig);
  if (!fr) {
    fig.append(h("p", { class: "note" }, "No frequency response."));
    return fig;
  }
  draw(fig, chart, {
    scales: { x: { time: false, distr: 3, range: [fr.frequency_hz[0], fr.frequency_hz.at(-1)] }, y: { range: (u, min) => [Math.max(Math.floor(min / 10) * 10, -80), 3] } },
    axes: [axis("frequency (Hz)"), axis("dB re max")],
    series: [{ label: "f (Hz)" }, { label: "level", stroke: COLORS.curve, width: 2 }],
  }, [fr.frequency_hz, fr.level_db]);
  return fig;
}

export const METRICS = [
  ["rt60_s", "RT60 (s)"], ["t20_s", "T20 (s)"], ["t30_s", "T30 (s)"], ["edt_s", "EDT (s)"],
  ["c50_db", "C50 (dB)"], ["c80_db", "C80 (dB)"], ["d50", "D50"], ["drr_db", "DRR (dB)"],
];

/** One metric per band, measured against simulated; the metric is chosen with a select. */
export function comparePlot(parent, measuredBands, simulatedBands, idPrefix) {
  const select = h("select", { id: `${idPrefix}-metric`, "aria-label": "Metric to compare" },
    METRICS.map(([key, label]) => h("option", { value: key }, label)));
  const { fig, chart } = figure("Measured against simulated, per band", [h("label", { for: select.id }, "Metric "), select]);
  fig.classList.add("plot-compare");
  parent.append(fig);
  const x = BANDS.map((_, i) => i);
  const dataFor = (metric) => [
    x,
    BANDS.map((band) => measuredBands?.[band]?.[metric] ?? null),
    BANDS.map((band) => simulatedBands?.[band]?.[metric] ?? null),
  ];
  const plot = draw(fig, chart, {
    scales: { x: { time: false, range: [-0.5, BANDS.length - 0.5] } },
    axes: [axis("octave band (Hz)", { splits: () => x, values: (u, splits) => splits.map((i) => BANDS[i] ?? "") }), axis("")],
    series: [
      { label: "band", value: (u, v) => (v == null ? "—" : `${BANDS[v]} Hz`) },
      { label: "measured", stroke: COLORS.curve, width: 2, points: { size: 8 } },
      { label: "simulated", stroke: COLORS.sim, width: 2, dash: [6, 4], points: { size: 8 } },
    ],
  }, dataFor(select.value));
  select.addEventListener("change", () => setData(fig, plot, dataFor(select.value)));
  return fig;
}
