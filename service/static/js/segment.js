// Segment: upload an H&E tile, see S_0's classes over it with the legend, send the class
// map to the canvas to edit it and generate from it.

import { api } from "./api.js";
import { classShares, fromColorPixels, pixelsOf } from "./masks.js";
import { $, el, guarded, swatch } from "./ui.js";

export class SegmentPanel {
  constructor(studio) {
    this.studio = studio;
    this.mask = null; // class indices of the last result
    this.urls = [];
    $("#segment-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.segment();
    });
    $("#segment-opacity").addEventListener("input", () => this.applyOpacity());
    $("#segment-to-canvas").addEventListener("click", () => this.toCanvas());
    this.applyOpacity();
  }

  applyOpacity() {
    const value = $("#segment-opacity").value;
    $("#segment-opacity-value").textContent = value;
    $("#segment-overlay").style.opacity = String(Number(value) / 100);
  }

  async segment() {
    await guarded($("#segment"), $("#segment-error"), async () => {
      const file = $("#segment-file").files[0];
      if (!file) throw new Error("choose an H&E tile first");
      const response = await api.postForm("/segment", { image: file, format: "color", model: this.studio.model }, { image: file.name });
      const blob = await response.blob();
      for (const url of this.urls) URL.revokeObjectURL(url);
      this.urls = [URL.createObjectURL(file), URL.createObjectURL(blob)];
      const [image, overlay] = [$("#segment-image"), $("#segment-overlay")];
      image.hidden = false;
      const shown = load(image, this.urls[0]).catch(() => this.showConverted(image, file));
      await Promise.all([shown, load(overlay, this.urls[1])]);
      this.mask = fromColorPixels(pixelsOf(overlay), this.studio.palette);
      this.showLegend();
      $("#segment-result").hidden = false;
    });
  }

  // A file the browser cannot display (e.g. a TIFF): the server's PNG of the same pixels.
  async showConverted(image, file) {
    try {
      const response = await api.postForm("/images/convert", { image: file }, { image: file.name });
      const url = URL.createObjectURL(await response.blob());
      this.urls.push(url);
      await load(image, url);
    } catch {
      image.hidden = true; // the classes and the legend still show
    }
  }

  showLegend() {
    const shares = classShares(this.mask, this.studio.classes.length);
    const items = this.studio.classes.map((c, i) => el("li", {}, [
      swatch(c.color),
      el("span", { class: "name", text: c.name }),
      el("span", { class: "share", text: `${(100 * shares[i]).toFixed(1)} %` }),
    ]));
    $("#segment-legend").replaceChildren(...items);
  }

  toCanvas() {
    if (!this.mask) return;
    this.studio.editor.replace(this.mask);
    this.studio.showTab("draw");
    this.studio.editor.canvas.focus();
  }
}

function load(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser could not display this image"));
    img.src = url;
  });
}
