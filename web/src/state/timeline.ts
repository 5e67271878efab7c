// One channel's or conversation's messages, as pure functions over immutable state: pages of
// history and live events merge into one list, oldest first, each message once, the copy with
// the highest `sequence` winning (an edit that arrives before the send it edits, or the same
// event seen twice after a reconnect, changes nothing). The subscription's cursor is kept to
// resume after a reconnect (`channelEvents(after:)`).
//
// Extension point: replies, threads, reactions and pins arrive as more fields on the message
// (operations.ts's MessageFields) and more event types; `applyEvent` is the one place that
// learns each new event.

import type { ChannelEventFieldsFragment, MessageFieldsFragment } from "../api/generated";

export type Message = MessageFieldsFragment;

export interface Timeline {
  /** Oldest first. */
  messages: readonly Message[];
  /** The newest channel event seen: where a resumed subscription starts. */
  eventCursor: string | null;
  /** The page cursor of the oldest message loaded, to page further back. */
  olderCursor: string | null;
  hasOlder: boolean;
  /** A first page has been read. */
  loaded: boolean;
}

export const emptyTimeline: Timeline = { messages: [], eventCursor: null, olderCursor: null, hasOlder: true, loaded: false };

function before(a: Message, b: Message): boolean {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt;
  return a.id < b.id;
}

/** `messages` with `incoming` merged in: one copy per id, the highest sequence, in order. */
export function mergeMessages(messages: readonly Message[], incoming: readonly Message[]): readonly Message[] {
  if (incoming.length === 0) return messages;
  const byId = new Map<string, Message>();
  for (const m of messages) byId.set(m.id, m);
  let changed = false;
  for (const m of incoming) {
    const known = byId.get(m.id);
    if (!known || m.sequence > known.sequence) {
      byId.set(m.id, m);
      changed = true;
    }
  }
  if (!changed) return messages;
  return [...byId.values()].sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0));
}

export interface HistoryPage {
  edges: ReadonlyArray<{ cursor: string; node: Message }>;
  pageInfo: { hasPreviousPage: boolean; startCursor: string | null };
}

/** A page of history: the newest one (`older` false) or one further back. */
export function applyPage(timeline: Timeline, page: HistoryPage, older: boolean): Timeline {
  const messages = mergeMessages(timeline.messages, page.edges.map((e) => e.node));
  const reachesFurther = older || !timeline.loaded;
  return {
    ...timeline,
    messages,
    loaded: true,
    olderCursor: reachesFurther ? (page.pageInfo.startCursor ?? timeline.olderCursor) : timeline.olderCursor,
    hasOlder: reachesFurther ? page.pageInfo.hasPreviousPage : timeline.hasOlder,
  };
}

export type ChannelEvent = ChannelEventFieldsFragment;

/** A live event (or one replayed after a reconnect). */
export function applyEvent(timeline: Timeline, event: ChannelEvent): Timeline {
  const eventCursor = later(timeline.eventCursor, event.cursor);
  switch (event.__typename) {
    case "MessageSent":
    case "MessageEdited":
      return { ...timeline, eventCursor, messages: mergeMessages(timeline.messages, [event.message]) };
    case "MessageDeleted": {
      const messages = timeline.messages.map((m) =>
        m.id === event.messageId && !m.deleted ? { ...m, deleted: true, body: "", sequence: m.sequence + 1 } : m,
      );
      return { ...timeline, eventCursor, messages };
    }
    default:
      // An event type this client does not know yet: keep the cursor, so resuming skips it.
      return { ...timeline, eventCursor };
  }
}

/** The message the user sent or changed, as the mutation answered it. */
export function applyOwn(timeline: Timeline, message: Message): Timeline {
  return { ...timeline, messages: mergeMessages(timeline.messages, [message]) };
}

/** Cursors are decimal positions: the larger one is the later. */
export function later(a: string | null, b: string): string {
  if (a === null) return b;
  const [x, y] = [Number(a), Number(b)];
  return Number.isFinite(x) && Number.isFinite(y) && x > y ? a : b;
}

/** Whether a body mentions the user (`<@userId>`), as the server counts mentions. */
export function mentions(body: string, userId: string): boolean {
  return body.includes(`<@${userId}>`);
}
