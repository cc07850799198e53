// Building elements without innerHTML: text from the service is always text, never markup.

export function el(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of [].concat(children)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function clear(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function notice(text, kind = "error") {
  const box = document.getElementById("notice");
  box.className = kind;
  box.hidden = !text;
  box.textContent = text || "";
}

export function title(text) {
  document.title = text ? `${text} · DeepSynthBody` : "DeepSynthBody";
}
