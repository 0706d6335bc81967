// Reading and changing the cell config from a page: GET with its ETag, a change applied to a
// copy, PUT with If-Match. A concurrent change elsewhere gives 412 and the page reloads.
import { useCallback, useEffect, useState } from "react";
import { api, errorMessage, errorsByField } from "./api/client";
import { type CellEvent, changesState, useEvents } from "./events";

export type CellConfig = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export async function loadConfig(): Promise<{ config: CellConfig; etag: string }> {
  const { data, response } = await api.GET("/api/config");
  return { config: data as CellConfig, etag: response.headers.get("etag") ?? "" };
}

export type SaveResult = { ok: true; generation: number | null } | { ok: false; message: string; fields: Record<string, string> };

/** Applies `change` to the current config and saves it: a new generation, switched to. */
export async function changeConfig(change: (config: CellConfig) => void): Promise<SaveResult> {
  const { config, etag } = await loadConfig();
  const next = structuredClone(config);
  change(next);
  const { data, error, response } = await api.PUT("/api/config", {
    body: next as never,
    params: { header: { "If-Match": etag } },
  });
  if (!response.ok) return { ok: false, message: errorMessage(error), fields: errorsByField(error) };
  const generation = (data as { generation?: number } | undefined)?.generation ?? null;
  return { ok: true, generation };
}

/**
 * A page that edits the config: the current config (reloaded on every change event), the API's
 * errors by field path, a status line, and `save`, which applies one change as a new generation.
 */
export function useConfigEditor() {
  const [config, setConfig] = useState<CellConfig | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState("");
  const load = useCallback(async () => setConfig((await loadConfig()).config), []);
  useEffect(() => {
    void load();
  }, [load]);
  useEvents(useCallback((e: CellEvent) => changesState(e) && void load(), [load]));

  const save = async (change: (c: CellConfig) => void, done: string) => {
    setMessage("Saving…");
    const result = await changeConfig(change);
    if (!result.ok) {
      setErrors(result.fields);
      setMessage(result.message);
      return false;
    }
    setErrors({});
    setMessage(`${done} Generation ${result.generation ?? "?"} is current.`);
    await load();
    return true;
  };
  return { config, errors, message, save };
}
