import { useRef, useState } from "preact/hooks";
import { placeId, type App, type AppState, type Member, type Place } from "../state/app";
import { useStore } from "../state/store";
import { Home } from "./Home";
import { Settings } from "./Settings";
import { Timeline } from "./Timeline";

const CONNECTION_TEXT: Record<AppState["connection"], string> = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

export function Shell({ app, theme, onToggleTheme }: { app: App; theme: string; onToggleTheme: () => void }) {
  const s = useStore(app.store, (st) => st);
  const [menuOpen, setMenuOpen] = useState(false);
  const [settingsOpen, setSettingsOpen] = useState(false);
  // The settings button can be rendered anew while the dialog is open (a live update of the
  // server), so focus goes back to whichever element holds the ref once the dialog is gone.
  const settingsButton = useRef<HTMLButtonElement>(null);
  const closeSettings = () => {
    setSettingsOpen(false);
    requestAnimationFrame(() => settingsButton.current?.focus());
  };
  const place = s.place;
  const server = place.kind === "channel" ? s.servers.find((x) => x.id === place.serverId) : undefined;
  const id = placeId(s.place);
  const members = server ? (s.members[server.id] ?? []) : [];
  const myRole = members.find((m) => m.user.id === s.user?.id)?.role;
  const canAdmin = myRole === "OWNER" || myRole === "ADMIN" || myRole === "MODERATOR";
  const go = (place: Place) => {
    setMenuOpen(false);
    void app.go(place);
  };
  const conversationName = (c: AppState["conversations"][number]) =>
    c.participants.filter((p) => p.id !== s.user?.id).map((p) => p.displayName).join(", ") || "Just you";
  const title =
    s.place.kind === "channel"
      ? `# ${server?.channels.find((c) => c.id === id)?.name ?? ""}`
      : s.place.kind === "conversation"
        ? conversationName(s.conversations.find((c) => c.id === id) ?? { participants: [] } as never)
        : "Welcome";

  return (
    <div class={`shell ${menuOpen ? "menu-open" : ""}`}>
      <header class="topbar">
        <button class="menu-button" aria-expanded={menuOpen} aria-controls="sidebar" onClick={() => setMenuOpen(!menuOpen)}>
          Menu
        </button>
        <h1 class="title">{title}</h1>
        <span class={`connection ${s.connection}`} role="status" aria-live="polite" data-testid="connection">
          {CONNECTION_TEXT[s.connection]}
        </span>
        <button onClick={onToggleTheme} aria-label={`Switch to ${theme === "dark" ? "light" : "dark"} theme`}>
          {theme === "dark" ? "Light" : "Dark"}
        </button>
      </header>
      {s.notice && (
        <div class="notice" role="alert">
          <span>{s.notice}</span>
          <button onClick={() => app.dismissNotice()} aria-label="Dismiss">
            ×
          </button>
        </div>
      )}
      <nav id="sidebar" class="sidebar" aria-label="Servers and channels">
        <section>
          <h2>Servers</h2>
          <ul class="servers">
            {s.servers.map((sv) => (
              <li key={sv.id}>
                <button
                  aria-current={server?.id === sv.id ? "true" : undefined}
                  onClick={() => {
                    setMenuOpen(false);
                    void app.openServer(sv.id);
                  }}
                >
                  {sv.name}
                  <Badge count={sv.channels.reduce((n, c) => n + (s.readStates[c.id]?.unreadCount ?? 0), 0)} label={`unread in ${sv.name}`} />
                </button>
              </li>
            ))}
            <li>
              <button onClick={() => go({ kind: "home" })} class="add" aria-current={s.place.kind === "home" ? "true" : undefined}>
                + Create or join
              </button>
            </li>
          </ul>
        </section>
        {server && (
          <section>
            <h2>
              Channels of {server.name}
              <button class="small" ref={settingsButton} onClick={() => setSettingsOpen(true)} aria-label={`Settings of ${server.name}`}>
                {canAdmin ? "Settings" : "Server"}
              </button>
            </h2>
            <ul class="channels">
              {server.channels.map((c) => {
                const rs = s.readStates[c.id];
                return (
                  <li key={c.id}>
                    <button
                      aria-current={id === c.id ? "page" : undefined}
                      class={rs?.unreadCount ? "unread" : ""}
                      onClick={() => go({ kind: "channel", serverId: server.id, channelId: c.id })}
                      data-channel={c.name}
                    >
                      # {c.name}
                      {c.archived && <span class="muted"> (archived)</span>}
                      {!!rs?.mentionCount && <span class="badge mention" aria-label={`${rs.mentionCount} mentions`}>@{rs.mentionCount}</span>}
                      <Badge count={rs?.unreadCount ?? 0} label="unread messages" />
                    </button>
                  </li>
                );
              })}
            </ul>
          </section>
        )}
        <section>
          <h2>Direct messages</h2>
          <ul class="channels">
            {s.conversations.map((c) => (
              <li key={c.id}>
                <button aria-current={id === c.id ? "page" : undefined} onClick={() => go({ kind: "conversation", conversationId: c.id })}>
                  {conversationName(c)}
                  <Badge count={s.readStates[c.id]?.unreadCount ?? 0} label="unread messages" />
                </button>
              </li>
            ))}
          </ul>
        </section>
        <section class="me">
          <p>
            Signed in as <strong>{s.user?.displayName}</strong> <span class="muted">@{s.user?.username}</span>
          </p>
          <label>
            Status
            <select
              value={s.ownPresence}
              onChange={(e) => app.setPresence((e.currentTarget as HTMLSelectElement).value as "ONLINE" | "AWAY").catch((er) => app.notify(er))}
            >
              <option value="ONLINE">Online</option>
              <option value="AWAY">Away</option>
            </select>
          </label>
          <button onClick={() => void app.signOut()}>Sign out</button>
        </section>
      </nav>
      <main class="main">
        {s.place.kind === "home" || !id ? <Home app={app} /> : <Timeline app={app} id={id} key={id} />}
      </main>
      {server && <MemberList app={app} members={members} presence={s.presence} me={s.user?.id} />}
      {settingsOpen && server && <Settings app={app} server={server} members={members} myRole={myRole} onClose={closeSettings} />}
    </div>
  );
}

