import { defineConfig } from "vite";

// No framework plugin: Preact's JSX runtime is named in tsconfig.json (`jsxImportSource`),
// which esbuild reads, so the build needs nothing beyond Vite itself.
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    target: "es2022",
    sourcemap: false,
    // One small bundle: splitting it would only add round trips on first load.
    modulePreload: { polyfill: false },
  },
  server: {
    // `npm run dev` proxies the API to a running `aether dev`.
    proxy: { "/graphql": { target: "http://127.0.0.1:8080", ws: true } },
  },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
