// The web UI, built to dist/ and served by `pic serve`; `npm run dev` proxies the API to a local
// `pic serve` on port 3000.
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true },
  server: { proxy: { "/api": "http://127.0.0.1:3000", "/health": "http://127.0.0.1:3000" } },
  test: { environment: "jsdom" },
});
