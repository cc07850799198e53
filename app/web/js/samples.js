// The first samples of a job, read from its NDJSON stream (GET /jobs/{id}/stream) as the workers make them:
// the preview needs neither the finished job nor its archive.

import { request } from "./api.js";

/** Up to `count` samples, calling onSample(sample) as each arrives; stops reading once it has them. */
export async function firstSamples(jobId, count, onSample, signal) {
  const controller = new AbortController();
  signal?.addEventListener("abort", () => controller.abort(), { once: true });
  const response = await request(`/jobs/${jobId}/stream`, { signal: controller.signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let seen = 0;
  try {
    while (seen < count) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while (seen < count && (end = buffer.indexOf("\n")) >= 0) {
        const sample = JSON.parse(buffer.slice(0, end));
        buffer = buffer.slice(end + 1);
        if (sample.error) throw new Error(sample.error);
        seen += 1;
        onSample(sample);
      }
    }
  } finally {
    controller.abort(); // the rest of the stream is not needed
  }
  return seen;
}
