// A form built from a model's own request schema, as the OpenAPI document publishes it: every parameter with its
// limits and default, so a contributed model gets its form with no change here.

import { el } from "./dom.js";

let documentPromise = null;

/** The OpenAPI document, fetched once per page load. */
export function openapi(getJSON) {
  documentPromise ||= getJSON("/openapi.json").catch((error) => {
    documentPromise = null;
    throw error;
  });
  return documentPromise;
}

function resolve(doc, schema) {
  while (schema && schema.$ref) schema = doc.components.schemas[schema.$ref.split("/").pop()];
  return schema;
}

/** The value a const-or-null property pins (model id or version), or null. */
function pinned(property) {
  if (!property) return null;
  if ("const" in property) return property.const;
  for (const option of property.anyOf || []) if ("const" in option) return option.const;
  return null;
}

/** The request schema of one model version, from the generate operation of its subcategory. */
export function requestSchema(doc, path, modelId, version) {
  const operation = doc.paths[path] && doc.paths[path].post;
  if (!operation) return null;
  const top = resolve(doc, operation.requestBody.content["application/json"].schema);
  const options = (top.anyOf || [top]).map((s) => resolve(doc, s));
  return options.find((s) => {
    const model = pinned(s.properties.model);
    return (model === null || model === modelId) && pinned(s.properties.version) === version;
  }) || null;
}

/** A property's own schema without the `null` alternative, and whether null (leave empty) is allowed. */
function unwrap(property) {
  const options = property.anyOf || [];
  const real = options.filter((o) => o.type !== "null");
  if (options.length && real.length === 1) {
    return { schema: { ...property, ...real[0], anyOf: undefined }, nullable: options.length > real.length };
  }
  return { schema: property, nullable: false };
}

function limitsText(schema, nullable) {
  const parts = [];
  if (schema.enum) parts.push(`one of ${schema.enum.join(", ")}`);
  else if ("minimum" in schema && "maximum" in schema && schema.maximum < 1e15) {
    if (!(schema.description || "").includes(`${schema.minimum} to ${schema.maximum}`)) parts.push(`${schema.minimum} to ${schema.maximum}`);
  }
  else if ("minimum" in schema) parts.push(`at least ${schema.minimum}`);
  else if ("maximum" in schema) parts.push(`at most ${schema.maximum}`);
  if (schema.default !== undefined && schema.default !== null) parts.push(`default ${schema.default}`);
  else if (nullable) parts.push("optional");
  return parts.join("; ");
}

/**
 * Fields for every property a caller chooses (not `model`/`version`, which the card's version picker sets).
 * Returns { element, read() } where read() gives the request body, or null when the browser finds a field invalid.
 */
export function buildForm(schema, initial = {}) {
  const fields = [];
  const required = new Set(schema.required || []);
  const wrapper = el("div", { class: "fields" });
  for (const [name, property] of Object.entries(schema.properties)) {
    if (name === "model" || name === "version") {
      const value = pinned(property);
      if (required.has(name) && value !== null) fields.push({ name, read: () => value });
      continue;
    }
    const { schema: s, nullable } = unwrap(property);
    const id = `field-${name}`;
    const hintId = `${id}-hint`;
    const label = el("label", { for: id }, s.title || property.title || name);
    const limits = limitsText(s, nullable);
    const hint = el("p", { class: "hint", id: hintId }, [s.description || property.description || "", limits ? ` (${limits})` : ""].join(""));
    const start = name in initial ? initial[name] : s.default;
    let input;
    let read;
    if (s.enum) {
      input = el("select", { id, name, "aria-describedby": hintId },
        s.enum.map((v) => el("option", { value: JSON.stringify(v), selected: v === start }, String(v))));
      read = () => JSON.parse(input.value);
    } else if (s.type === "boolean") {
      input = el("input", { id, name, type: "checkbox", checked: Boolean(start), "aria-describedby": hintId });
      read = () => input.checked;
    } else if (s.type === "integer" || s.type === "number") {
      const huge = (v) => v !== undefined && Math.abs(v) > Number.MAX_SAFE_INTEGER;
      input = el("input", {
        id, name, type: "number", inputmode: s.type === "integer" ? "numeric" : "decimal",
        step: s.type === "integer" ? "1" : "any",
        min: huge(s.minimum) ? undefined : s.minimum, max: huge(s.maximum) ? undefined : s.maximum,
        value: start ?? "", required: !nullable && required.has(name),
        placeholder: nullable ? "empty: the service picks" : undefined, "aria-describedby": hintId,
      });
      read = () => {
        if (input.value.trim() === "") return undefined;
        return s.type === "integer" && /^\d+$/.test(input.value.trim()) && huge(Number(input.value))
          ? input.value.trim() : Number(input.value); // a seed past 2^53 is sent as written (see raw numbers below)
      };
    } else {
      input = el("input", { id, name, type: "text", value: start ?? "", required: required.has(name), "aria-describedby": hintId });
      read = () => (input.value === "" ? undefined : input.value);
    }
    fields.push({ name, read });
    wrapper.append(el("div", { class: `field field-${s.type || "choice"}` }, [label, input, hint]));
  }
  return {
    element: wrapper,
    read() {
      const body = {};
      for (const field of fields) {
        const value = field.read();
        if (value !== undefined) body[field.name] = value;
      }
      return body;
    },
  };
}

/** JSON text of a body; integers too large for a JavaScript number (a seed) were kept as digit strings: sent bare. */
export function bodyText(body, indent) {
  return JSON.stringify(body, null, indent).replace(/"(\d{16,})"/g, "$1");
}
