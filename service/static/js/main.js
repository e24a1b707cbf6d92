// HistoSynth Studio: wires the API key, the tabs, the model and the four panels.

import { api, apiKey, setApiKey } from "./api.js";
import { MaskEditor } from "./editor.js";
import { GeneratePanel } from "./generate.js";
import { JobsPanel } from "./jobs.js";
import { blankMask, exampleLayout, fromColorPixels, hexToRgb, pixelsOf, toColorPng } from "./masks.js";
import { ModelsPanel } from "./models.js";
import { SegmentPanel } from "./segment.js";
import { $, download, el, guarded, setOptions, showError, swatch } from "./ui.js";

const TABS = ["draw", "segment", "jobs", "models"];

class Studio {
  constructor() {
    this.model = "";
    this.classes = [];
    this.palette = [];
    this.limits = { max_variants: 16, max_pixels: 1024 * 1024, min_mask_side: 16 };
    this.currentTab = "draw";
    this.exampleSeed = 1;
    this.editor = new MaskEditor($("#mask-canvas"), $("#cursor-canvas"), $("#canvas-wrap"));
    this.generate = new GeneratePanel(this);
    this.segment = new SegmentPanel(this);
    this.jobs = new JobsPanel(this);
    this.models = new ModelsPanel(this);
    this.bindKey();
    this.bindTabs();
    this.bindDraw();
    $("#model-select").addEventListener("change", () => this.selectModel($("#model-select").value));
    document.addEventListener("studio:unauthorized", () => this.askForKey());
    this.editor.addEventListener("change", () => this.describeCanvas());
  }

  async start() {
    this.showTab(TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "draw", false);
    await this.loadModels();
  }

