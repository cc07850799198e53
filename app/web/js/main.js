// The web app: a hash router over four views. Everything it loads comes from this service.

import { askForKey, setKey, storedKey } from "./api.js";
import { showCatalog } from "./catalog_view.js";
import { clear, el, notice } from "./dom.js";
import { showJob } from "./job_view.js";
import { showJobs } from "./jobs_view.js";
import { showModel } from "./model_view.js";

const routes = [
  [/^#?\/?$/, showCatalog],
  [/^#\/models\/([^/]+)\/([^/]+)\/([^/]+)$/, showModel],
  [/^#\/jobs\/([0-9A-Za-z_-]+)$/, showJob],
  [/^#\/jobs$/, showJobs],
];

let current = null; // aborts the work (streams) of the view being left

async function route() {
  current?.abort();
  current = new AbortController();
  const { signal } = current;
  const main = document.getElementById("main");
  notice("");
  const hash = location.hash || "#/";
  const match = routes.map(([pattern, view]) => [pattern.exec(hash), view]).find(([m]) => m);
  if (!match) {
    clear(main, el("h1", {}, "Not found"), el("p", {}, ["Nothing here. ", el("a", { href: "#/" }, "See the models.")]));
    return;
  }
  const [found, view] = match;
  main.setAttribute("aria-busy", "true");
  try {
    await view(main, found.slice(1).map(decodeURIComponent), signal);
  } catch (error) {
    if (signal.aborted || error.name === "AbortError") return;
    clear(main, el("h1", {}, "Something went wrong"), el("p", { class: "error", role: "alert" }, error.message),
      el("p", {}, el("a", { href: "#/" }, "Back to the models")));
  } finally {
    main.removeAttribute("aria-busy");
  }
  if (!signal.aborted && document.activeElement === document.body) main.focus({ preventScroll: true });
}

document.getElementById("key-button").hidden = !storedKey();
document.getElementById("key-button").addEventListener("click", async () => {
  if (await askForKey("API key")) route();
});
window.addEventListener("hashchange", route);
window.addEventListener("storage", (event) => { if (event.key?.includes("apiKey")) setKey(storedKey()); });
route();
