import { useEffect, useRef, useState } from "preact/hooks";
import { messageOf } from "../api/errors";
import type { BansQuery, Role } from "../api/generated";
import type { App, Member, Server } from "../state/app";

const ROLES: Role[] = ["ADMIN", "MODERATOR", "MEMBER", "GUEST"];

export function Settings({ app, server, members, myRole, onClose }: { app: App; server: Server; members: readonly Member[]; myRole?: Role; onClose: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const [invite, setInvite] = useState<string | null>(null);
  const [bans, setBans] = useState<NonNullable<BansQuery["server"]>["bans"]>([]);
  const isAdmin = myRole === "OWNER" || myRole === "ADMIN";
  // What each role may do is the server's to decide; these only hide what would be refused.
  const canModerate = isAdmin || myRole === "MODERATOR";
  const loadBans = () => (canModerate ? app.bans(server.id).then((s) => setBans(s?.bans ?? []), () => setBans([])) : Promise.resolve());
  const dialog = useRef<HTMLDivElement>(null);
  // Read during the first render, before the dialog's own autofocus moves it.
  const [opener] = useState(() => document.activeElement as HTMLElement | null);
  useEffect(() => {
    void loadBans();
    // Focus stays inside the dialog while it is open, and goes back where it was after.
    const keys = (e: KeyboardEvent) => {
      if (e.key === "Escape") onClose();
      if (e.key !== "Tab" || !dialog.current) return;
      const focusable = [...dialog.current.querySelectorAll<HTMLElement>("button, input, select, textarea")].filter((el) => !el.hasAttribute("disabled"));
      const [first, last] = [focusable[0], focusable[focusable.length - 1]];
      if (e.shiftKey && document.activeElement === first) {
        e.preventDefault();
        last?.focus();
      } else if (!e.shiftKey && document.activeElement === last) {
        e.preventDefault();
        first?.focus();
      }
    };
    addEventListener("keydown", keys);
    return () => {
      removeEventListener("keydown", keys);
      opener?.focus();
    };
  }, [server.id]);
  const act = (action: (form: FormData) => Promise<unknown>, reset = false) => async (event: Event) => {
    event.preventDefault();
    setError(null);
    const form = event.currentTarget as HTMLFormElement;
    try {
      await action(new FormData(form));
      if (reset) form.reset();
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const run = (action: () => Promise<unknown>) => () => action().catch((e) => setError(messageOf(e)));
  const str = (f: FormData, k: string) => String(f.get(k) ?? "").trim();
  const num = (f: FormData, k: string) => (str(f, k) ? Number(str(f, k)) : undefined);

  return (
    <div class="dialog-backdrop">
      <div class="dialog" role="dialog" aria-modal="true" aria-labelledby="settings-title" ref={dialog}>
        <header>
          <h2 id="settings-title">Settings of {server.name}</h2>
          <button onClick={onClose} aria-label="Close settings" autoFocus>
            Close
          </button>
        </header>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {isAdmin && (
          <form aria-label="Rename server" onSubmit={act((f) => app.renameServer(server.id, str(f, "name")))}>
            <label>
              Server name
              <input name="name" defaultValue={server.name} required />
            </label>
            <button type="submit">Rename</button>
          </form>
        )}
        <h3>Invites</h3>
        <form
          aria-label="Create invite"
          onSubmit={act(async (f) => {
            const created = await app.createInvite(server.id, num(f, "maxUses"), num(f, "expires") ? num(f, "expires")! * 3600 : undefined);
            setInvite(created.code);
          })}
        >
          <label>
            Most uses
            <input name="maxUses" type="number" min={1} />
          </label>
          <label>
            Expires in hours
            <input name="expires" type="number" min={1} />
          </label>
          <button type="submit" class="primary">
            Create invite
          </button>
        </form>
        {invite && (
          <p>
            Invite code: <output data-testid="invite-code">{invite}</output>
          </p>
        )}
        <form aria-label="Revoke invite" onSubmit={act((f) => app.revokeInvite(str(f, "code")), true)}>
          <label>
            Invite code to revoke
            <input name="code" required />
          </label>
          <button type="submit">Revoke</button>
        </form>
        {isAdmin && (
          <>
            <h3>Channels</h3>
            <ul class="plain">
              {server.channels.map((c) => (
                <li key={c.id}>
                  <form aria-label={`Channel ${c.name}`} onSubmit={act((f) => app.renameChannel(c.id, str(f, "name")))}>
                    <input name="name" defaultValue={c.name} aria-label={`Name of channel ${c.name}`} required />
                    <button type="submit" class="small">
                      Rename
                    </button>
                    {!c.archived && (
                      <button type="button" class="small" onClick={run(() => app.archiveChannel(c.id))}>
                        Archive
                      </button>
                    )}
                  </form>
                </li>
              ))}
            </ul>
            <form aria-label="Create channel" onSubmit={act((f) => app.createChannel(server.id, str(f, "name"), f.get("private") === "on"), true)}>
              <label>
                New channel name
                <input name="name" required />
              </label>
              <label class="inline">
                <input name="private" type="checkbox" /> Private
              </label>
              <button type="submit" class="primary">
                Create channel
              </button>
            </form>
          </>
        )}
        {canModerate && (
          <>
        <h3>Members</h3>
        <ul class="plain">
          {members
            .filter((m) => m.role !== "OWNER")
            .map((m) => (
              <li key={m.user.id}>
                <span>{m.displayLabel}</span>{" "}
                {isAdmin && (
                  <select aria-label={`Role of ${m.user.displayName}`} value={m.role} onChange={(e) => run(() => app.setRole(server.id, m.user.id, (e.currentTarget as HTMLSelectElement).value as Role))()}>
                    {ROLES.map((r) => (
                      <option value={r}>{r.toLowerCase()}</option>
                    ))}
                  </select>
                )}{" "}
                <button class="small" onClick={run(() => app.removeMember(server.id, m.user.id))}>
                  Remove
                </button>
                <button class="small danger" onClick={run(() => app.ban(server.id, m.user.id).then(loadBans))}>
                  Ban
                </button>
              </li>
            ))}
        </ul>
        <h3>Bans</h3>
        {bans.length === 0 ? (
          <p class="muted">Nobody is banned.</p>
        ) : (
          <ul class="plain">
            {bans.map((b) => (
              <li key={b.userId}>
                {b.userId} <span class="muted">by {b.bannedBy.displayName}{b.reason ? `: ${b.reason}` : ""}</span>{" "}
                <button class="small" onClick={run(() => app.unban(server.id, b.userId).then(loadBans))}>
                  Unban
                </button>
              </li>
            ))}
          </ul>
        )}
          </>
        )}
        {myRole !== "OWNER" && (
          <button class="danger" onClick={run(() => app.leave(server.id).then(onClose))}>
            Leave server
          </button>
        )}
      </div>
    </div>
  );
}
