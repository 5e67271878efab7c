import { gzipSync } from "node:zlib";
import { defineConfig, type Plugin } from "vite";

/**
 * A gzipped copy beside each text file of the build (`index-abc.js.gz`), which `aether` sends
 * to clients that accept gzip: compressed once here, not on every request.
 */
function gzipCopies(): Plugin {
  return {
    name: "aether-gzip-copies",
    apply: "build",
    enforce: "post",
    generateBundle(_options, bundle) {
      for (const [fileName, item] of Object.entries(bundle)) {
        if (!/\.(js|css|html|svg|json)$/.test(fileName)) continue;
        const source = item.type === "chunk" ? item.code : item.source;
        this.emitFile({ type: "asset", fileName: `${fileName}.gz`, source: gzipSync(source, { level: 9 }) });
      }
    },
  };
}

// No framework plugin: Preact's JSX runtime is named in tsconfig.json (`jsxImportSource`),
// which esbuild reads, so the build needs nothing beyond Vite itself.
export default defineConfig({
  plugins: [gzipCopies()],
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
