// `#/jobs`: the caller's jobs (GET /jobs), newest first, a page at a time.

import { getJSON } from "./api.js";
import { clear, el, title } from "./dom.js";

const PAGE = 20;

function when(text) {
  return text ? new Date(text).toLocaleString() : "";
}

function row(job) {
  const { done, total } = job.progress;
  return el("tr", {}, [
    el("td", {}, el("a", { href: `#/jobs/${job.job_id}` }, job.job_id.slice(0, 8))),
    el("td", {}, `${job.model.id} v${job.model.version}`),
    el("td", { class: "num" }, String(total)),
    el("td", {}, job.format),
    el("td", {}, [job.status, " ", el("progress", { max: total, value: done, "aria-label": `${done} of ${total}` })]),
    el("td", {}, when(job.created_at)),
  ]);
}

export async function showJobs(main) {
  title("My jobs");
  const body = el("tbody");
  const more = el("button", { type: "button", hidden: true }, "Older jobs");
  let cursor = null;
  const load = async () => {
    more.disabled = true;
    const page = await getJSON(`/jobs?limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    body.append(...page.jobs.map(row));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    more.disabled = false;
    return page;
  };
  more.addEventListener("click", load);
  const first = await load();
  clear(main,
    el("h1", {}, "My jobs"),
    first.jobs.length
      ? el("div", { class: "table-scroll" }, el("table", { class: "jobs" }, [
        el("caption", {}, "Newest first; a job stays listed until it expires."),
        el("thead", {}, el("tr", {}, ["Job", "Model", "Samples", "Format", "Status", "Created"].map((h) => el("th", { scope: "col" }, h)))),
        body,
      ]))
      : el("p", {}, ["No jobs yet. ", el("a", { href: "#/" }, "Pick a model"), " to make some."]),
    more);
}
