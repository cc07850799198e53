// `#/jobs/{id}`: live progress, a preview of the first samples, the download, and the request as a recipe.

import { authHeaders, errorOf, request, storedKey } from "./api.js";
import { cardOf } from "./catalog.js";
import { clear, el, notice, title } from "./dom.js";
import { drawECG } from "./ecg.js";
import { ENDED, follow } from "./follow.js";
import { measurementName } from "./measurement_names.js";
import { firstSamples } from "./samples.js";
import { bodyText } from "./schema_form.js";

const PREVIEW = { signal: 3, image: 4 };

function copyButton(target, what) {
  const button = el("button", { type: "button", class: "copy" }, `Copy ${what}`);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(target.textContent);
      button.textContent = "Copied";
    } catch {
      getSelection().selectAllChildren(target); // no clipboard (plain http on another host): select for Ctrl+C
      button.textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => { button.textContent = `Copy ${what}`; }, 2500);
  });
  return button;
}

/** The request that makes these very samples again: seed and model version pinned. */
function recipe(job, card) {
  const body = { ...job.request, seed: job.seed, version: job.model.version };
  if (card && job.model.id !== card.id) body.model = job.model.id;
  const path = card ? card.generate : "/generate/…";
  const json = bodyText(body, 2);
  const auth = storedKey() ? " \\\n     -H \"authorization: Bearer $DSB_API_KEY\"" : "";
  const curl = `curl -X POST ${location.origin}${path} \\\n     -H 'content-type: application/json'${auth} \\\n     -d '${bodyText(body)}'`;
  const jsonBox = el("pre", { class: "code", id: "recipe-json", tabindex: 0, "aria-label": "Request as JSON" }, json);
  const curlBox = el("pre", { class: "code", id: "recipe-curl", tabindex: 0, "aria-label": "Request as a curl command" }, curl);
  return el("section", { "aria-labelledby": "recipe-title" }, [
    el("h2", { id: "recipe-title" }, "Recipe"),
    el("p", {}, `POST this body to ${path} to make the same ${job.progress.total} samples again, byte for byte.`),
    jsonBox, copyButton(jsonBox, "JSON"),
    curlBox, copyButton(curlBox, "curl"),
  ]);
}

function humanBytes(bytes) {
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (bytes >= 1000 && i < units.length - 1) { bytes /= 1000; i += 1; }
  return `${i ? bytes.toFixed(bytes < 10 ? 1 : 0) : bytes} ${units[i]}`;
}

/** The archive's size (HEAD), or an error in the API's words (its files were deleted, it expired). */
async function archiveSize(job) {
  const response = await fetch(job.links.result, { method: "HEAD", headers: authHeaders() });
  if (!response.ok) {
    const get = await fetch(job.links.result, { headers: { ...authHeaders(), Range: "bytes=0-0" } }); // HEAD has no body
    throw await errorOf(get.ok ? response : get);
  }
  return humanBytes(Number(response.headers.get("content-length")));
}

function downloadLink(job) {
  const url = job.links.result;
  const link = el("a", { class: "button primary", href: url, download: "", id: "download" }, "Download the archive (.zip)");
  link.addEventListener("click", async (event) => {
    if (!storedKey()) return; // keys off: the browser downloads it straight to disk
    // A link cannot send the key as a header: ask for a short-lived download link, which the browser's own download
    // manager then saves to disk as it comes (nothing of the archive is held in this page's memory).
    event.preventDefault();
    link.setAttribute("aria-busy", "true");
    try {
      const signed = await (await request(`${url}/link`, { method: "POST" })).json();
      const save = el("a", { href: signed.url, download: "" });
      document.body.append(save);
      save.click();
      save.remove();
    } catch (error) {
      notice(`The download failed: ${error.message}`);
    } finally {
      link.removeAttribute("aria-busy");
    }
  });
  return link;
}

