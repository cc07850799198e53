// The distributions a model publishes of its own samples (a card's `measurements`): per quantity its median, the
// 5-95 % range and a histogram, so a reader sees what the data look like before asking for any.

import { el } from "./dom.js";
import { measurementName } from "./measurement_names.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

const number = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString(undefined, { maximumFractionDigits: 1 }));

function histogram(name, { edges, counts }, unit) {
  const width = 160;
  const height = 36;
  const top = Math.max(...counts) || 1;
  const bar = width / counts.length;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `Histogram of ${name}: ${number(edges[0])} to ${number(edges[edges.length - 1])} ${unit}` });
  counts.forEach((count, i) => {
    const h = (count / top) * (height - 2);
    chart.append(svg("rect", { x: i * bar, y: height - h, width: Math.max(bar - 0.5, 0.5), height: h, class: "bar" }));
  });
  return chart;
}

/** The card's measurements as a table, or null when the model publishes none in this shape. */
export function distributionsView(measurements) {
  const quantities = measurements && measurements.quantities;
  if (!quantities || typeof quantities !== "object") return null;
  let said = null; // a measurement of each lead is defined once, on its first lead's row
  const rows = Object.entries(quantities).map(([key, q]) => {
    const quantiles = q.quantiles || {};
    const unit = q.unit || "";
    const definition = q.lead && q.definition ? q.definition.replace(new RegExp(`, lead ${q.lead}$`), ", per lead") : q.definition;
    const shown = definition && definition !== said ? definition : null;
    said = definition;
    return el("tr", {}, [
      el("th", { scope: "row" }, [measurementName(key), shown ? el("span", { class: "hint block" }, shown) : null]),
      el("td", { class: "num" }, `${number(quantiles["50"])} ${unit}`),
      el("td", { class: "num" }, `${number(quantiles["5"])} – ${number(quantiles["95"])}`),
      el("td", { class: "num" }, q.measurable === undefined ? "" : `${Math.round(q.measurable * 100)} %`),
      el("td", {}, q.histogram ? histogram(measurementName(key), q.histogram, unit) : null),
    ]);
  });
  return el("div", {}, [
    measurements.distribution_of ? el("p", { class: "hint" }, `Measured on ${measurements.distribution_of}.`) : null,
    el("div", { class: "table-scroll", tabindex: 0, role: "region", "aria-label": "Measured distributions (scrolls sideways)" },
      el("table", { class: "distributions" }, [
      el("thead", {}, el("tr", {}, ["Quantity", "Median", "5 – 95 %", "Measurable", "Histogram"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows),
      ])),
    measurements.method ? el("p", { class: "hint" }, `How: ${measurements.method}`) : null,
    measurements.limits ? el("p", { class: "hint" }, `Limits: ${measurements.limits}`) : null,
    agreementView(measurements.agreement),
  ]);
}

const percent = (share) => `${Math.round(share * 100)} %`;
const amount = (value, unit) => (unit === "degrees" ? `${number(value)}°` : `${number(value)} ${unit}`);
const signed = (v) => (v === null || v === undefined ? "–" : `${v > 0 ? "+" : ""}${number(v)}`);

/** How often each measurement is within a tolerance of an independent delineation: the first three in the summary. */
function agreementView(agreement) {
  const rows = agreement && agreement.measurements;
  if (!rows || typeof rows !== "object") return null;
  const first = Object.entries(rows).slice(0, 3)
    .map(([key, r]) => `${measurementName(key)} ${percent(r.within)} within ${amount(r.tolerance, r.unit)}`);
  return el("details", { class: "agreement" }, [
    el("summary", {}, `Agreement with an independent delineation (${agreement.samples} ECGs): ${first.join(", ")}`),
    el("p", { class: "hint" }, `Against ${agreement.reference}; seed ${agreement.seed}, ${agreement.leads} leads.`),
    el("div", { class: "table-scroll", tabindex: 0, role: "region", "aria-label": "Agreement (scrolls sideways)" },
      el("table", { class: "agreement" }, [
        el("thead", {}, el("tr", {}, ["Measurement", "Tolerance", "Within", "Median difference", "90th pct. abs. difference"]
          .map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, Object.entries(rows).map(([key, r]) => el("tr", {}, [
          el("th", { scope: "row" }, measurementName(key)),
          el("td", { class: "num" }, amount(r.tolerance, r.unit)),
          el("td", { class: "num" }, percent(r.within)),
          el("td", { class: "num" }, signed(r.median_difference)),
          el("td", { class: "num" }, number(r.p90_abs_difference)),
        ]))),
      ])),
  ]);
}
