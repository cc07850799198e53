// A measurement's name as cardiologists write it, from its key: "qtc_bazett" is "QTc Bazett", "rr_sd" "RR SD".

const SPELLED = { rr: "RR", pr: "PR", qrs: "QRS", qt: "QT", qtc: "QTc", sd: "SD", bazett: "Bazett", fridericia: "Fridericia" };

export function measurementName(key) {
  const text = key.replace(/_/g, " ").replace(/\b[a-z]+\b/g, (word) => SPELLED[word] || word);
  return text.charAt(0).toUpperCase() + text.slice(1);
}
