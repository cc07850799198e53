// An ECG drawn as on paper: 25 mm/s, 10 mm/mV, a 1 mm / 5 mm grid; leads in columns of 2.5 s each (for 12 leads
// the usual I-III, aVR-aVF, V1-V3, V4-V6 layout), and a 10 s rhythm strip of lead II underneath.

const MM_PER_S = 25;
const MM_PER_MV = 10;
const ROW_MM = 30; // +-1.5 mV per row
const COLUMNS = 4;
const MIN_CSS_WIDTH = 720; // narrower, 10 s of ECG is unreadable: the frame scrolls sideways instead

/** Lead names in columns of `rows`, read down each column. */
export function layout(names) {
  const columns = Math.min(COLUMNS, names.length);
  const rows = Math.ceil(names.length / columns);
  const cells = names.map((name, i) => ({ name, column: Math.floor(i / rows), row: i % rows }));
  return { columns, rows, cells };
}

function toMillivolts(unit) {
  return { uV: 1e-3, mV: 1, V: 1e3 }[unit] ?? 1e-3;
}

/** Draws `record` (a line of the NDJSON stream: sampling_rate, unit and a name -> values object) on `canvas`. */
export function drawECG(canvas, record, recordKey = "leads") {
  const leads = record[recordKey];
  const names = Object.keys(leads);
  const rate = record.sampling_rate;
  const length = leads[names[0]].length;
  const seconds = length / rate;
  const { columns, rows, cells } = layout(names);
  const rhythm = names.includes("II") ? "II" : names[0];
  const widthMm = seconds * MM_PER_S;
  const heightMm = (rows + 1) * ROW_MM;
  const cssWidth = Math.max(MIN_CSS_WIDTH, canvas.parentElement.clientWidth || 800);
  const ratio = window.devicePixelRatio || 1;
  const px = (cssWidth * ratio) / widthMm; // device pixels per mm
  canvas.width = Math.round(widthMm * px);
  canvas.height = Math.round(heightMm * px);
  canvas.style.width = `${cssWidth}px`;
  canvas.style.height = `${(heightMm * px) / ratio}px`;
  const g = canvas.getContext("2d");
  g.fillStyle = "#fffafa";
  g.fillRect(0, 0, canvas.width, canvas.height);
  for (let mm = 0; mm <= Math.max(widthMm, heightMm); mm += 1) {
    const major = mm % 5 === 0;
    if (px < 3 && !major) continue; // 1 mm lines would be a pink blur on a narrow screen
    g.strokeStyle = major ? "#f0a8a8" : "#fbdcdc";
    g.lineWidth = major ? Math.max(1, ratio * 0.8) : Math.max(0.5, ratio * 0.4);
    g.beginPath();
    if (mm <= widthMm) { g.moveTo(mm * px, 0); g.lineTo(mm * px, canvas.height); }
    if (mm <= heightMm) { g.moveTo(0, mm * px); g.lineTo(canvas.width, mm * px); }
    g.stroke();
  }
  const scale = toMillivolts(record.unit) * MM_PER_MV * px;
  const trace = (values, from, to, x0, yMid) => {
    g.beginPath();
    const step = Math.max(1, Math.floor((to - from) / (canvas.width / columns) / 2)); // about 2 points per pixel
    for (let i = from; i < to; i += step) {
      const x = x0 + ((i - from) / rate) * MM_PER_S * px;
      const y = yMid - values[i] * scale;
      if (i === from) g.moveTo(x, y); else g.lineTo(x, y);
    }
    g.stroke();
  };
  const segment = Math.floor(length / columns);
  g.strokeStyle = "#111";
  g.lineWidth = Math.max(1, ratio * 1.1);
  g.lineJoin = "round";
  g.font = `${Math.round(Math.max(3.2 * px, 12 * ratio))}px system-ui, sans-serif`;
  g.fillStyle = "#111";
  const rowTop = (row) => row * ROW_MM * px;
  for (const { name, column, row } of cells) {
    const yMid = rowTop(row) + (ROW_MM / 2) * px;
    g.save();
    g.beginPath();
    g.rect(column * segment / rate * MM_PER_S * px, rowTop(row), segment / rate * MM_PER_S * px, ROW_MM * px);
    g.clip();
    trace(leads[name], column * segment, (column + 1) * segment, column * (segment / rate) * MM_PER_S * px, yMid);
    g.restore();
    g.fillText(name, column * (segment / rate) * MM_PER_S * px + 1.5 * px, rowTop(row) + 4.5 * px);
  }
  const yRhythm = rowTop(rows) + (ROW_MM / 2) * px;
  g.save();
  g.beginPath();
  g.rect(0, rowTop(rows), canvas.width, ROW_MM * px);
  g.clip();
  trace(leads[rhythm], 0, length, 0, yRhythm);
  g.restore();
  g.fillText(`${rhythm} (rhythm)`, 1.5 * px, rowTop(rows) + 4.5 * px);
  g.strokeStyle = "#555";
  g.lineWidth = Math.max(1, ratio);
  for (let c = 1; c < columns; c++) { // lead boundaries
    const x = c * (segment / rate) * MM_PER_S * px;
    g.beginPath(); g.moveTo(x, 0); g.lineTo(x, rowTop(rows)); g.stroke();
  }
  canvas.setAttribute("aria-label", `${names.length}-lead ECG, ${seconds} s at ${rate} Hz: leads ${names.join(", ")}; `
    + `drawn at 25 mm/s and 10 mm/mV with a ${seconds} s rhythm strip of lead ${rhythm}`);
}
