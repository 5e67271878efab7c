import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { messageOf } from "../api/errors";
import type { App } from "../state/app";
import { useStore } from "../state/store";
import { segments, type Person } from "../state/mentions";
import { emptyTimeline, type Message } from "../state/timeline";
import { activeTypists, typingLine } from "../state/typing";
import { visibleWindow } from "../state/virtual";

const ESTIMATE = 56;

export function Timeline({ app, id }: { app: App; id: string }) {
  const timeline = useStore(app.store, (s) => s.timelines[id] ?? emptyTimeline);
  const me = useStore(app.store, (s) => s.user?.id);
  const typists = useStore(app.store, (s) => s.typing[id] ?? []);
  const members = useStore(app.store, (s) => (s.place.kind === "channel" ? s.members[s.place.serverId] : s.conversations));
  const people = useMemo(() => new Map(app.people().map((p) => [p.id, p])), [members]);
  const [, setTick] = useState(0);
  const [now, setNow] = useState(Date.now());
  const scroller = useRef<HTMLDivElement>(null);
  const heights = useRef(new Map<string, number>());
  const [view, setView] = useState({ top: 0, height: 600 });
  const stickToBottom = useRef(true);
  const loadingOlder = useRef(false);
  const before = useRef<{ first?: string; scrollHeight: number }>({ scrollHeight: 0 });

  const messages = timeline.messages;
  // Every render: measurements land in the ref between renders (a thousand lookups is nothing).
  const sizes = messages.map((m) => heights.current.get(m.id) ?? ESTIMATE);
  const win = visibleWindow(sizes, view.top, view.height);

  // Typing lines expire by the clock.
  useEffect(() => {
    if (typists.length === 0) return;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [typists.length]);

  // Measure what was rendered; keep the view at the bottom, or where it was after older
  // messages were put in above.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    let changed = false;
    for (const row of el.querySelectorAll<HTMLElement>("[data-id]")) {
      const h = row.offsetHeight;
      const key = row.dataset.id!;
      if (h && heights.current.get(key) !== h) {
        heights.current.set(key, h);
        changed = true;
      }
    }
    const first = messages[0]?.id;
    if (before.current.first && first !== before.current.first && !stickToBottom.current) {
      el.scrollTop += el.scrollHeight - before.current.scrollHeight;
    } else if (stickToBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
    before.current = { first, scrollHeight: el.scrollHeight };
    if (changed) setTick((t) => t + 1);
  });

  useEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const resize = new ResizeObserver(() => setView({ top: el.scrollTop, height: el.clientHeight }));
    resize.observe(el);
    return () => resize.disconnect();
  }, []);

  const onScroll = () => {
    const el = scroller.current!;
    stickToBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    before.current = { first: messages[0]?.id, scrollHeight: el.scrollHeight };
    setView({ top: el.scrollTop, height: el.clientHeight });
    if (el.scrollTop < 300 && timeline.hasOlder && !loadingOlder.current && timeline.loaded) {
      loadingOlder.current = true;
      app
        .loadOlder(id)
        .catch((e) => app.notify(e))
        .finally(() => {
          loadingOlder.current = false;
        });
    }
    if (stickToBottom.current) app.markOpenRead();
  };

  const line = typingLine(activeTypists(typists, now));
  return (
    <section class="timeline" aria-label="Messages">
      <div class="scroller" ref={scroller} onScroll={onScroll} tabIndex={0} role="log" aria-label="Message history" data-testid="scroller">
        {/* Pushed to the bottom while the history is shorter than the view, as chats read. */}
        <div class="bottom">
          {timeline.loaded && !timeline.hasOlder && <p class="start muted">This is the start of the conversation.</p>}
          <div style={{ height: `${win.total}px`, position: "relative" }}>
            <ol class="messages" style={{ transform: `translateY(${win.offsetTop}px)` }}>
              {messages.slice(win.start, win.end).map((m) => (
                <Row key={m.id} app={app} placeId={id} message={m} mine={m.author.id === me} people={people} />
              ))}
            </ol>
          </div>
        </div>
      </div>
      <p class="typing" aria-live="polite" data-testid="typing">
        {line}
      </p>
      <Composer app={app} key={id} />
    </section>
  );
}

function time(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function Row({ app, placeId, message, mine, people }: { app: App; placeId: string; message: Message; mine: boolean; people: ReadonlyMap<string, Person> }) {
  const [editing, setEditing] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const save = async (event: Event) => {
    event.preventDefault();
    const body = String(new FormData(event.currentTarget as HTMLFormElement).get("body") ?? "").trim();
    if (!body) return;
    try {
      await app.edit(placeId, message.id, body);
      setEditing(false);
      setError(null);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const remove = async () => {
    if (!confirm("Delete this message?")) return;
    try {
      await app.remove(placeId, message.id);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  return (
    <li class="message" data-id={message.id} data-testid="message">
      <div class="meta">
        <strong>{message.author.displayName}</strong> <time dateTime={message.createdAt}>{time(message.createdAt)}</time>
        {message.editedAt && !message.deleted && <span class="muted"> (edited)</span>}
      </div>
      {message.deleted ? (
        <p class="body muted deleted">This message was deleted.</p>
      ) : message.authorBlocked ? (
        <p class="body muted blocked">A message from someone you blocked.</p>
      ) : editing ? (
        <form class="edit" onSubmit={save} aria-label="Edit message">
          <textarea
            name="body"
            aria-label="Edited message"
            defaultValue={message.body}
            autoFocus
            onKeyDown={(e) => {
              if (e.key === "Escape") setEditing(false);
              if (e.key === "Enter" && !e.shiftKey) {
                e.preventDefault();
                (e.currentTarget.form as HTMLFormElement).requestSubmit();
              }
            }}
          />
          <button type="submit" class="small primary">
            Save
          </button>
          <button type="button" class="small" onClick={() => setEditing(false)}>
            Cancel
          </button>
        </form>
      ) : (
        // Text, never markup: Preact escapes it.
        <p class="body">
          {segments(message.body, people).map((part) =>
            "mention" in part ? (
              <span class="mention" data-user={part.mention}>
                {part.name}
              </span>
            ) : (
              part.text
            ),
          )}
        </p>
      )}
      {mine && !message.deleted && !editing && (
        <div class="actions">
          <button class="small" onClick={() => setEditing(true)} aria-label="Edit message">
            Edit
          </button>
          <button class="small" onClick={() => void remove()} aria-label="Delete message">
            Delete
          </button>
        </div>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </li>
  );
}

function Composer({ app }: { app: App }) {
  const [text, setText] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [sending, setSending] = useState(false);
  const send = async () => {
    const body = text.trim();
    if (!body || sending) return;
    setSending(true);
    try {
      await app.send(body);
      setText("");
      setError(null);
    } catch (e) {
      // The text stays where it was, to retry.
      setError(messageOf(e));
    } finally {
      setSending(false);
    }
  };
  return (
    <form
      class="composer"
      aria-label="Send a message"
      onSubmit={(e) => {
        e.preventDefault();
        void send();
      }}
    >
      <textarea
        aria-label="Message"
        placeholder="Write a message"
        value={text}
        rows={1}
        onInput={(e) => {
          setText((e.currentTarget as HTMLTextAreaElement).value);
          app.typing();
        }}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey) {
            e.preventDefault();
            void send();
          }
        }}
      />
      <button type="submit" class="primary" disabled={sending}>
        Send
      </button>
      {error && (
        <p class="error" role="alert">
          {error}{" "}
          <button type="button" class="small" onClick={() => void send()}>
            Retry
          </button>
        </p>
      )}
    </form>
  );
}
