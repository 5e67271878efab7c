import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

/**
 * GraphiQL's stylesheet embeds its fonts as `data:` URLs, which the page's policy refuses
 * (fonts come from this origin only, like everything else): dropped here, so the browser
 * uses its own fonts without a policy violation on every load, and the stylesheet is smaller.
 */
function withoutInlineFonts(): Plugin {
  return {
    name: "aether-without-inline-fonts",
    enforce: "pre",
    // Before bundling, so the stylesheet's content hash covers what is served.
    transform(code, id) {
      if (!id.endsWith(".css")) return null;
      return { code: code.replace(/@font-face\s*\{[^}]*url\(data:[^}]*\}/g, ""), map: null };
    },
  };
}

// GraphiQL is React; the client is Preact: a build of its own, after the client's (whose build
// empties dist/), into dist/graphiql/, served by `aether` at /graphiql/ (a browser opening
// /graphql is sent there).
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/graphiql/",
  plugins: [withoutInlineFonts()],
  build: {
    outDir: "../dist/graphiql",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    modulePreload: { polyfill: false },
    // GraphiQL is one large bundle by nature; only whoever opens the IDE loads it.
    chunkSizeWarningLimit: 4096,
    rollupOptions: {
      // React component libraries mark modules "use client" (for server rendering, which
      // this page does not do); the bundler says so for each one.
      onwarn(warning, warn) {
        if (warning.code !== "MODULE_LEVEL_DIRECTIVE") warn(warning);
      },
    },
  },
});
