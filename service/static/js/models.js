// Models: every model of the server with classes, scales, training summary and the
// held-out evaluation stored in its metadata.

import { api } from "./api.js";
import { $, duration, el, showError, swatch } from "./ui.js";

const fmt = (v, digits = 3) => (v === null || v === undefined ? "n/a" : typeof v === "number" ? Number(v.toFixed(digits)).toString() : String(v));

function table(caption, rows) {
  const body = rows.map(([key, value]) => el("tr", {}, [el("th", { scope: "row", text: key }), el("td", { text: value })]));
  return el("table", { class: "kv" }, [el("caption", { text: caption }), el("tbody", {}, body)]);
}

function classTable(classes) {
  const head = el("tr", {}, ["", "index", "class", "raw values", "colour"].map((t) => el("th", { scope: "col", text: t })));
  const rows = classes.map((c) => el("tr", {}, [
    el("td", {}, [swatch(c.color)]), el("td", { text: String(c.index) }), el("td", { text: c.name }),
    el("td", { text: c.values.join(", ") }), el("td", {}, [el("code", { text: c.color })]),
  ]));
  return el("table", { class: "classes-table" }, [el("caption", { text: "Classes" }), el("thead", {}, [head]), el("tbody", {}, rows)]);
}

function trainingRows(training) {
  const rows = [];
  const add = (key, value) => value !== undefined && value !== null && rows.push([key, value]);
  add("mode", training.mode);
  add("preset", training.preset);
  const ds = training.dataset;
  if (ds) add("dataset", typeof ds === "object" ? `${ds.classes || ""} ${(ds.names || []).length} tiles (${ds.root || ""})` : ds);
  if (training.held_out) add("held out", [].concat(training.held_out).join(", "));
  add("steps per scale", training.steps_per_scale);
  add("total steps", training.total_steps);
  if (training.wall_time_s) add("training time", `${duration(training.wall_time_s)} on ${training.device || "?"}`);
  add("created", training.created);
  add("perceptual loss", training.perceptual);
  return rows;
}

/** The held-out evaluation (``metadata.evaluation``) as a few readable rows. */
export function evaluationRows(ev) {
  const rows = [];
  if (ev.setup && ev.setup.holdout) rows.push(["held-out tiles", ev.setup.holdout.join(", ")]);
  const seg = ev.segmentation;
  if (seg) {
    rows.push(["segmentation mIoU / pixel accuracy", `${fmt(seg.miou)} / ${fmt(seg.opa)}`]);
    const per = Object.entries(seg.jaccard || {}).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(", ");
    if (per) rows.push(["segmentation IoU per class", per]);
  }
  const mc = ev.mask_consistency;
  if (mc) {
    rows.push(["mask consistency mIoU: generated / real", `${fmt(mc.generated && mc.generated.miou)} / ${fmt(mc.real && mc.real.miou)} (ratio ${fmt(mc.ratio_miou, 2)})`]);
  }
  const re = ev.realism;
  if (re) {
    const gen = re.swd_generated_vs_real && re.swd_generated_vs_real.mean;
    const train = re.swd_train_vs_real && re.swd_train_vs_real.mean;
    rows.push([`SWD to real (${re.units || ""}): generated / training tiles`, `${fmt(gen, 1)} / ${fmt(train, 1)} (ratio ${fmt(re.ratio, 2)})`]);
  }
  if (ev.diversity) rows.push(["pairwise MS-SSIM of variants (lower: more diverse)", fmt(ev.diversity.pairwise_ms_ssim)]);
  if (ev.fid) rows.push([`FID / KID (${ev.fid.extractor})`, `${fmt(ev.fid.fid)} / ${fmt(ev.fid.kid, 4)}; ${ev.fid.note || ""}`]);
  return rows;
}

function card(detail) {
  const badges = [detail.default ? "default" : "", detail.loaded ? "loaded" : "not loaded"].filter(Boolean).join(", ");
  const size = detail.size_bytes ? ` · ${(detail.size_bytes / 2 ** 20).toFixed(1)} MiB` : "";
  const scales = detail.scales.map((s) => `S${s.n} (1/${s.downsample})`).join(", ");
  const ev = (detail.metadata || {}).evaluation;
  const parts = [
    el("h3", { text: detail.name }),
    el("p", { class: "hint", text: `${badges} · sha256 ${String(detail.sha256 || "").slice(0, 16)}${size}` }),
    detail.description ? el("p", { text: detail.description }) : null,
    classTable(detail.classes),
    table("Scales", [["scales", `${detail.scales.length}: ${scales}`], ["mask padding factor", String(detail.factor)]]),
    table("Training", trainingRows(detail.training || {})),
    ev ? table("Held-out evaluation", evaluationRows(ev)) : el("p", { class: "hint", text: "No held-out evaluation in this model's metadata." }),
    el("details", {}, [el("summary", { text: "All metadata (JSON)" }), el("pre", { text: JSON.stringify(detail.metadata, null, 2) })]),
  ];
  return el("article", { class: "model-card", "data-model": detail.name }, parts);
}

export class ModelsPanel {
  constructor(studio) {
    this.studio = studio;
  }

  async show(list) {
    try {
      const details = await Promise.all(list.models.filter((m) => m.loaded).map((m) => api.getJson(`/models/${encodeURIComponent(m.name)}`)));
      const broken = list.models.filter((m) => !m.loaded).map((m) => el("article", { class: "model-card" }, [
        el("h3", { text: m.name }), el("p", { class: "error", text: `not loaded: ${m.error || "unknown error"}` }),
      ]));
      $("#model-cards").replaceChildren(...details.map(card), ...broken);
      showError($("#models-error"), null);
    } catch (err) {
      showError($("#models-error"), err);
    }
  }
}