function Badge({ count, label }: { count: number; label: string }) {
  if (!count) return null;
  return (
    <span class="badge" aria-label={`${count} ${label}`} data-testid="unread-badge">
      {count > 99 ? "99+" : count}
    </span>
  );
}

const ROLE_ORDER = ["OWNER", "ADMIN", "MODERATOR", "MEMBER", "GUEST"];

function MemberList({ app, members, presence, me }: { app: App; members: readonly Member[]; presence: AppState["presence"]; me?: string }) {
  const [picked, setPicked] = useState<string[]>([]);
  const sorted = [...members].sort((a, b) => ROLE_ORDER.indexOf(a.role) - ROLE_ORDER.indexOf(b.role));
  const open = (ids: string[]) => app.openConversation(ids).then(() => setPicked([]), (e) => app.notify(e));
  return (
    <aside class="members" aria-label="Members">
      <h2>Members ({members.length})</h2>
      <ul>
        {sorted.map((m) => {
          // The API reports presence changes only: until one is seen, it is unknown.
          const status: string = m.user.id === me ? app.store.get().ownPresence : (presence[m.user.id] ?? "UNKNOWN");
          return (
            <li key={m.user.id} data-member={m.user.username}>
              <span class={`dot ${status.toLowerCase()}`} aria-hidden="true" title={status === "UNKNOWN" ? "not known yet" : status.toLowerCase()} />
              <span class="name">{m.displayLabel}</span>
              <span class="sr-only">{status === "UNKNOWN" ? "" : `, ${status.toLowerCase()}`}</span>
              <span class="role" data-presence={status}>
                {m.role.toLowerCase()}
              </span>
              {m.user.id !== me && (
                <span class="member-actions">
                  <button class="small" onClick={() => void open([m.user.id])} aria-label={`Message ${m.user.displayName}`}>
                    Message
                  </button>
                  <input
                    type="checkbox"
                    aria-label={`Add ${m.user.displayName} to a group`}
                    checked={picked.includes(m.user.id)}
                    onChange={(e) => setPicked((p) => ((e.currentTarget as HTMLInputElement).checked ? [...p, m.user.id] : p.filter((x) => x !== m.user.id)))}
                  />
                </span>
              )}
            </li>
          );
        })}
      </ul>
      {picked.length > 1 && (
        <button class="primary" onClick={() => void open(picked)}>
          Start a group with {picked.length}
        </button>
      )}
    </aside>
  );
}

