// Jobs: submit an augmentation job, list jobs with live progress and ETA, cancel, show
// where the result went and the first pairs it wrote.

import { api } from "./api.js";
import { $, duration, el, guarded, setOptions, showError } from "./ui.js";

const ACTIVE = ["queued", "started", "scheduled", "deferred"];
const FIRST_PAIRS = 4;

/** Percent done and a line of text from a job's progress. */
export function progressOf(job) {
  const p = job.progress || {};
  const [done, total, unit] = job.kind === "train"
    ? [p.done_steps, p.total_steps, "steps"]
    : [p.done, p.total, "pairs"];
  let percent = total ? Math.floor((100 * done) / total) : 0;
  if (job.status === "finished") percent = 100;
  const parts = [`${percent} %`];
  if (total) parts.push(`${done} / ${total} ${unit}`);
  if (ACTIVE.includes(job.status) && p.eta_s !== undefined && p.eta_s !== null) {
    parts.push(`ETA ${duration(p.eta_s)}`);
  }
  return { percent, text: parts.join(" · ") };
}

export class JobsPanel {
  constructor(studio) {
    this.studio = studio;
    this.items = new Map(); // job id -> {node, parts}
    this.mine = new Set(); // jobs submitted from this page: their pairs show when done
    this.timer = 0;
    $("#job-output").value = `studio/${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}`;
    $("#job-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    $("#jobs-refresh").addEventListener("click", () => this.refresh());
  }

  onModel(detail) {
    const names = [["", "(no relabelling)"], ...detail.classes.map((c) => [c.name, c.name])];
    setOptions($("#job-relabel-from"), names);
    setOptions($("#job-relabel-to"), names);
  }

  request() {
    const from = $("#job-relabel-from").value;
    const to = $("#job-relabel-to").value;
    const seed = $("#job-seed").value;
    if (Boolean(from) !== Boolean(to)) throw new Error("relabel: choose both classes, or neither");
    return {
      source: $("#job-source").value.trim(),
      output: $("#job-output").value.trim(),
      model: this.studio.model,
      variants_per_mask: Number($("#job-variants").value),
      transforms: $("#job-transforms").value,
      noise: Number($("#job-noise").value),
      ...(seed !== "" ? { seed: Number(seed) } : {}),
      ...(from && to ? { relabel: { [from]: to } } : {}),
    };
  }

  async submit() {
    await guarded($("#job-submit"), $("#job-error"), async () => {
      const job = await api.postJson("/jobs/augment", this.request());
      this.mine.add(job.id);
      this.update(job, 0);
      this.schedule(300);
    });
  }

  /** Poll: every second while a job runs or the panel is open, else stop. */
  schedule(delay = 1000) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delay);
  }

  async refresh() {
    let jobs = [];
    try {
      jobs = await api.getJson("/jobs");
      showError($("#jobs-error"), null);
    } catch (err) {
      showError($("#jobs-error"), err);
    }
    jobs.forEach((job, i) => this.update(job, i));
    const active = jobs.some((j) => ACTIVE.includes(j.status));
    if (active || this.studio.currentTab === "jobs") this.schedule(active ? 1000 : 5000);
  }

  /** Create or update the list item of `job` at position `position`. */
  update(job, position) {
    let item = this.items.get(job.id);
    if (!item) {
      item = this.create(job);
      this.items.set(job.id, item);
    }
    const list = $("#job-list");
    if (list.children[position] !== item.node) list.insertBefore(item.node, list.children[position] || null);
    const { percent, text } = progressOf(job);
    item.bar.value = percent;
    item.bar.textContent = `${percent} %`;
    item.status.textContent = job.cancel_requested && ACTIVE.includes(job.status) ? `${job.status}, cancelling` : job.status;
    item.status.className = `status ${job.status}`;
    item.progress.textContent = text;
    item.cancel.hidden = !ACTIVE.includes(job.status) || job.cancel_requested;
    item.result.replaceChildren(...resultLines(job));
    item.pairsButton.hidden = job.kind !== "augment" || !(job.status === "finished" || (job.progress || {}).written > 0);
    const justDone = job.status === "finished" && item.lastStatus !== "finished";
    if (justDone && this.mine.has(job.id) && job.kind === "augment") this.showPairs(job.id, item);
    item.lastStatus = job.status;
  }

  create(job) {
    const bar = el("progress", { max: 100, value: 0, "aria-label": `progress of job ${job.id}` });
    const cancel = el("button", { type: "button", class: "small cancel", text: "Cancel" });
    const pairsButton = el("button", { type: "button", class: "small", text: "First pairs", hidden: true });
    const item = {
      bar, cancel, pairsButton,
      status: el("span", { class: "status" }),
      progress: el("span", { class: "progress-text" }),
      result: el("div", { class: "result" }),
      error: el("p", { class: "error", role: "alert", hidden: true }),
      pairs: el("div", { class: "pairs" }),
      lastStatus: job.status,
    };
    cancel.addEventListener("click", () => guarded(cancel, item.error, async () => {
      await api.delete(`/jobs/${job.id}`);
      await this.refresh();
    }));
    pairsButton.addEventListener("click", () => this.showPairs(job.id, item));
    const head = el("div", { class: "job-head" }, [
      el("strong", { text: job.kind }), item.status,
      el("span", { class: "description", text: job.description }),
      el("code", { class: "job-id", text: job.id }),
    ]);
    const line = el("div", { class: "job-progress" }, [bar, item.progress, cancel, pairsButton]);
    item.node = el("li", { class: "job", "data-job-id": job.id }, [head, line, item.result, item.error, item.pairs]);
    return item;
  }

  async showPairs(jobId, item) {
    await guarded(item.pairsButton, item.error, async () => {
      const { pairs, written, output } = await api.getJson(`/jobs/${jobId}/pairs`, { limit: FIRST_PAIRS });
      const figures = await Promise.all(pairs.map((pair) => pairFigure(pair)));
      for (const img of item.pairs.querySelectorAll("img")) URL.revokeObjectURL(img.src);
      const note = el("p", { class: "hint", text: `first ${pairs.length} of ${written} pairs in ${output}` });
      item.pairs.replaceChildren(note, el("div", { class: "pair-grid" }, figures));
    });
  }
}

