// The catalog (GET /models), fetched once per page load, and lookups in it.

import { getJSON } from "./api.js";

let catalogPromise = null;

export function catalog() {
  catalogPromise ||= getJSON("/models").catch((error) => {
    catalogPromise = null;
    throw error;
  });
  return catalogPromise;
}

export function allCards(data) {
  return data.body_systems.flatMap((s) => s.subcategories.flatMap((sub) => sub.models));
}

/** The card of a model id (latest version's card; it lists every version). */
export async function cardOf(modelId) {
  return allCards(await catalog()).find((c) => c.id === modelId) || null;
}

export const label = (name) => name.charAt(0).toUpperCase() + name.slice(1).replace(/-/g, " ");

export function firstSentence(text) {
  const match = /^(.+?[.!?])(\s|$)/.exec(text);
  return match ? match[1] : text;
}
