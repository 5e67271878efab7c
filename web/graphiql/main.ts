// GraphiQL for the API, bundled by the web build (`npm run build` → dist/graphiql/) and served
// by `aether` beside the client: nothing is loaded from a CDN, and the page passes the same
// Content-Security-Policy as the client (scripts from this origin only).
//
// Queries and mutations go to /graphql over HTTP with the headers of GraphiQL's Headers tab;
// subscriptions go over a WebSocket to the same path, whose `connection_init` carries the
// Authorization header from that tab (the server reads it there, not from the upgrade).
import { createElement } from "react";
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { createClient } from "graphql-ws";
import "graphiql/graphiql.css";

const url = new URL("/graphql", window.location.href);
const socket = new URL(url);
socket.protocol = url.protocol === "https:" ? "wss:" : "ws:";

/** The Authorization header typed into GraphiQL's Headers tab, if any. */
function authorization(): string | undefined {
  try {
    const headers = JSON.parse(localStorage.getItem("graphiql:headers") ?? "{}");
    const value = headers.Authorization ?? headers.authorization;
    return typeof value === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}

const fetcher = createGraphiQLFetcher({
  url: url.href,
  wsClient: createClient({
    url: socket.href,
    lazy: true,
    connectionParams: () => ({ authorization: authorization() }),
  }),
});

const root = document.getElementById("graphiql");
if (root) {
  createRoot(root).render(createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: true }));
}
