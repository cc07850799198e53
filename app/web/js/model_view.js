// `#/models/{category}/{subcategory}/{id}`: a model's card and the form of its request.

import { getJSON, request } from "./api.js";
import { label } from "./catalog.js";
import { clear, el, notice, title } from "./dom.js";
import { distributionsView } from "./distributions_view.js";
import { drawECG } from "./ecg.js";
import { firstSamples } from "./samples.js";
import { bodyText, buildForm, openapi, requestSchema } from "./schema_form.js";

const human = (key) => label(key.replace(/_/g, " "));

/** A JSON value as nested definition lists (objects), comma lists (short lists of scalars) or text. */
function valueView(value, depth = 0) {
  if (value === null || typeof value !== "object") return el("span", {}, String(value));
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== "object") && value.length <= 40) return el("span", {}, value.join(", "));
    if (depth > 2 || value.length > 12) return el("pre", { class: "json" }, JSON.stringify(value, null, 1));
    return el("ol", {}, value.map((v) => el("li", {}, valueView(v, depth + 1))));
  }
  if (depth > 3) return el("pre", { class: "json" }, JSON.stringify(value, null, 1));
  return el("dl", { class: "kv" }, Object.entries(value).flatMap(([k, v]) => [el("dt", {}, human(k)), el("dd", {}, valueView(v, depth + 1))]));
}

function outputText(output) {
  if (output.kind === "signal") {
    return `${output.channels.length} channels (${output.channels.join(", ")}), ${output.length / output.sampling_rate} s at `
      + `${output.sampling_rate} Hz, in ${output.unit}`;
  }
  if (output.kind === "image") {
    return `${output.width} × ${output.height} px images (${output.color_channels.join("")})${output.mask_channel ? " each with a segmentation mask" : ""}`;
  }
  return output.kind;
}

/** Distributions a model publishes about its samples (any `distributions` or `measurements` in its card). */
function measured(card) {
  const found = [];
  for (const source of [card, card.provenance || {}]) {
    for (const key of ["distributions", "measurements", "measured"]) if (source[key]) found.push(source[key]);
  }
  return found;
}

/** A preview drawn by the model itself: one sample, made on request (a 1-sample job, listed under My jobs). */
function previewView(card, signal) {
  const box = el("div", { class: "card-preview" });
  const status = el("p", { class: "hint", role: "status" });
  const button = el("button", { type: "button" }, "Draw one sample");
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.textContent = "Making one sample…";
    try {
      const body = { num_samples: 1, format: card.formats.includes("json") ? "json" : card.formats[0] };
      const created = await (await request(card.generate, { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body) })).json();
      await firstSamples(created.job_id, 1, (sample) => {
        if (card.output.kind === "signal") {
          const frame = el("div", { class: "ecg-frame", tabindex: 0, role: "region", "aria-label": "Preview drawing" });
          const canvas = el("canvas", { role: "img", "aria-label": "preview" });
          frame.append(canvas);
          clear(box, frame);
          drawECG(canvas, sample, card.output.record_key);
        } else {
          clear(box, el("div", { class: "pair-images" }, [
            el("img", { src: `data:image/png;base64,${sample.image_png}`, alt: "A synthetic image", width: sample.width, height: sample.height }),
            sample.mask_png ? el("img", { src: `data:image/png;base64,${sample.mask_png}`, alt: "Its mask", width: sample.width, height: sample.height }) : null,
          ]));
        }
        status.textContent = `Sample 0 of job ${created.job_id.slice(0, 8)} (seed ${created.seed}), with the default parameters.`;
      }, signal);
    } catch (error) {
      if (!signal.aborted) status.textContent = `No preview: ${error.message}`;
    } finally {
      button.disabled = false;
      button.textContent = "Draw another";
    }
  });
  return el("section", { "aria-labelledby": "preview-title" }, [
    el("h3", { id: "preview-title" }, "Preview"),
    el("p", { class: "hint" }, "The model draws one sample now (a 1-sample job)."),
    button, status, box,
  ]);
}

