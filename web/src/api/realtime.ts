// Subscriptions over one WebSocket (`graphql-transport-ws`, the graphql-ws library). The
// socket signs in with `connection_init`'s `authorization`, reconnects forever with a short
// backoff, and hands a fresh access token over in a `ping` whenever the client refreshes (the
// server closes a socket whose token lapsed). After a reconnect, every live subscription is
// started again from what it last saw (`resumable`), not from its first variables.

import { createClient, type Client } from "graphql-ws";
import { ApiError, fromGraphQLErrors } from "./errors";
import type { GraphQLClient } from "./client";

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "offline";

export interface Realtime {
  readonly state: ConnectionState;
  onState(listener: (state: ConnectionState) => void): () => void;
  /**
   * Subscribes with the variables `variables()` gives at each (re)connect; `onReconnect` runs
   * after every reconnect (not the first connect) to re-read what the gap may have hidden.
   */
  resumable<T>(
    query: string,
    variables: () => Record<string, unknown>,
    next: (data: T) => void,
    options?: { onError?: (error: ApiError) => void; onReconnect?: () => void },
  ): () => void;
  /** Tells the server about a fresh access token now (after a refresh). */
  renew(accessToken: string): void;
  dispose(): void;
}

export function backoff(attempt: number): number {
  return Math.min(250 * 2 ** attempt, 4000) + Math.floor(Math.random() * 250);
}

export function connectRealtime(
  api: Pick<GraphQLClient, "accessToken" | "refresh">,
  url = defaultUrl(),
  create: typeof createClient = createClient,
): Realtime {
  let state: ConnectionState = "connecting";
  let everConnected = false;
  let socket: WebSocket | null = null;
  const stateListeners = new Set<(s: ConnectionState) => void>();
  const setState = (next: ConnectionState) => {
    if (next === state) return;
    state = next;
    for (const l of stateListeners) l(next);
  };
  const client: Client = create({
    url,
    lazy: false,
    retryAttempts: Number.POSITIVE_INFINITY,
    shouldRetry: () => true,
    retryWait: async (retries) => {
      await new Promise((resolve) => setTimeout(resolve, backoff(retries)));
    },
    keepAlive: 15_000,
    connectionParams: async () => {
      const token = await api.accessToken().catch(() => null);
      return token ? { authorization: `Bearer ${token}` } : {};
    },
    on: {
      connecting: () => setState(everConnected ? "reconnecting" : "connecting"),
      opened: (s) => {
        socket = s as WebSocket;
      },
      connected: () => {
        everConnected = true;
        setState("connected");
      },
      closed: (event) => {
        socket = null;
        setState(everConnected ? "reconnecting" : "offline");
        // 4403: the token lapsed or the session ended (signed out elsewhere, a reused refresh
        // token). A refresh tells which: a new token for the next attempt, or, refused, the
        // end of the session (and of this client) instead of retrying with a dead token.
        const code = (event as { code?: number } | undefined)?.code;
        if (code === 4403 || code === 4401) void api.refresh().catch(() => undefined);
      },
    },
  });
  if (typeof window !== "undefined") {
    window.addEventListener("offline", () => setState("offline"));
  }

  return {
    get state() {
      return state;
    },
    onState(listener) {
      stateListeners.add(listener);
      return () => stateListeners.delete(listener);
    },
    resumable(query, variables, next, options = {}) {
      let stop: (() => void) | null = null;
      let stopped = false;
      let startedOnce = false;
      const start = () => {
        stop = client.subscribe(
          { query, variables: variables() },
          {
            next: (result) => {
              if (result.errors?.length) options.onError?.(fromGraphQLErrors(result.errors as never));
              else if (result.data) next(result.data as never);
            },
            error: (error) => {
              // A socket that closed is the reconnect's business; a refused subscription
              // (FORBIDDEN, NOT_FOUND) is the caller's.
              if (Array.isArray(error)) options.onError?.(fromGraphQLErrors(error));
            },
            complete: () => {},
          },
        );
      };
      const offClosed = client.on("closed", () => {
        // The library would resubscribe with the first variables; we do it with fresh ones.
        stop?.();
        stop = null;
      });
      const offConnected = client.on("connected", () => {
        if (stopped || stop) return;
        const resumed = startedOnce;
        start();
        startedOnce = true;
        if (resumed) options.onReconnect?.();
      });
      if (state === "connected") {
        start();
        startedOnce = true;
      }
      return () => {
        stopped = true;
        offClosed();
        offConnected();
        stop?.();
      };
    },
    renew(accessToken) {
      if (socket && socket.readyState === 1 /* OPEN */) {
        socket.send(JSON.stringify({ type: "ping", payload: { authorization: `Bearer ${accessToken}` } }));
      }
    },
    dispose() {
      client.dispose();
    },
  };
}

function defaultUrl(): string {
  const { protocol, host } = window.location;
  return `${protocol === "https:" ? "wss:" : "ws:"}//${host}/graphql`;
}
