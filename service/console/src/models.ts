// Models: the loaded models with their manifests and the patterns that use them;
// upload (model file + manifest, through the service's safe loader) and delete.

import { call, get } from "./api";
import { h, clear, byId, table, json } from "./dom";
import { status, canChange } from "./shell";
import { errorText } from "./patterns";

interface ModelInfo {
  name: string; version: number; loaded_version: number; file: string; sha256: string;
  output: string; features: { name: string; type: string; default: number }[];
  description: string | null; used_by: string[];
}

export class ModelsView {
  mount(): void {
    byId("model-upload").addEventListener("click", () => void this.upload());
  }

  async refresh(): Promise<void> {
    const host = byId("model-list");
    try {
      const r = await get<{ models: ModelInfo[]; problems: Record<string, string> }>("/models");
      clear(host);
      if (!r.models.length) host.appendChild(h("p", { class: "muted" }, "No models loaded."));
      for (const m of r.models) {
        host.appendChild(h("div", { class: "card model", "data-name": m.name },
          h("h3", {}, `${m.name} `, h("span", { class: "muted" },
            `manifest v${m.version} · loads in this process: ${m.loaded_version}`)),
          m.description ? h("p", {}, m.description) : null,
          h("p", {}, "used by: ", m.used_by.length ? m.used_by.join(", ") : "no pattern"),
          table(["feature", "type", "default"],
                m.features.map((f) => [f.name, f.type, f.default]), "list"),
          h("details", {}, h("summary", {}, "manifest"), h("pre", {}, json(m))),
          h("button", { class: "mutating danger", onclick: () => void this.remove(m.name) },
            `delete ${m.name}`)));
      }
      for (const [name, why] of Object.entries(r.problems)) {
        host.appendChild(h("p", { class: "error" }, `${name} did not load: ${why}`));
      }
      canChange();
    } catch (e) {
      host.textContent = errorText(e);
    }
  }

  async upload(): Promise<void> {
    const name = byId<HTMLInputElement>("model-name").value.trim();
    const model = byId<HTMLInputElement>("model-file").files?.[0];
    const manifest = byId<HTMLInputElement>("model-manifest").files?.[0];
    if (!name || !model || !manifest) {
      status("give the model's name, its file and its manifest", true);
      return;
    }
    const form = new FormData();
    form.append("model", model, model.name);
    form.append("manifest", manifest, manifest.name);
    try {
      await call("PUT", `/models/${encodeURIComponent(name)}`, form);
      status(`uploaded model ${name}`);
      await this.refresh();
    } catch (e) {
      status(errorText(e), true);
    }
  }

  async remove(name: string): Promise<void> {
    if (!window.confirm(`Delete model ${name}?`)) return;
    try {
      await call("DELETE", `/models/${encodeURIComponent(name)}`);
      status(`deleted model ${name}`);
      await this.refresh();
    } catch (e) {
      status(errorText(e), true);
    }
  }
}
