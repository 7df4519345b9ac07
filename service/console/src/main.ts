// The analyst console of `cep serve` (/ui). Built with `npm run build` into
// ../static/console.js; see docs/console.md.

import { get, Info, Language } from "./api";
import { setInfo, setupTabs, setupToken, status } from "./shell";
import { PatternsView } from "./patterns";
import { AlertsView } from "./alerts";
import { HealthView } from "./health";
import { ModelsView } from "./models";

async function main(): Promise<void> {
  setupToken();
  const [info, lang] = await Promise.all([get<Info>("/console/info"),
                                          get<Language>("/console/language")]);
  setInfo(info);
  const patterns = new PatternsView(lang);
  const alerts = new AlertsView();
  const health = new HealthView();
  const models = new ModelsView();
  patterns.mount();
  alerts.mount();
  health.mount();
  models.mount();
  let tabShown = "patterns";
  window.setInterval(() => {  // live figures of the list while it is on screen
    if (tabShown === "patterns" && document.visibilityState === "visible") void patterns.refresh();
  }, 5000);
  setupTabs((tab) => {
    tabShown = tab;
    if (tab === "patterns") void patterns.refresh();
    if (tab === "alerts") void alerts.deadLetters();
    if (tab === "models") void models.refresh();
  });
  document.body.dataset.ready = "1";
}

main().catch((e: unknown) => status(`the console could not start: ${(e as Error).message}`, true));
