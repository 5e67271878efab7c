import { describe, expect, it } from "vitest";
import { App, parsePath, pathOf, type Place } from "./app";
import type { ChannelEvent } from "./timeline";

const alice = { id: "u-alice", username: "alice", displayName: "Alice" };
const bob = { id: "u-bob", username: "bob", displayName: "Bob" };
const sent = (id: string, cursor: string, author = bob, body = `m${id}`): ChannelEvent => ({
  __typename: "MessageSent",
  cursor,
  message: { id, body, createdAt: `2026-01-01T00:00:0${id}Z`, editedAt: null, deleted: false, authorBlocked: false, sequence: 1, channelId: "c2", conversationId: null, author },
});

function signedInApp(place: Place): App {
  const app = new App();
  app.store.update((s) => ({ ...s, user: alice, place }));
  return app;
}
const deliver = (app: App, id: string, event: ChannelEvent) => (app as unknown as { onEvent(id: string, e: ChannelEvent): void }).onEvent(id, event);

describe("routes", () => {
  it("round-trip through the address bar", () => {
    const places: Place[] = [{ kind: "home" }, { kind: "channel", serverId: "s 1", channelId: "c/2" }, { kind: "conversation", conversationId: "d3" }];
    for (const place of places) expect(parsePath(pathOf(place))).toEqual(place);
    expect(parsePath("/nowhere/at/all")).toEqual({ kind: "home" });
  });
});

describe("unread badges from live events", () => {
  it("count others' new messages in a channel that is not open, once each, and mentions", () => {
    const app = signedInApp({ kind: "channel", serverId: "s1", channelId: "c1" });
    deliver(app, "c2", sent("1", "1"));
    deliver(app, "c2", sent("1", "1")); // replayed after a reconnect
    deliver(app, "c2", sent("2", "2", alice)); // the user's own
    deliver(app, "c2", sent("3", "3", bob, `hey <@${alice.id}>`));
    const rs = app.store.get().readStates.c2;
    expect(rs.unreadCount).toBe(2);
    expect(rs.mentionCount).toBe(1);
    expect(app.store.get().timelines.c2.messages).toHaveLength(3);
    expect(app.store.get().timelines.c2.eventCursor).toBe("3");
  });

  it("a message ends its author's typing line", () => {
    const app = signedInApp({ kind: "channel", serverId: "s1", channelId: "c1" });
    app.store.update((s) => ({ ...s, typing: { c2: [{ userId: bob.id, name: "Bob", expiresAt: Date.now() + 5000 }] } }));
    deliver(app, "c2", sent("1", "1"));
    expect(app.store.get().typing.c2).toEqual([]);
  });
});
