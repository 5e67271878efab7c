import { describe, expect, it, vi } from "vitest";
import type { Client, ClientOptions } from "graphql-ws";
import { backoff, connectRealtime } from "./realtime";

/** A stand-in for graphql-ws's client: records subscriptions, and plays connection events. */
function fakeClient() {
  const listeners = new Map<string, Set<(...args: unknown[]) => void>>();
  let options!: ClientOptions;
  const subscriptions: Array<{ variables: unknown; active: boolean; next: (v: unknown) => void }> = [];
  const create = ((opts: ClientOptions) => {
    options = opts;
    const client = {
      subscribe(payload: { variables?: unknown }, sink: { next: (v: unknown) => void }) {
        const entry = { variables: payload.variables, active: true, next: sink.next };
        subscriptions.push(entry);
        return () => {
          entry.active = false;
        };
      },
      on(event: string, listener: (...args: unknown[]) => void) {
        if (!listeners.has(event)) listeners.set(event, new Set());
        listeners.get(event)!.add(listener);
        return () => listeners.get(event)!.delete(listener);
      },
      dispose() {},
      terminate() {},
      iterate() {
        throw new Error("unused");
      },
    };
    return client as unknown as Client;
  }) as never;
  const emit = (event: "connecting" | "connected" | "closed", arg?: unknown) => {
    const hook = (options.on as Record<string, ((a?: unknown) => void) | undefined>)[event];
    hook?.(arg);
    for (const l of listeners.get(event) ?? []) l(arg);
  };
  return { create, emit, subscriptions };
}

describe("realtime", () => {
  it("starts subscriptions again after a reconnect with the variables of that moment", () => {
    const fake = fakeClient();
    const api = { accessToken: async () => "t", refresh: vi.fn(async () => true) };
    const rt = connectRealtime(api, "ws://x/graphql", fake.create);
    const states: string[] = [];
    rt.onState((s) => states.push(s));
    let cursor: string | null = null;
    const onReconnect = vi.fn();
    rt.resumable("subscription", () => ({ after: cursor }), () => {}, { onReconnect });
    fake.emit("connecting");
    fake.emit("connected");
    expect(fake.subscriptions).toHaveLength(1);
    expect(fake.subscriptions[0].variables).toEqual({ after: null });
    cursor = "42";
    fake.emit("closed", { code: 1006 });
    expect(fake.subscriptions[0].active).toBe(false);
    fake.emit("connecting");
    fake.emit("connected");
    expect(fake.subscriptions).toHaveLength(2);
    expect(fake.subscriptions[1].variables).toEqual({ after: "42" });
    expect(onReconnect).toHaveBeenCalledTimes(1);
    expect(states).toEqual(["connected", "reconnecting", "connected"]);
    expect(api.refresh).not.toHaveBeenCalled();
  });

  it("asks for a new token when the server closes for an ended session (4403)", () => {
    const fake = fakeClient();
    const api = { accessToken: async () => "t", refresh: vi.fn(async () => false) };
    connectRealtime(api, "ws://x/graphql", fake.create);
    fake.emit("closed", { code: 4403 });
    expect(api.refresh).toHaveBeenCalledTimes(1);
  });

  it("a stopped subscription is not started again", () => {
    const fake = fakeClient();
    const rt = connectRealtime({ accessToken: async () => "t", refresh: async () => true }, "ws://x/graphql", fake.create);
    fake.emit("connected");
    const stop = rt.resumable("subscription", () => ({}), () => {});
    stop();
    fake.emit("closed", { code: 1006 });
    fake.emit("connected");
    expect(fake.subscriptions.filter((s) => s.active)).toHaveLength(0);
  });

  it("backs off from a quarter second to about four", () => {
    expect(backoff(0)).toBeGreaterThanOrEqual(250);
    expect(backoff(0)).toBeLessThan(500);
    expect(backoff(10)).toBeGreaterThanOrEqual(4000);
    expect(backoff(10)).toBeLessThan(4250);
  });
});
