// Small DOM helpers shared by the panels: errors beside their control, busy buttons,
// downloads, element building.

export const $ = (selector, root = document) => root.querySelector(selector);

/** Show `error`'s message (the API's own) in `el`, or hide `el` when `error` is null. */
export function showError(el, error) {
  el.textContent = error ? error.message : "";
  el.dataset.code = error && error.code ? error.code : "";
  el.hidden = !error;
}

/**
 * Run `action` with `button` disabled; an error lands in `errorEl` (beside the control).
 * Returns whether it succeeded.
 */
export async function guarded(button, errorEl, action) {
  showError(errorEl, null);
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    await action();
    return true;
  } catch (err) {
    showError(errorEl, err);
    if (err.status === 401) document.dispatchEvent(new CustomEvent("studio:unauthorized"));
    return false;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

/** An element with attributes (`text` sets textContent, `class` the class list). */
export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

/** Save a Blob (or a data/blob URL) under `filename`. */
export function download(data, filename) {
  const url = data instanceof Blob ? URL.createObjectURL(data) : data;
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  if (data instanceof Blob) setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A colour swatch for a class. */
export function swatch(color) {
  const node = el("span", { class: "swatch", "aria-hidden": "true" });
  node.style.background = color;
  return node;
}

/** Seconds as "12 s", "3 min 5 s" or "1 h 2 min". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Replace `<select>` options with [value, label] pairs, keeping the choice when possible. */
export function setOptions(select, options, selected) {
  const keep = selected ?? select.value;
  select.replaceChildren(...options.map(([value, label]) => el("option", { value, text: label })));
  if (options.some(([value]) => value === keep)) select.value = keep;
}
