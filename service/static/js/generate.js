// Generate: variants beside the mask, overlay toggle, full-resolution viewer, seeds,
// downloads (one PNG, or all as the API's ZIP), relabel and rerun with the same seeds.

import { api } from "./api.js";
import { copyMask, overlayImage, relabel, toColorPng } from "./masks.js";
import { $, download, el, guarded, setOptions, showError } from "./ui.js";

/** One generation: the mask it used, its parameters and the images the API returned. */
class Run {
  constructor(mask, params, response) {
    this.mask = mask;
    this.params = params; // {model, n, noise}
    this.seed = response.seed;
    this.images = response.images.map((img, i) => ({
      seed: img.seed,
      index: i,
      url: `data:image/png;base64,${img.png_base64}`,
    }));
    this.overlays = new Map(); // mode -> OffscreenCanvas
  }

  overlay(mode, palette) {
    if (!this.overlays.has(mode)) {
      const thickness = Math.max(2, Math.round(this.mask.width / 256));
      const image = overlayImage(this.mask, palette, mode, thickness);
      const canvas = new OffscreenCanvas(image.width, image.height);
      canvas.getContext("2d").putImageData(image, 0, 0);
      this.overlays.set(mode, canvas);
    }
    return this.overlays.get(mode);
  }

  filename(image) {
    return `histosynth-${this.params.model}-${image.seed}.png`;
  }
}

async function postGenerate(mask, palette, params, seed, format) {
  const blob = await toColorPng(mask, palette);
  return api.postForm("/generate", {
    mask: blob, n: params.n, noise: params.noise, model: params.model, seed,
    encoding: "color", format,
  }, { mask: "mask.png" });
}

export class GeneratePanel {
  constructor(studio) {
    this.studio = studio;
    this.run = null; // the latest generation
    this.cards = []; // {run, image, overlay canvas}
    this.viewer = new Viewer(this);
    $("#generate-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.generate();
    });
    $("#overlay").addEventListener("change", () => this.drawOverlays());
    $("#download-zip").addEventListener("click", () => this.downloadZip());
    $("#relabel-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.rerunRelabelled();
    });
  }

  onModel(detail, limits) {
    const n = $("#gen-n");
    n.max = String(limits.max_variants);
    if (Number(n.value) > limits.max_variants) n.value = String(limits.max_variants);
    const names = detail.classes.map((c) => [String(c.index), c.name]);
    setOptions($("#relabel-from"), names, names.length > 2 ? names[names.length - 2][0] : "0");
    setOptions($("#relabel-to"), names, names[names.length - 1][0]);
  }

  params() {
    return {
      model: this.studio.model,
      n: Number($("#gen-n").value),
      noise: Number($("#gen-noise").value),
    };
  }

  seed() {
    const fixed = document.querySelector("input[name=seed-mode]:checked").value === "fixed";
    return fixed ? $("#gen-seed").value : undefined;
  }

  async generate() {
    const button = $("#generate");
    const status = $("#generate-status");
    status.textContent = "generating...";
    const ok = await guarded(button, $("#generate-error"), async () => {
      const mask = this.studio.editor.snapshot();
      const params = this.params();
      const started = performance.now();
      const response = await postGenerate(mask, this.studio.palette, params, this.seed(), "json");
      this.run = new Run(mask, params, await response.json());
      $("#gen-seed").value = String(this.run.seed);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      status.textContent = `${this.run.images.length} variant(s) of ${mask.width}x${mask.height}, base seed ${this.run.seed}, ${seconds} s`;
      this.showRun();
    });
    if (!ok) status.textContent = "";
  }

  showRun() {
    $("#download-zip").disabled = false;
    showError($("#zip-error"), null);
    this.cards = [];
    $("#before-after").replaceChildren();
    $("#variants").replaceChildren(...this.run.images.map((img) => this.card(this.run, img, "variant")));
    this.drawOverlays();
  }

  /** A figure with the image, its overlay canvas, the seed and buttons. */
  card(run, image, kind) {
    const picture = el("img", {
      class: kind, src: image.url, alt: `${kind} ${image.index + 1}, seed ${image.seed}`,
      "data-seed": image.seed,
    });
    const overlay = el("canvas", { class: "overlay", width: run.mask.width, height: run.mask.height, "aria-hidden": "true" });
    const view = el("button", { type: "button", class: "stack", "aria-label": `View ${kind} ${image.index + 1} (seed ${image.seed}) at full resolution` }, [picture, overlay]);
    view.addEventListener("click", () => this.viewer.open(run, image, kind));
    const save = el("button", { type: "button", class: "small", text: "PNG", "aria-label": `Download ${kind} ${image.index + 1} as PNG` });
    save.addEventListener("click", () => download(image.url, run.filename(image)));
    const caption = el("figcaption", {}, [el("span", { class: "seed", text: `seed ${image.seed}` }), save]);
    this.cards.push({ run, overlay, kind });
    return el("figure", { class: "card" }, [view, caption]);
  }

  overlayMode() {
    return $("#overlay").value;
  }

  drawOverlays() {
    const mode = this.overlayMode();
    for (const { run, overlay } of this.cards) {
      const ctx = overlay.getContext("2d");
      ctx.clearRect(0, 0, overlay.width, overlay.height);
      overlay.hidden = mode === "none";
      if (mode !== "none") ctx.drawImage(run.overlay(mode, this.studio.palette), 0, 0);
    }
    this.viewer.drawOverlay();
  }

  async downloadZip() {
    const run = this.run;
    await guarded($("#download-zip"), $("#zip-error"), async () => {
      const response = await postGenerate(run.mask, this.studio.palette, run.params, run.seed, "zip");
      download(await response.blob(), `histosynth-${run.params.model}-${run.seed}.zip`);
    });
  }

  async rerunRelabelled() {
    await guarded($("#relabel"), $("#relabel-error"), async () => {
      const before = this.run;
      if (!before) throw new Error("generate first: the rerun reuses that generation's seeds");
      const from = Number($("#relabel-from").value);
      const to = Number($("#relabel-to").value);
      if (from === to) throw new Error("choose two different classes");
      if (!before.mask.data.includes(from)) {
        const name = this.studio.classes[from].name;
        throw new Error(`the mask has no ${name} pixels to relabel`);
      }
      const mask = relabel(copyMask(before.mask), from, to);
      const response = await postGenerate(mask, this.studio.palette, before.params, before.seed, "json");
      const after = new Run(mask, before.params, await response.json());
      this.showBeforeAfter(before, after, from, to);
    });
  }

  showBeforeAfter(before, after, from, to) {
    const names = this.studio.classes;
    this.cards = this.cards.filter((c) => c.kind === "variant");
    const rows = before.images.map((img, i) => el("div", { class: "pair" }, [
      this.card(before, img, "before"),
      this.card(after, after.images[i], "after"),
    ]));
    const head = el("div", { class: "pair pair-head" }, [
      el("h4", { text: "Before: as drawn" }),
      el("h4", { text: `After: ${names[from].name} turned into ${names[to].name}` }),
    ]);
    $("#before-after").replaceChildren(head, ...rows);
    this.drawOverlays();
  }
}