  // ---- API key (sessionStorage only; never written into the page) ----------------------
  bindKey() {
    $("#key-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const input = $("#api-key");
      setApiKey(input.value.trim());
      input.value = "";
      this.describeKey();
      await this.loadModels();
    });
    $("#key-forget").addEventListener("click", () => {
      setApiKey("");
      this.describeKey();
    });
    this.describeKey();
  }

  describeKey() {
    $("#key-status").textContent = apiKey() ? "key set for this browser session" : "no key set";
    showError($("#key-error"), null);
  }

  askForKey() {
    const error = { message: apiKey() ? "the server refused this API key: enter the right one" : "the server needs an API key: enter it here", code: "unauthorized" };
    showError($("#key-error"), error);
    $("#api-key").focus();
  }

  // ---- tabs -------------------------------------------------------------------------------
  bindTabs() {
    for (const name of TABS) {
      const tab = $(`#tab-${name}`);
      tab.addEventListener("click", () => this.showTab(name));
      tab.addEventListener("keydown", (e) => {
        const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
        if (!step) return;
        const next = TABS[(TABS.indexOf(name) + step + TABS.length) % TABS.length];
        this.showTab(next);
        $(`#tab-${next}`).focus();
      });
    }
  }

  showTab(name, updateHash = true) {
    this.currentTab = name;
    for (const other of TABS) {
      const selected = other === name;
      const tab = $(`#tab-${other}`);
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      $(`#panel-${other}`).hidden = !selected;
    }
    if (updateHash) history.replaceState(null, "", `#${name}`);
    if (name === "draw") this.editor.applyZoom();
    if (name === "jobs") this.jobs.refresh();
  }

  // ---- models -----------------------------------------------------------------------------
  async loadModels() {
    const error = $("#model-error");
    try {
      const list = await api.getJson("/models");
      this.limits = list.limits;
      const names = list.models.filter((m) => m.loaded).map((m) => [m.name, m.name]);
      setOptions($("#model-select"), names, this.model || list.default_model);
      showError(error, null);
      showError($("#key-error"), null);
      await this.selectModel($("#model-select").value);
      this.models.show(list);
    } catch (err) {
      showError(error, err);
      if (err.status === 401) this.askForKey();
    }
  }

  async selectModel(name) {
    try {
      const detail = await api.getJson(`/models/${encodeURIComponent(name)}`);
      this.model = name;
      this.classes = detail.classes;
      this.palette = detail.classes.map((c) => hexToRgb(c.color));
      this.editor.setPalette(this.palette); // a mask with classes this model lacks starts over
      this.classButtons();
      if (!this.started) this.newMask(this.defaultSide(), this.defaultSide());
      this.started = true;
      this.generate.onModel(detail, this.limits);
      this.jobs.onModel(detail);
      showError($("#model-error"), null);
    } catch (err) {
      showError($("#model-error"), err);
    }
  }

  defaultSide() {
    return Math.min(1024, Math.floor(Math.sqrt(this.limits.max_pixels)));
  }

  classButtons() {
    const buttons = this.classes.map((c, i) => {
      const input = el("input", { type: "radio", name: "brush-class", value: String(i), id: `class-${i}` });
      input.checked = i === this.editor.cls;
      input.addEventListener("change", () => this.setClass(i));
      const keyHint = i < 9 ? el("kbd", { text: String(i + 1) }) : null;
      const note = i === 0 ? el("span", { class: "hint", text: " (eraser)" }) : null;
      return el("label", { class: "class-button", for: `class-${i}`, "data-class": c.name }, [input, swatch(c.color), el("span", { text: c.name }), note, keyHint]);
    });
    $("#class-buttons").replaceChildren(...buttons);
  }

  setClass(i) {
    this.editor.cls = i;
    const input = $(`#class-${i}`);
    if (input) input.checked = true;
    if (this.editor.tool === "eraser") this.setTool("brush");
  }

  setTool(tool) {
    this.editor.tool = tool;
    document.querySelector(`input[name=tool][value=${tool}]`).checked = true;
  }

  // ---- draw controls ----------------------------------------------------------------------
  bindDraw() {
    const ed = this.editor;
    for (const input of document.querySelectorAll("input[name=tool]")) {
      input.addEventListener("change", () => { ed.tool = input.value; });
    }
    const size = $("#brush-size");
    const onSize = () => {
      ed.radius = Number(size.value) / 2;
      $("#brush-size-value").textContent = size.value;
    };
    size.addEventListener("input", onSize);
    onSize();
    $("#undo").addEventListener("click", () => ed.undo());
    $("#redo").addEventListener("click", () => ed.redo());
    $("#clear").addEventListener("click", () => ed.clear());
    $("#zoom").addEventListener("change", () => ed.setZoom($("#zoom").value));
    $("#new-mask").addEventListener("click", () => this.newMask(Number($("#new-width").value), Number($("#new-height").value)));
    $("#example-mask").addEventListener("click", () => {
      const { width, height } = ed.mask;
      ed.replace(exampleLayout(width, height, this.classes.length, this.exampleSeed++));
    });
    $("#load-mask").addEventListener("click", () => this.loadMaskFile());
    $("#download-mask-color").addEventListener("click", () => this.downloadMask("color"));
    $("#download-mask-values").addEventListener("click", () => this.downloadMask("values"));
    document.addEventListener("keydown", (e) => this.onKey(e));
  }

  /** Shortcuts while the draw tab is open and no text field has the focus. */
  onKey(e) {
    if (this.currentTab !== "draw" || e.altKey) return;
    const target = e.target;
    if (target.matches && target.matches("input:not([type=radio]):not([type=range]), select, textarea")) return;
    const ed = this.editor;
    const key = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && key === "z") (e.shiftKey ? ed.redo() : ed.undo());
    else if ((e.ctrlKey || e.metaKey) && key === "y") ed.redo();
    else if (e.ctrlKey || e.metaKey) return;
    else if (/^[1-9]$/.test(key) && Number(key) <= this.classes.length) this.setClass(Number(key) - 1);
    else if (key === "b") this.setTool("brush");
    else if (key === "f") this.setTool("fill");
    else if (key === "e") this.setTool("eraser");
    else if (key === "[" || key === "]") {
      const size = $("#brush-size");
      size.value = String(Number(size.value) + (key === "]" ? 4 : -4));
      size.dispatchEvent(new Event("input"));
    } else return;
    e.preventDefault();
  }

  newMask(width, height) {
    if (!(width >= 1 && height >= 1 && width * height <= 64 * 2 ** 20)) {
      showError($("#load-error"), { message: `a mask of ${width}x${height} pixels is not possible here` });
      return;
    }
    showError($("#load-error"), null);
    this.editor.replace(blankMask(width, height), this.started);
  }

  async loadMaskFile() {
    await guarded($("#load-mask"), $("#load-error"), async () => {
      const file = $("#mask-file").files[0];
      if (!file) throw new Error("choose a mask file first");
      const fields = { mask: file, encoding: $("#mask-encoding").value, format: "color", model: this.model };
      const blob = await (await api.postForm("/masks/convert", fields, { mask: file.name })).blob();
      const bitmap = await createImageBitmap(blob);
      this.editor.replace(fromColorPixels(pixelsOf(bitmap), this.palette));
    });
  }

  async downloadMask(format) {
    const button = $(`#download-mask-${format}`);
    await guarded(button, $("#download-error"), async () => {
      const colour = await toColorPng(this.editor.mask, this.palette);
      if (format === "color") {
        download(colour, `mask-${this.model}-color.png`);
        return;
      }
      const fields = { mask: colour, encoding: "color", format: "values", model: this.model };
      download(await (await api.postForm("/masks/convert", fields)).blob(), `mask-${this.model}-values.png`);
    });
  }

  describeCanvas() {
    const { width, height } = this.editor.mask;
    $("#canvas-info").textContent = `${width}x${height} px · undo ${this.editor.undoStack.length} · redo ${this.editor.redoStack.length}`;
    $("#new-width").value = String(width);
    $("#new-height").value = String(height);
  }
}

window.studio = new Studio();
window.studio.start();
