// Following a job: GET /jobs/{id}/events (Server-Sent Events) read with fetch() and a stream reader, so the API key
// goes along as a header (EventSource cannot send one). A dropped stream is reopened; while it cannot be, the page
// long-polls GET /jobs/{id}?wait=.

import { getJSON, request } from "./api.js";

const ENDED = new Set(["finished", "failed", "canceled"]);

/** Splits a text/event-stream into {event, data} messages (data parsed as JSON). */
export async function* serverSentEvents(response, signal) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  signal?.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue; // a comment: the server keeping the connection busy
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = text;
          else if (field === "data") data.push(text);
        }
        if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
      }
    }
  } finally {
    reader.releaseLock?.();
  }
}

/**
 * Calls onJob(job) with the whole job whenever it changes, until it has ended or `signal` aborts.
 * Returns the last job seen.
 */
export async function follow(jobId, onJob, signal) {
  let job = await getJSON(`/jobs/${jobId}`, { signal });
  onJob(job);
  let failures = 0;
  while (!ENDED.has(job.status) && !signal?.aborted) {
    try {
      const response = await request(`/jobs/${jobId}/events`, { signal, headers: { Accept: "text/event-stream" } });
      for await (const { event, data } of serverSentEvents(response, signal)) {
        failures = 0;
        if (event === "state" || event === "end") job = data;
        else if (event === "progress") job = { ...job, status: data.status, progress: data.progress };
        else if (event === "error") throw new Error(data.message);
        onJob(job);
        if (event === "end") return job;
      }
    } catch (error) {
      if (signal?.aborted || error.name === "AbortError") return job;
      if (error.status && error.status !== 503) throw error; // 404: the job is gone; 401: no key
      failures += 1;
    }
    if (ENDED.has(job.status) || signal?.aborted) break;
    // the stream ended or failed before the job did: a long poll catches up, then the stream is opened again
    try {
      job = await getJSON(`/jobs/${jobId}?wait=${failures > 2 ? 10 : 1}`, { signal });
      onJob(job);
    } catch (error) {
      if (signal?.aborted || error.name === "AbortError") return job;
      if (error.status && error.status !== 503) throw error;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  return job;
}

export { ENDED };
