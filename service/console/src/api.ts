// The service's API. The token lives in sessionStorage only (this tab, until it
// closes); it is sent as a Bearer header, never put in a URL.

const TOKEN_KEY = "cep.token";

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(t: string | null): void {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(public status: number, public detail: string, public body: unknown) {
    super(`${status}: ${detail}`);
  }
}

export async function call<T>(method: string, path: string,
                              body?: BodyInit | object, contentType?: string): Promise<T> {
  const headers: Record<string, string> = {};
  const t = token();
  if (t && method !== "GET") headers["Authorization"] = `Bearer ${t}`;
  let payload: BodyInit | undefined;
  if (body instanceof FormData || typeof body === "string" || body instanceof Blob) {
    payload = body;
    if (contentType) headers["Content-Type"] = contentType;
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, { method, headers, body: payload, credentials: "omit" });
  const text = await r.text();
  let data: unknown = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) {
    const d = (data && typeof data === "object" && "detail" in data)
      ? (data as { detail: unknown }).detail : text;
    throw new ApiError(r.status, typeof d === "string" ? d : JSON.stringify(d), data);
  }
  return data as T;
}

export const get = <T>(path: string) => call<T>("GET", path);

export interface Diagnostic {
  line: number; column: number; end_line: number; end_column: number;
  severity: string; code: string; message: string; hint: string | null; snippet: string;
}
export interface VersionInfo {
  version: number; draining: boolean; keys: number; partial_matches: number;
  pending_timers: number; buffered_events: number;
}
export interface PatternSummary {
  name: string; version: number; origin: string; description: string | null;
  models: string[]; loaded_at: string; versions: VersionInfo[] | null;
}
export interface PatternDetail extends PatternSummary { source: string; }
export interface AlertRecord {
  alert_id: string; pattern: string; pattern_version: number; kind: string;
  key: unknown; severity: string; time: number;
  window?: { start: number; end: number };
  events?: Record<string, Record<string, unknown>[]>;
  measures?: Record<string, unknown>;
}
export interface Language {
  keywords: string[]; functions: { name: string; kind: string }[];
  models: Record<string, string[]>; patterns: string[]; fields: Record<string, string[]>;
}
export interface Info {
  mode: string; version: string; auth_required: boolean; max_body_bytes: number;
  max_dry_run_events: number;
}
