// The mask editor: a canvas at the mask's real size (zoomed by CSS), brushes in the
// model's class colours, fill, eraser (class 0, the background), undo/redo.
// Pointer: paint and fill. Keyboard (canvas focused): arrows move the cursor (Shift: x4),
// Space or Enter paints or fills there.

import { blankMask, copyMask, floodFill, stampDisc, strokeLine, toImageData } from "./masks.js";

const UNDO_BYTES = 64 * 1024 * 1024; // undo history kept under this many bytes

export class MaskEditor extends EventTarget {
  constructor(canvas, cursorCanvas, wrap) {
    super();
    this.canvas = canvas;
    this.cursor = cursorCanvas;
    this.wrap = wrap;
    this.palette = [[0, 0, 0], [255, 255, 255]];
    this.mask = blankMask(canvas.width, canvas.height);
    this.cls = 1;
    this.tool = "brush";
    this.radius = 12;
    this.zoom = "fit";
    this.undoStack = [];
    this.redoStack = [];
    this.pointer = null; // last painted point while a stroke is on
    this.keyCursor = { x: canvas.width / 2, y: canvas.height / 2 };
    this.frame = 0;
    this.bind();
  }

  // ---- state ----------------------------------------------------------------------------
  setPalette(palette) {
    this.palette = palette;
    this.cls = Math.min(this.cls, palette.length - 1);
    if (this.mask.data.some((v) => v >= palette.length)) this.replace(blankMask(this.mask.width, this.mask.height), false);
    this.render();
  }

  /** Put a new mask on the canvas (undoable unless `undoable` is false). */
  replace(mask, undoable = true) {
    if (undoable) this.pushUndo();
    else this.undoStack = [];
    this.redoStack = [];
    this.mask = mask;
    if (this.canvas.width !== mask.width || this.canvas.height !== mask.height) {
      this.canvas.width = this.cursor.width = mask.width;
      this.canvas.height = this.cursor.height = mask.height;
      this.keyCursor = { x: mask.width / 2, y: mask.height / 2 };
    }
    this.applyZoom();
    this.changed();
  }

  snapshot() {
    return copyMask(this.mask);
  }

  pushUndo() {
    this.undoStack.push(copyMask(this.mask));
    this.redoStack = [];
    let bytes = this.undoStack.reduce((n, m) => n + m.data.length, 0);
    while (bytes > UNDO_BYTES && this.undoStack.length > 1) bytes -= this.undoStack.shift().data.length;
  }

  undo() {
    if (!this.undoStack.length) return;
    this.redoStack.push(this.mask);
    this.swapIn(this.undoStack.pop());
  }

  redo() {
    if (!this.redoStack.length) return;
    this.undoStack.push(this.mask);
    this.swapIn(this.redoStack.pop());
  }

  swapIn(mask) {
    const resized = mask.width !== this.mask.width || mask.height !== this.mask.height;
    this.mask = mask;
    if (resized) {
      this.canvas.width = this.cursor.width = mask.width;
      this.canvas.height = this.cursor.height = mask.height;
      this.applyZoom();
    }
    this.changed();
  }

  clear() {
    this.replace(blankMask(this.mask.width, this.mask.height));
  }

  changed() {
    this.render();
    this.dispatchEvent(new Event("change"));
  }

  // ---- drawing --------------------------------------------------------------------------
  paintClass() {
    return this.tool === "eraser" ? 0 : this.cls;
  }

  render() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.canvas.getContext("2d").putImageData(toImageData(this.mask, this.palette), 0, 0);
  }

  scheduleRender() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  /** Paint a dot or fill at mask coordinates (starts an undo step). */
  applyAt(x, y) {
    if (this.tool === "fill") {
      const snapshot = copyMask(this.mask);
      if (floodFill(this.mask, Math.floor(x), Math.floor(y), this.cls)) {
        this.undoStack.push(snapshot);
        this.redoStack = [];
        this.changed();
      }
      return;
    }
    this.pushUndo();
    stampDisc(this.mask, x, y, this.radius, this.paintClass());
    this.changed();
  }

  toMask(event) {
    const rect = this.canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) * this.mask.width) / rect.width;
    const y = ((event.clientY - rect.top) * this.mask.height) / rect.height;
    return {
      x: Math.min(this.mask.width - 0.01, Math.max(0, x)),
      y: Math.min(this.mask.height - 0.01, Math.max(0, y)),
    };
  }

  drawCursor(x, y) {
    const ctx = this.cursor.getContext("2d");
    ctx.clearRect(0, 0, this.cursor.width, this.cursor.height);
    if (x === null) return;
    const scale = this.mask.width / this.canvas.getBoundingClientRect().width || 1;
    ctx.lineWidth = Math.max(1, scale * 1.5);
    const r = this.tool === "fill" ? 4 * scale : this.radius;
    for (const [colour, width] of [["#000", ctx.lineWidth * 2], ["#fff", ctx.lineWidth]]) {
      ctx.strokeStyle = colour;
      ctx.lineWidth = width;
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }

  // ---- events ---------------------------------------------------------------------------
  bind() {
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      e.preventDefault();
      c.focus();
      const p = this.toMask(e);
      this.applyAt(p.x, p.y);
      if (this.tool !== "fill") {
        this.pointer = p;
        c.setPointerCapture(e.pointerId);
      }
    });
    c.addEventListener("pointermove", (e) => {
      const p = this.toMask(e);
      this.drawCursor(p.x, p.y);
      if (!this.pointer) return;
      strokeLine(this.mask, this.pointer.x, this.pointer.y, p.x, p.y, this.radius, this.paintClass());
      this.pointer = p;
      this.scheduleRender();
    });
    const end = () => {
      if (!this.pointer) return;
      this.pointer = null;
      this.changed();
    };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    c.addEventListener("pointerleave", () => this.drawCursor(null, null));
    c.addEventListener("keydown", (e) => this.onCanvasKey(e));
    window.addEventListener("resize", () => this.applyZoom());
  }

  onCanvasKey(e) {
    const step = Math.max(1, this.radius) * (e.shiftKey ? 4 : 1);
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    const k = this.keyCursor;
    if (moves[e.key]) {
      k.x = Math.min(this.mask.width - 1, Math.max(0, k.x + moves[e.key][0]));
      k.y = Math.min(this.mask.height - 1, Math.max(0, k.y + moves[e.key][1]));
    } else if (e.key === " " || e.key === "Enter") {
      this.applyAt(k.x, k.y);
    } else {
      return;
    }
    e.preventDefault();
    this.drawCursor(k.x, k.y);
  }

  // ---- zoom -----------------------------------------------------------------------------
  setZoom(zoom) {
    this.zoom = zoom;
    this.applyZoom();
  }

  applyZoom() {
    const { width, height } = this.mask;
    let scale = Number(this.zoom);
    if (this.zoom === "fit") {
      // the whole mask in view: as wide as the column, as high as the window below its top
      const parent = this.wrap.parentElement;
      const style = getComputedStyle(parent);
      const column = parent.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 2;
      const top = this.wrap.getBoundingClientRect().top + window.scrollY;
      const maxHeight = Math.max(280, window.innerHeight - top - 40);
      scale = Math.min(column / width, maxHeight / height);
    }
    for (const c of [this.canvas, this.cursor]) {
      c.style.width = `${Math.round(width * scale)}px`;
      c.style.height = `${Math.round(height * scale)}px`;
    }
    this.wrap.classList.toggle("pixelated", scale >= 2);
  }
}
