// `#/`: the 11 body systems, their subcategories and models.

import { catalog, firstSentence, label } from "./catalog.js";
import { clear, el, title } from "./dom.js";

export async function showCatalog(main) {
  const data = await catalog();
  title("");
  const count = data.body_systems.reduce((n, s) => n + s.subcategories.reduce((m, sub) => m + sub.models.length, 0), 0);
  const withModels = data.body_systems.filter((s) => s.subcategories.some((sub) => sub.models.length));
  const waiting = data.body_systems.filter((s) => !withModels.includes(s));
  clear(main,
    el("h1", {}, "Synthetic medical data, by body system"),
    el("p", { class: "lead" }, `Pick a model, say how many samples you want and download them as an archive, with the `
      + `recipe that makes the same data again. ${count} model${count === 1 ? "" : "s"} installed; nothing here is a real patient.`),
    el("ul", { class: "systems" }, withModels.map((system) => el("li", { class: "system" }, [
      el("h2", { id: `system-${system.name}` }, label(system.name)),
      el("ul", { class: "models", "aria-labelledby": `system-${system.name}` }, system.subcategories.flatMap((sub) => sub.models.map((m) =>
        el("li", {}, el("a", { class: "model-link", href: `#/models/${m.category}/${m.subcategory}/${m.id}` }, [
          el("span", { class: "sub" }, sub.name),
          el("strong", {}, m.name),
          el("span", { class: "summary" }, firstSentence(m.description)),
          el("span", { class: "meta" }, `${m.output.kind} · ${m.formats.join(", ")} · version ${m.version}`),
        ]))))),
    ]))),
    waiting.length ? el("h2", { id: "waiting" }, "Body systems still waiting for a model") : null,
    waiting.length ? el("ul", { class: "waiting", "aria-labelledby": "waiting" }, waiting.map((s) => el("li", {}, label(s.name)))) : null,
    el("p", { class: "hint" }, ["Researchers contribute models to this repository: see the README's ",
      el("em", {}, "Contributing a model"), "."]));
}
