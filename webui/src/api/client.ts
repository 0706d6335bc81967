// The one client every page uses: typed from the API's OpenAPI document (schema.d.ts, generated
// by `npm run gen:api` and checked for drift by the tests), the session cookie sent along, and
// the CSRF token (the `csrf_token` cookie) echoed on every state-changing request.
import createClient, { type Middleware } from "openapi-fetch";
import type { paths } from "./schema";

export type ApiErrorBody = {
  error: { code: string; message: string; details?: FieldError[] };
  redirect?: string;
};
export type FieldError = { path: string; message: string; hint?: string };

/** The value of a cookie, if the browser has it. */
export function cookie(name: string, source: string = document.cookie): string | undefined {
  for (const part of source.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return undefined;
}

const csrf: Middleware = {
  onRequest({ request }) {
    if (!["GET", "HEAD", "OPTIONS"].includes(request.method)) {
      const token = cookie("csrf_token");
      if (token) request.headers.set("x-csrf-token", token);
    }
    return request;
  },
};

export const api = createClient<paths>({ baseUrl: "", credentials: "same-origin" });
api.use(csrf);

/** The API's errors by field path, for showing each next to its field. */
export function errorsByField(body: unknown): Record<string, string> {
  const details = (body as ApiErrorBody | undefined)?.error?.details ?? [];
  const byField: Record<string, string> = {};
  for (const d of details) byField[d.path] = d.hint ? `${d.message} (${d.hint})` : d.message;
  return byField;
}

/** The error's message for the page. */
export function errorMessage(body: unknown): string {
  return (body as ApiErrorBody | undefined)?.error?.message ?? "the request failed";
}