function resultLines(job) {
  const lines = [];
  const r = job.result;
  if (r && r.output) {
    lines.push(el("p", {}, [el("span", { text: "Output: " }), el("code", { class: "output", text: r.output })]));
    if (r.manifest) lines.push(el("p", {}, [el("span", { text: "Manifest: " }), el("code", { text: r.manifest })]));
    lines.push(el("p", { class: "hint", text: `${r.pairs} pairs: ${r.written} written, ${r.skipped} already there` }));
  } else if (r && r.name) {
    lines.push(el("p", {}, [el("span", { text: "Model published: " }), el("code", { text: `${r.name} (${String(r.sha256 || "").slice(0, 12)})` })]));
  }
  if (job.error) lines.push(el("p", { class: "error", text: job.error }));
  return lines;
}

async function pairFigure(pair) {
  const [image, mask] = await Promise.all([
    api.blob(pair.image_url),
    api.blob(pair.mask_url, { format: "color" }),
  ]);
  const caption = `#${pair.index} seed ${pair.seed}${pair.transform !== "id" ? `, ${pair.transform}` : ""}`;
  return el("figure", { class: "pair-figure" }, [
    el("img", { src: URL.createObjectURL(image), alt: `pair ${pair.index}: generated image`, class: "pair-image" }),
    el("img", { src: URL.createObjectURL(mask), alt: `pair ${pair.index}: its mask`, class: "pair-mask" }),
    el("figcaption", { text: caption }),
  ]);
}
