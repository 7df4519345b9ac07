// The frame: tabs, the token box, the status line, read-only mode.

import { byId } from "./dom";
import { token, setToken, Info } from "./api";

let info: Info | null = null;

export function setInfo(i: Info): void {
  info = i;
  byId("mode").textContent = `${i.mode} mode · cep ${i.version}`;
  canChange();
}

/** Mutating buttons are disabled while the service wants a token and none is set. */
export function canChange(): boolean {
  const ok = !info || !info.auth_required || !!token();
  document.body.classList.toggle("readonly", !ok);
  for (const b of document.querySelectorAll<HTMLButtonElement>("button.mutating")) {
    b.disabled = !ok;
    b.title = ok ? "" : "read-only: enter the API token to change things";
  }
  byId("token-state").textContent = token() ? "token set (this tab only)"
    : info?.auth_required ? "read-only" : "no token needed";
  return ok;
}

export function status(msg: string, error = false): void {
  const el = byId("status");
  el.textContent = msg;
  el.className = error ? "error" : "ok";
}

export function setupToken(): void {
  const input = byId<HTMLInputElement>("token");
  byId("token-use").addEventListener("click", () => {
    setToken(input.value.trim() || null);
    input.value = "";
    canChange();
  });
  byId("token-forget").addEventListener("click", () => { setToken(null); canChange(); });
}

export function setupTabs(onShow: (tab: string) => void): void {
  const tabs = document.querySelectorAll<HTMLButtonElement>("nav button[data-tab]");
  const show = (name: string) => {
    for (const t of tabs) t.classList.toggle("active", t.dataset.tab === name);
    for (const s of document.querySelectorAll<HTMLElement>("main > section")) {
      s.hidden = s.id !== `screen-${name}`;
    }
    history.replaceState(null, "", `#${name}`);
    onShow(name);
  };
  for (const t of tabs) t.addEventListener("click", () => show(t.dataset.tab ?? "patterns"));
  const first = location.hash.slice(1);
  show(["patterns", "alerts", "health", "models"].includes(first) ? first : "patterns");
}
