import type { CodegenConfig } from "@graphql-codegen/cli";

// Types for every operation in src/api/operations.ts, from the committed public schema.
// Run `npm run codegen` after changing either; the output is committed (src/api/generated.ts)
// and the test script fails when it is stale.
const config: CodegenConfig = {
  schema: "../schema.graphql",
  documents: ["src/api/operations.ts"],
  generates: {
    "src/api/generated.ts": {
      plugins: ["typescript-operations"],
      config: {
        enumsAsTypes: true,
        avoidOptionals: { field: true, inputValue: false, object: true },
        scalars: { DateTime: "string", ID: "string" },
        skipTypename: false,
        nonOptionalTypename: false,
        onlyOperationTypes: true,
      },
    },
  },
};
export default config;