function previewView(job, card, signal) {
  const kind = card?.output.kind;
  const count = Math.min(PREVIEW[kind] || 0, job.progress.total);
  const section = el("section", { "aria-labelledby": "preview-title", id: "preview" });
  if (!count) return section;
  const status = el("p", { class: "hint", role: "status" }, "Waiting for the first samples…");
  section.append(el("h2", { id: "preview-title" }, `First ${count === 1 ? "sample" : `${count} samples`}`), status);
  if (kind === "signal") {
    const records = [];
    const picker = el("div", { class: "tabs", role: "group", "aria-label": "Sample to show" });
    const frame = el("div", { class: "ecg-frame", hidden: true, tabindex: 0, role: "region", "aria-label": "ECG drawing (scrolls sideways on narrow screens)" });
    const canvas = el("canvas", { role: "img", id: "ecg", "aria-label": "ECG" });
    frame.append(canvas);
    const measured = el("dl", { class: "facts measured", hidden: true, "aria-label": "Measurements of the sample shown" });
    section.append(picker, frame, measured);
    let shown = 0;
    const show = (i) => {
      shown = i;
      drawECG(canvas, records[i], card.output.record_key);
      const values = records[i].measurements; // an annotated job's lines carry each sample's measurements
      measured.hidden = !values;
      if (values) {
        const units = (card.measurements && card.measurements.quantities) || {};
        const numbers = Object.entries(values).filter(([, v]) => v === null || typeof v === "number"); // not per-lead lists
        clear(measured, ...numbers.flatMap(([key, value]) => [
          el("dt", {}, measurementName(key)),
          el("dd", {}, value === null ? "not measurable" : `${Number(value).toLocaleString(undefined, { maximumFractionDigits: 1 })} ${(units[key] || {}).unit || ""}`),
        ]));
      }
      for (const b of picker.children) b.setAttribute("aria-pressed", String(Number(b.dataset.index) === i));
    };
    new ResizeObserver(() => records.length && show(shown)).observe(frame);
    firstSamples(job.job_id, count, (record) => {
      records.push(record);
      const i = records.length - 1;
      picker.append(el("button", { type: "button", "data-index": i, onclick: () => show(i) }, `Sample ${record.index}`));
      if (i === 0) {
        frame.hidden = false;
        show(0);
      }
      status.textContent = `${records.length} of ${count} drawn: 25 mm/s, 10 mm/mV.`;
    }, signal).catch((error) => { if (!signal.aborted) status.textContent = `No preview: ${error.message}`; });
  } else if (kind === "image") {
    const grid = el("div", { class: "pairs" });
    section.append(grid);
    let drawn = 0;
    firstSamples(job.job_id, count, (sample) => {
      drawn += 1;
      grid.append(el("figure", { class: "pair" }, [
        el("div", { class: "pair-images" }, [
          el("img", { src: `data:image/png;base64,${sample.image_png}`, alt: `Synthetic image ${sample.index}`, width: sample.width, height: sample.height }),
          sample.mask_png ? el("img", { src: `data:image/png;base64,${sample.mask_png}`, alt: `Mask of image ${sample.index}`, width: sample.width, height: sample.height }) : null,
        ]),
        el("figcaption", {}, `Sample ${sample.index}${sample.mask_png ? ": image and mask" : ""}`),
      ]));
      status.textContent = `${drawn} of ${count} shown.`;
    }, signal).catch((error) => { if (!signal.aborted) status.textContent = `No preview: ${error.message}`; });
  }
  return section;
}

export async function showJob(main, [jobId], signal) {
  const bar = el("progress", { id: "progress", max: 1, value: 0, "aria-labelledby": "progress-label" });
  const label = el("p", { id: "progress-label", "aria-live": "polite" }, "Reading the job…");
  const state = el("p", { class: "state" });
  const actions = el("div", { class: "actions" });
  const previewBox = el("div");
  const recipeBox = el("div");
  const heading = el("h1", {}, `Job ${jobId.slice(0, 8)}`);
  clear(main,
    el("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, [el("a", { href: "#/jobs" }, "My jobs"), ` › ${jobId}`]),
    heading, state,
    el("div", { class: "progress" }, [bar, label]),
    actions, previewBox, recipeBox);
  title(`Job ${jobId.slice(0, 8)}`);
  let card = null;
  let started = false;
  let lastStatus = null;
  const update = (job) => {
    const { done, total } = job.progress;
    bar.max = total;
    bar.value = done;
    const percent = total ? Math.floor((100 * done) / total) : 0;
    label.textContent = `${done} of ${total} samples (${percent} %) · ${job.status}`;
    if (job.status === lastStatus) return;
    lastStatus = job.status;
    state.textContent = `${card ? card.name : job.model.id}, version ${job.model.version} · ${job.format} · seed ${job.seed}`;
    if (!started && job.status !== "failed" && job.status !== "canceled") {
      started = true;
      clear(previewBox, previewView(job, card, signal));
    }
    if (!recipeBox.firstChild) recipeBox.append(recipe(job, card));
    const buttons = [];
    if (job.status === "finished") {
      const link = downloadLink(job);
      buttons.push(link);
      archiveSize(job).then((size) => { link.textContent = `Download the archive (.zip, ${size})`; }).catch((error) => {
        if (!signal.aborted) link.replaceWith(el("p", { class: "error", role: "alert" }, error.message));
      });
    }
    if (job.status === "failed") buttons.push(el("p", { class: "error", role: "alert" }, `The job failed: ${job.error || "no reason given"}`));
    if (job.status === "canceled") buttons.push(el("p", { class: "error" }, "The job was canceled."));
    if (!ENDED.has(job.status)) {
      const cancel = el("button", { type: "button" }, "Cancel the job");
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        try {
          await request(`/jobs/${job.job_id}`, { method: "DELETE" });
        } catch (error) {
          notice(`Cannot cancel: ${error.message}`);
          cancel.disabled = false;
        }
      });
      buttons.push(cancel);
    }
    clear(actions, ...buttons);
  };
  const first = await request(`/jobs/${jobId}`, { signal }).then((r) => r.json());
  card = await cardOf(first.model.id).catch(() => null);
  update(first);
  follow(jobId, update, signal).catch((error) => {
    if (!signal.aborted) notice(`Progress stopped: ${error.message}`);
  });
}