function cardView(card, signal) {
  const { training, ...made } = card.provenance || {};
  const distributions = measured(card);
  return el("section", { class: "card", "aria-labelledby": "card-title" }, [
    el("h2", { id: "card-title" }, "Model card"),
    el("p", {}, card.description),
    el("dl", { class: "facts" }, [
      el("dt", {}, "Output"), el("dd", {}, outputText(card.output)),
      el("dt", {}, "Formats"), el("dd", {}, card.formats.join(", ")),
      el("dt", {}, "Versions"), el("dd", {}, card.versions.join(", ") + ` (latest ${card.version})`),
      el("dt", {}, "Licence"), el("dd", {}, card.license),
      el("dt", {}, "Artifact sha256"), el("dd", { class: "hash" }, card.sha256),
    ]),
    previewView(card, signal),
    el("h3", {}, "Cite"),
    el("ul", { class: "citations" }, card.citations.map((c) => el("li", {}, [
      c.text, c.doi ? [" ", el("a", { href: `https://doi.org/${c.doi}`, rel: "noopener" }, `doi:${c.doi}`)] : null,
    ].flat()))),
    distributions.length ? el("details", { open: true }, [el("summary", {}, "Measured distributions"),
      ...distributions.map((d) => distributionsView(d) || valueView(d))]) : null,
    training ? el("details", {}, [el("summary", {}, "How it was trained"), valueView(training)]) : null,
    el("details", {}, [el("summary", {}, "How it was made (provenance)"), valueView(made)]),
  ]);
}

export async function showModel(main, [category, subcategory, modelId], signal) {
  const path = `/models/${category}/${subcategory}`;
  const [cards, doc] = await Promise.all([getJSON(path), openapi(getJSON)]);
  const card = cards.find((c) => c.id === modelId) || cards[0];
  title(card.name);
  const generate = card.generate;
  const form = el("form", { class: "request", "aria-labelledby": "form-title", novalidate: false });
  const fieldsBox = el("div");
  let fields = null;
  const versionSelect = card.versions.length > 1
    ? el("select", { id: "field-version-pick", "aria-describedby": "version-hint" },
      [...card.versions].reverse().map((v) => el("option", { value: v, selected: v === card.version }, v === card.version ? `${v} (latest)` : String(v))))
    : null;
  const render = () => {
    const version = versionSelect ? Number(versionSelect.value) : card.version;
    const schema = requestSchema(doc, generate, card.id, version);
    if (!schema) {
      clear(fieldsBox, el("p", {}, `The API document has no request schema for ${card.id} version ${version}.`));
      fields = null;
      return;
    }
    let before = {};
    try {
      before = fields ? fields.read() : {};
    } catch {
      /* a field that does not parse starts again from its default */
    }
    const max = schema.properties.num_samples?.maximum ?? 100;
    fields = buildForm(doc, schema, { num_samples: Math.min(100, max), ...before });
    clear(fieldsBox, fields.element);
  };
  versionSelect?.addEventListener("change", render);
  render();
  const submit = el("button", { type: "submit", class: "primary" }, "Generate");
  form.append(...[ // DOM append writes a null as the text "null": a model with one version has no picker
    el("h2", { id: "form-title" }, "Make samples"),
    versionSelect ? el("div", { class: "field" }, [
      el("label", { for: "field-version-pick" }, "Model version"), versionSelect,
      el("p", { class: "hint", id: "version-hint" }, "The same seed on the same version makes the same samples."),
    ]) : null,
    fieldsBox,
    el("div", { class: "actions" }, [submit]),
  ].filter(Boolean));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!fields || !form.reportValidity()) return;
    submit.disabled = true;
    notice("");
    try {
      const response = await request(generate, { method: "POST", headers: { "Content-Type": "application/json" }, body: bodyText(fields.read()) });
      const created = await response.json();
      location.hash = `#/jobs/${created.job_id}`;
    } catch (error) {
      notice(`The request was refused: ${error.message}`);
    } finally {
      submit.disabled = false;
    }
  });
  clear(main,
    el("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, [el("a", { href: "#/" }, "Models"), " › ", `${category} › ${subcategory}`]),
    el("h1", {}, card.name),
    el("div", { class: "columns" }, [form, cardView(card, signal)]));
}
