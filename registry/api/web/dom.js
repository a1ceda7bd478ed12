// Tiny DOM helpers: build elements without innerHTML, so data from the API is never parsed as markup.
const SVG_NS = "http://www.w3.org/2000/svg";

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  return fill(element, attrs, children);
}

export function s(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  return fill(element, attrs, children);
}

function fill(element, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "text") element.textContent = value;
    else if (key === "style") element.style.cssText = String(value);  // CSSOM: allowed by a CSP without inline styles
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function fmt(value, digits = 1) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString("en") :
    value.toLocaleString("en", { maximumFractionDigits: digits });
  return String(value);
}

export function when(value) {
  if (!value) return "–";
  const date = new Date(value);
  return date.toLocaleString("en-GB", { dateStyle: "short", timeStyle: "medium" });
}
