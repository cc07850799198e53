// A form built from a model's own request schema, as the OpenAPI document publishes it: every parameter with its
// limits and default, so a contributed model gets its form with no change here.

import { el } from "./dom.js";
import { measurementName } from "./measurement_names.js";

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

const huge = (v) => v !== undefined && Math.abs(v) > Number.MAX_SAFE_INTEGER;
const words = (name) => name.replace(/_/g, " ");

/**
 * One control for one schema: a select (enum), a checkbox, a number or text input, a group of controls for an
 * object (its properties, or one entry per allowed name of a map such as {"heart_rate": {"min", "max"}}), else a
 * JSON text box. Returns { element, read() }; read() gives the value, or undefined when left empty.
 */
function control(doc, id, name, property, { required = false, start, top = false, caption } = {}) {
  const { schema: unwrapped, nullable } = unwrap(property);
  const s = resolve(doc, unwrapped);
  const title = caption || property.title || (top ? s.title : null) || words(name);
  // nested fields (the min and max of each measurement) say only what is their own: no repeated descriptions
  const description = top ? property.description || s.description || "" : property.description || "";
  const hintId = `${id}-hint`;
  const limits = top || "minimum" in s || "maximum" in s || s.enum ? limitsText(s, nullable) : "";
  const hint = description || limits ? el("p", { class: "hint", id: hintId }, [description, limits ? ` (${limits})` : ""].join("")) : null;
  const described = hint ? hintId : undefined;
  if (s.type === "object" || s.properties || s.additionalProperties) {
    const entries = s.properties
      ? Object.entries(s.properties).map(([key, sub]) => [key, sub, (s.required || []).includes(key)])
      : (s.propertyNames && s.propertyNames.enum || []).map((key) => [key, s.additionalProperties, false]);
    if (entries.length && entries.every(([, sub]) => sub && typeof sub === "object")) {
      const unit = (key) => { // "heart_rate (bpm)" in the group's description names an entry's unit
        const match = new RegExp(`\\b${key} \\(([^)]+)\\)`).exec(description);
        return match ? `${measurementName(key)} (${match[1]})` : undefined;
      };
      const children = entries.map(([key, sub, needed]) => [key, control(doc, `${id}-${key}`, key, sub,
        { required: needed, start: start && start[key], caption: unit(key) })]);
      const group = el("fieldset", { class: "group", id, "aria-describedby": described }, [
        el("legend", {}, title), hint, ...children.map(([, c]) => c.element)]);
      const read = () => {
        const value = {};
        for (const [key, child] of children) {
          const v = child.read();
          if (v !== undefined) value[key] = v;
        }
        return Object.keys(value).length ? value : undefined;
      };
      // a long group (a filter on every measurement) starts folded on the main form
      const element = top && entries.length > 3
        ? el("details", { class: "field" }, [el("summary", {}, `${title} (${entries.length} ${s.properties ? "fields" : "entries"}, all optional)`), group])
        : group;
      return { element, read };
    }
    const box = el("textarea", { id, name, rows: 3, "aria-describedby": described, placeholder: "JSON" },
      start === undefined || start === null ? "" : JSON.stringify(start));
    const read = () => {
      const text = box.value.trim();
      if (!text) return undefined;
      try {
        box.setCustomValidity("");
        return JSON.parse(text);
      } catch {
        box.setCustomValidity(`${title}: not JSON`);
        box.reportValidity();
        throw new Error(`${title} is not JSON`);
      }
    };
    return { element: el("div", { class: "field" }, [el("label", { for: id }, title), box, hint]), read };
  }
  let input;
  let read;
  if (s.enum) {
    input = el("select", { id, name, "aria-describedby": described },
      [nullable || !top ? el("option", { value: "" }, "(none)") : null,
        ...s.enum.map((v) => el("option", { value: JSON.stringify(v), selected: v === start }, String(v)))]);
    read = () => (input.value === "" ? undefined : JSON.parse(input.value));
  } else if (s.type === "boolean") {
    input = el("input", { id, name, type: "checkbox", checked: Boolean(start), "aria-describedby": described });
    read = () => input.checked;
  } else if (s.type === "integer" || s.type === "number") {
    input = el("input", {
      id, name, type: "number", inputmode: s.type === "integer" ? "numeric" : "decimal",
      step: s.type === "integer" ? "1" : "any",
      min: huge(s.minimum) ? undefined : s.minimum, max: huge(s.maximum) ? undefined : s.maximum,
      value: start ?? "", required: !nullable && required, placeholder: nullable ? "optional" : undefined,
      "aria-describedby": described,
    });
    read = () => {
      if (input.value.trim() === "") return undefined;
      return s.type === "integer" && /^\d+$/.test(input.value.trim()) && huge(Number(input.value))
        ? input.value.trim() : Number(input.value); // a seed past 2^53 is sent as written (see bodyText)
    };
  } else {
    input = el("input", { id, name, type: "text", value: start ?? "", required, "aria-describedby": described });
    read = () => (input.value === "" ? undefined : input.value);
  }
  const label = el("label", { for: id }, top ? title : words(name));
  return { element: el("div", { class: `field field-${s.type || "choice"}` }, [label, input, hint]), read };
}

/**
 * Fields for every property a caller chooses (not `model`/`version`, which the card's version picker sets).
 * Returns { element, read() } where read() gives the request body.
 */
export function buildForm(doc, schema, initial = {}) {
  const fields = [];
  const required = new Set(schema.required || []);
  const wrapper = el("div", { class: "fields" });
  for (const [name, property] of Object.entries(schema.properties)) {
    if (name === "model" || name === "version") {
      const value = pinned(property);
      if (required.has(name) && value !== null) fields.push({ name, read: () => value });
      continue;
    }
    const start = name in initial ? initial[name] : unwrap(property).schema.default;
    const field = control(doc, `field-${name}`, name, property, { required: required.has(name), start, top: true });
    fields.push({ name, read: field.read });
    wrapper.append(field.element);
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
