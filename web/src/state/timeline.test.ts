import { describe, expect, it } from "vitest";
import { applyEvent, applyOwn, applyPage, emptyTimeline, later, mergeMessages, type Message } from "./timeline";

const author = { id: "u1", username: "alice", displayName: "Alice" };
function msg(id: string, at: number, body = `m${id}`, sequence = 1): Message {
  const createdAt = new Date(Date.UTC(2026, 0, 1, 0, 0, at)).toISOString();
  return { id, body, createdAt, editedAt: null, deleted: false, authorBlocked: false, sequence, channelId: "c1", conversationId: null, author };
}
const page = (ms: Message[], hasPreviousPage = false) => ({
  edges: ms.map((m) => ({ cursor: m.id, node: m })),
  pageInfo: { hasPreviousPage, startCursor: ms[0]?.id ?? null },
});

describe("timeline", () => {
  it("merges pages and events oldest first, each message once", () => {
    let t = applyPage(emptyTimeline, page([msg("3", 3), msg("4", 4)], true), false);
    expect(t.hasOlder).toBe(true);
    expect(t.olderCursor).toBe("3");
    t = applyPage(t, page([msg("1", 1), msg("2", 2)]), true);
    expect(t.hasOlder).toBe(false);
    t = applyEvent(t, { __typename: "MessageSent", cursor: "10", message: msg("5", 5) });
    t = applyEvent(t, { __typename: "MessageSent", cursor: "10", message: msg("5", 5) });
    expect(t.messages.map((m) => m.id)).toEqual(["1", "2", "3", "4", "5"]);
    expect(t.eventCursor).toBe("10");
  });

  it("keeps the copy with the highest sequence, whatever the order of arrival", () => {
    let t = applyEvent(emptyTimeline, { __typename: "MessageEdited", cursor: "2", message: msg("1", 1, "edited", 2) });
    t = applyEvent(t, { __typename: "MessageSent", cursor: "1", message: msg("1", 1, "original", 1) });
    expect(t.messages).toHaveLength(1);
    expect(t.messages[0].body).toBe("edited");
    // A cursor never goes back: a replayed older event does not rewind the resume point.
    expect(t.eventCursor).toBe("2");
  });

  it("a refreshed newest page does not forget the further-back cursor", () => {
    let t = applyPage(emptyTimeline, page([msg("3", 3)], true), false);
    t = applyPage(t, page([msg("1", 1), msg("2", 2)], false), true);
    t = applyPage(t, page([msg("3", 3), msg("4", 4)], true), false);
    expect(t.hasOlder).toBe(false);
    expect(t.messages.map((m) => m.id)).toEqual(["1", "2", "3", "4"]);
  });

  it("deletes to an empty body and ignores unknown event types", () => {
    let t = applyOwn(emptyTimeline, msg("1", 1));
    t = applyEvent(t, { __typename: "MessageDeleted", cursor: "5", messageId: "1" });
    expect(t.messages[0]).toMatchObject({ deleted: true, body: "" });
    const unknown = { __typename: "ReactionAdded", cursor: "6" } as never;
    const after = applyEvent(t, unknown);
    expect(after.messages).toBe(t.messages);
    expect(after.eventCursor).toBe("6");
  });

  it("mergeMessages returns the same array when nothing changes", () => {
    const ms = [msg("1", 1)];
    expect(mergeMessages(ms, [msg("1", 1)])).toBe(ms);
    expect(later("9", "10")).toBe("10");
    expect(later("10", "9")).toBe("10");
  });
});
