// Make ECGs with the DeepSynthBody service and read them into an Int16Array, with Node's built-in fetch.
//
//   DSB_URL=http://127.0.0.1:8000 [DSB_API_KEY=...] node examples/js/ecg_typed_array.mjs [NUM_SAMPLES]
//
// Submits a request, follows its progress over Server-Sent Events read from a streaming fetch (what a browser
// does too when the service wants an API key: EventSource cannot send one), downloads the archive and reads its
// `ecgs.npy` (int16, N x 5000 x leads, microvolts) into an Int16Array. Node 18 or later; no packages.
import { inflateRawSync } from "node:zlib";

const url = process.env.DSB_URL ?? "http://127.0.0.1:8000";
const headers = process.env.DSB_API_KEY ? { Authorization: `Bearer ${process.env.DSB_API_KEY}` } : {};
const count = Number(process.argv[2] ?? 20);

async function call(path, options = {}) {
  const response = await fetch(url + path, { ...options, headers: { ...headers, ...options.headers } });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}: ${await response.text()}`);
  return response;
}

// Each Server-Sent Event as { event, data }: an "event:" line, a "data:" JSON line, then a blank line
async function* serverSentEvents(response) {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const message = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", data = "";
      for (const line of message.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) yield { event, data: JSON.parse(data) };
    }
  }
}

// One member of a zip archive (stored or deflated; archives under 4 GB)
function zipMember(zip, name) {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  let eocd = zip.length - 22;
  while (view.getUint32(eocd, true) !== 0x06054b50) eocd--;
  let entry = view.getUint32(eocd + 16, true);
  for (let i = 0; i < view.getUint16(eocd + 10, true); i++) {
    const nameLength = view.getUint16(entry + 28, true);
    const entryName = zip.subarray(entry + 46, entry + 46 + nameLength).toString();
    if (entryName === name) {
      const method = view.getUint16(entry + 10, true), size = view.getUint32(entry + 20, true);
      const local = view.getUint32(entry + 42, true);
      const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
      const data = zip.subarray(start, start + size);
      return method === 0 ? data : inflateRawSync(data);
    }
    entry += 46 + nameLength + view.getUint16(entry + 30, true) + view.getUint16(entry + 32, true);
  }
  throw new Error(`no ${name} in the archive`);
}

// A .npy file's int16 array: its shape from the header, its values as an Int16Array (little-endian)
function readNpy(bytes) {
  const headerLength = bytes.readUInt16LE(8);
  const header = bytes.subarray(10, 10 + headerLength).toString("latin1");
  if (!header.includes("'<i2'")) throw new Error(`not an int16 array: ${header}`);
  const shape = header.match(/\(([^)]*)\)/)[1].split(",").filter((s) => s.trim()).map(Number);
  const values = bytes.subarray(10 + headerLength);
  const copy = new Uint8Array(values); // aligned for the Int16Array
  return { shape, data: new Int16Array(copy.buffer, 0, copy.length / 2) };
}

const submitted = await call("/generate/cardiovascular/ecg", {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ num_samples: count, seed: 7, format: "npy" }),
});
let job = await submitted.json();
console.error(`job ${job.job_id} queued`);

for await (const { event, data } of serverSentEvents(await call(`/jobs/${job.job_id}/events`))) {
  console.error(`${event}: ${data.status} ${data.progress.done}/${data.progress.total}`);
  if (event === "end") job = data;
}
if (job.status !== "finished") throw new Error(`job ${job.job_id} ${job.status}: ${job.error}`);

const archive = Buffer.from(await (await call(job.links.result)).arrayBuffer());
const { shape, data } = readNpy(zipMember(archive, "ecgs.npy"));
const [n, length, leads] = shape;
const firstEcg = data.subarray(0, length * leads); // ECG 0: row t holds its leads at t / 500 s
console.error(`${n} ECGs of ${length} samples x ${leads} leads in an Int16Array of ${data.length} values`);
console.log(JSON.stringify({ job_id: job.job_id, shape, dtype: "int16", first_row: Array.from(firstEcg.subarray(0, leads)) }));