/** The full-resolution viewer (a modal dialog; Escape closes it). */
class Viewer {
  constructor(panel) {
    this.panel = panel;
    this.dialog = $("#viewer");
    this.current = null;
    this.zoom = "fit";
    for (const button of this.dialog.querySelectorAll("[data-zoom]")) {
      button.addEventListener("click", () => this.setZoom(button.dataset.zoom));
    }
    $("#viewer-close").addEventListener("click", () => this.dialog.close());
    $("#viewer-download").addEventListener("click", () => {
      const { run, image } = this.current;
      download(image.url, run.filename(image));
    });
  }

  open(run, image, kind) {
    this.current = { run, image };
    const title = kind === "variant" ? "Variant" : `${kind[0].toUpperCase()}${kind.slice(1)}, variant`;
    $("#viewer-title").textContent = `${title} ${image.index + 1} of ${run.images.length}, seed ${image.seed} (${run.mask.width}x${run.mask.height})`;
    const picture = $("#viewer-image");
    picture.src = image.url;
    picture.alt = `${kind} ${image.index + 1} at full resolution, seed ${image.seed}`;
    const overlay = $("#viewer-overlay");
    overlay.width = run.mask.width;
    overlay.height = run.mask.height;
    this.dialog.showModal();
    this.setZoom(this.zoom);
    this.drawOverlay();
  }

  setZoom(zoom) {
    this.zoom = zoom;
    if (!this.current) return;
    const { width, height } = this.current.run.mask;
    const box = $("#viewer-scroll");
    const scale = zoom === "fit" ? Math.min(box.clientWidth / width, box.clientHeight / height) : Number(zoom);
    const stack = $("#viewer-stack");
    stack.style.width = `${Math.floor(width * scale)}px`;
    stack.style.height = `${Math.floor(height * scale)}px`;
    stack.classList.toggle("pixelated", scale >= 2);
    for (const button of this.dialog.querySelectorAll("[data-zoom]")) {
      button.setAttribute("aria-pressed", String(button.dataset.zoom === zoom));
    }
  }

  drawOverlay() {
    if (!this.current || !this.dialog.open) return;
    const mode = this.panel.overlayMode();
    const overlay = $("#viewer-overlay");
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    overlay.hidden = mode === "none";
    if (mode !== "none") ctx.drawImage(this.current.run.overlay(mode, this.panel.studio.palette), 0, 0);
  }
}
