// The application's state and everything that changes it: the API calls, the subscriptions
// and the routing. Components read the state and call these actions; nothing else talks to
// the server.

import { GraphQLClient } from "../api/client";
import { ApiError, messageOf } from "../api/errors";
import * as Op from "../api/operations";
import type * as G from "../api/generated";
import { connectRealtime, type ConnectionState, type Realtime } from "../api/realtime";
import { Session, expiresAt } from "../api/session";
import { encodeMentions, type Person } from "./mentions";
import { Store } from "./store";
import { applyEvent, applyOwn, applyPage, emptyTimeline, mentions, type ChannelEvent, type Timeline } from "./timeline";
import { applyTyping, type Typist } from "./typing";

export type Server = G.ServersQuery["servers"][number];
export type Channel = Server["channels"][number];
export type Conversation = G.ConversationsQuery["conversations"][number];
export type Member = NonNullable<G.MembersQuery["server"]>["members"]["edges"][number]["node"];
export type User = G.UserFieldsFragment;
export type Presence = G.PresenceStatus;
export type ReadState = G.ReadStateFieldsFragment;

export type Place =
  | { kind: "home" }
  | { kind: "channel"; serverId: string; channelId: string }
  | { kind: "conversation"; conversationId: string };

export interface AppState {
  user: User | null;
  booting: boolean;
  connection: ConnectionState;
  servers: readonly Server[];
  conversations: readonly Conversation[];
  place: Place;
  /** Per channel or conversation id. */
  timelines: Readonly<Record<string, Timeline>>;
  readStates: Readonly<Record<string, ReadState>>;
  typing: Readonly<Record<string, readonly Typist[]>>;
  presence: Readonly<Record<string, Presence>>;
  members: Readonly<Record<string, readonly Member[]>>;
  ownPresence: "ONLINE" | "AWAY";
  notice: string | null;
}

// 40 messages of the fields the client reads cost about 800, inside the API's default limit of 1000.
const PAGE = 40;

export function placeId(place: Place): string | null {
  return place.kind === "channel" ? place.channelId : place.kind === "conversation" ? place.conversationId : null;
}

export function parsePath(path: string): Place {
  const channel = /^\/channels\/([^/]+)\/([^/]+)$/.exec(path);
  if (channel) return { kind: "channel", serverId: decodeURIComponent(channel[1]), channelId: decodeURIComponent(channel[2]) };
  const dm = /^\/dm\/([^/]+)$/.exec(path);
  if (dm) return { kind: "conversation", conversationId: decodeURIComponent(dm[1]) };
  return { kind: "home" };
}

export function pathOf(place: Place): string {
  switch (place.kind) {
    case "channel":
      return `/channels/${encodeURIComponent(place.serverId)}/${encodeURIComponent(place.channelId)}`;
    case "conversation":
      return `/dm/${encodeURIComponent(place.conversationId)}`;
    default:
      return "/";
  }
}

export class App {
  readonly session = new Session(typeof sessionStorage === "undefined" ? null : sessionStorage);
  readonly api = new GraphQLClient(this.session);
  readonly store = new Store<AppState>({
    user: this.session.current?.user ?? null,
    booting: true,
    connection: "connecting",
    servers: [],
    conversations: [],
    place: typeof location === "undefined" ? { kind: "home" } : parsePath(location.pathname),
    timelines: {},
    readStates: {},
    typing: {},
    presence: {},
    members: {},
    ownPresence: "ONLINE",
    notice: null,
  });
  private realtime: Realtime | null = null;
  /** Live channel and conversation subscriptions, by id. */
  private feeds = new Map<string, () => void>();
  private placeSubs: Array<() => void> = [];
  private lastTyping = 0;
  private readMarks = new Map<string, string>();
  /** Read markers on their way: a re-read of the lists waits for them, or shows stale badges. */
  private marking = new Set<Promise<unknown>>();

  constructor() {
    this.session.onChange(() => {
      const tokens = this.session.current;
      if (!tokens) this.signedOut();
      else {
        this.realtime?.renew(tokens.accessToken);
        this.scheduleRefresh(tokens.accessToken);
      }
    });
    if (typeof window !== "undefined") {
      window.addEventListener("popstate", () => this.go(parsePath(location.pathname), false));
      document.addEventListener("visibilitychange", () => this.markOpenRead());
    }
  }

  private refreshTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Refreshes a minute before the access token lapses, so the WebSocket (which the server
   * closes when its token lapses) gets the fresh one in a ping and never drops.
   */
  private scheduleRefresh(accessToken: string): void {
    clearTimeout(this.refreshTimer);
    const exp = expiresAt(accessToken);
    if (!exp) return;
    const lead = Math.min(60, (exp - Date.now() / 1000) / 4);
    const wait = Math.max(1000, (exp - lead) * 1000 - Date.now());
    this.refreshTimer = setTimeout(() => void this.api.refresh().catch(() => undefined), wait);
  }

  private set(change: Partial<AppState> | ((s: AppState) => Partial<AppState>)): void {
    this.store.update((s) => ({ ...s, ...(typeof change === "function" ? change(s) : change) }));
  }

  notify(error: unknown): void {
    this.set({ notice: messageOf(error) });
  }

  dismissNotice(): void {
    this.set({ notice: null });
  }

  // --- session -----------------------------------------------------------------------------

  async boot(): Promise<void> {
    if (this.session.current) {
      try {
        await this.started();
      } catch (error) {
        if (!(error instanceof ApiError && error.code === "UNAUTHENTICATED")) this.notify(error);
      }
    }
    this.set({ booting: false });
  }

  async register(username: string, password: string, displayName: string): Promise<void> {
    const data = await this.api.request<G.RegisterMutation, G.RegisterMutationVariables>(Op.Register, {
      input: { username, password, displayName: displayName || undefined },
    });
    this.session.set(data.register);
    await this.started();
  }

  async signIn(username: string, password: string): Promise<void> {
    const data = await this.api.request<G.LoginMutation, G.LoginMutationVariables>(Op.Login, { input: { username, password } });
    this.session.set(data.login);
    await this.started();
  }

  async signOut(): Promise<void> {
    await this.api.request<G.LogoutMutation>(Op.Logout).catch(() => undefined);
    this.session.clear();
  }

  private signedOut(): void {
    clearTimeout(this.refreshTimer);
    clearTimeout(this.settleTimer);
    clearTimeout(this.listsTimer);
    this.stopFeeds();
    this.realtime?.dispose();
    this.realtime = null;
    this.set({ user: null, servers: [], conversations: [], timelines: {}, readStates: {}, members: {}, place: { kind: "home" } });
    if (typeof history !== "undefined") history.replaceState(null, "", "/");
  }

  private async started(): Promise<void> {
    this.set({ user: this.session.current?.user ?? null });
    if (!this.realtime) {
      this.realtime = connectRealtime(this.api);
      this.realtime.onState((connection) => this.set({ connection }));
      this.set({ connection: this.realtime.state });
      this.realtime.resumable<G.UserEventsSubscription>(Op.UserEvents, () => ({}), () => void this.reloadLists(), {
        onReconnect: () => void this.resync(),
      });
    }
    // The address names the place: its history loads beside the lists, not after them.
    const place = this.store.get().place;
    const id = placeId(place);
    const history = id ? this.loadNewest(id).catch(() => undefined) : Promise.resolve();
    await Promise.all([this.reloadLists(), history]);
    await this.go(this.store.get().place, false);
  }

  // --- lists -------------------------------------------------------------------------------

  async reloadLists(): Promise<void> {
    await Promise.allSettled([...this.marking]);
    const [servers, conversations] = await Promise.all([
      this.api.request<G.ServersQuery>(Op.Servers),
      this.api.request<G.ConversationsQuery>(Op.Conversations),
    ]);
    const readStates: Record<string, ReadState> = {};
    for (const s of servers.servers) for (const c of s.channels) readStates[c.id] = c.readState;
    for (const c of conversations.conversations) readStates[c.id] = { ...c.readState, channelId: c.id };
    this.set((s) => ({ servers: servers.servers, conversations: conversations.conversations, readStates: { ...s.readStates, ...readStates } }));
    this.syncFeeds();
  }

  /** After a reconnect: the lists, and the open place's newest page (gaps the cursor cannot cover). */
  private async resync(): Promise<void> {
    try {
      await this.reloadLists();
      const id = placeId(this.store.get().place);
      if (id) await this.loadNewest(id);
    } catch (error) {
      this.notify(error);
    }
  }

  /** One live feed per visible channel and conversation: timelines and unread badges. */
  private syncFeeds(): void {
    const rt = this.realtime;
    if (!rt) return;
    const { servers, conversations } = this.store.get();
    const wanted = new Map<string, "channel" | "conversation" | "server">();
    // A server's own news (channels created, renamed, moved; members coming and going) keeps
    // its lists current without re-reading them on a timer.
    for (const s of servers) wanted.set(`server:${s.id}`, "server");
    for (const s of servers) for (const c of s.channels) if (!c.archived) wanted.set(c.id, "channel");
    for (const c of conversations) wanted.set(c.id, "conversation");
    for (const [id, stop] of this.feeds) {
      if (!wanted.has(id)) {
        stop();
        this.feeds.delete(id);
      }
    }
    let started = false;
    for (const [id, kind] of wanted) {
      if (this.feeds.has(id) || this.feeds.size >= 90) continue;
      if (kind === "server") {
        const serverId = id.slice("server:".length);
        const stop = rt.resumable<G.ServerEventsSubscription>(
          Op.ServerEvents,
          () => ({ serverId }),
          (data) => this.onServerEvent(data.serverEvents),
          // FORBIDDEN or NOT_FOUND: no longer a member, or the server is gone; the lists say so.
          { onError: () => this.reloadListsSoon() },
        );
        this.feeds.set(id, stop);
        continue;
      }
      started = true;
      const query = kind === "channel" ? Op.ChannelEvents : Op.ConversationEvents;
      const variables = () => {
        const after = this.store.get().timelines[id]?.eventCursor ?? null;
        return kind === "channel" ? { channelId: id, after } : { conversationId: id, after };
      };
      const stop = rt.resumable<G.ChannelEventsSubscription & G.ConversationEventsSubscription>(
        query,
        variables,
        (data) => this.onEvent(id, kind === "channel" ? data.channelEvents : data.conversationEvents),
        { onError: (error) => error.code !== "FORBIDDEN" && this.notify(error) },
      );
      this.feeds.set(id, stop);
    }
    if (started) {
      // A new subscription without a cursor starts from whenever the server gets to it: a
      // message sent between the lists' read and then is neither in their counts nor live.
      // Read the counts again once the subscriptions are surely running.
      clearTimeout(this.settleTimer);
      this.settleTimer = setTimeout(() => void this.reloadLists().catch(() => undefined), 1000);
    }
  }
  private settleTimer: ReturnType<typeof setTimeout> | undefined;

  private onServerEvent(event: G.ServerEventsSubscription["serverEvents"]): void {
    switch (event.kind) {
      // Pins reach the timelines through the channel's own events.
      case "MESSAGE_PINNED":
      case "MESSAGE_UNPINNED":
      // Moderation news changes no list; hidden and restored messages reach the timelines.
      case "MESSAGE_FLAGGED":
      case "MESSAGE_REPORTED":
      case "MESSAGE_HIDDEN":
      case "MESSAGE_RESTORED":
      case "FLAG_DISMISSED":
        return;
      case "MEMBER_JOINED":
      case "MEMBER_LEFT":
      case "MEMBER_REMOVED":
      case "MEMBER_BANNED":
      case "MEMBER_ROLE_CHANGED":
        if (this.store.get().members[event.serverId]) void this.loadMembers(event.serverId).catch(() => undefined);
        return;
      default:
        this.reloadListsSoon();
    }
  }

  /** Reads the lists again shortly: a burst of news (a channel moved moves others) reads once. */
  private reloadListsSoon(): void {
    clearTimeout(this.listsTimer);
    this.listsTimer = setTimeout(() => void this.reloadLists().catch((error) => this.notify(error)), 150);
  }
  private listsTimer: ReturnType<typeof setTimeout> | undefined;

  private stopFeeds(): void {
    for (const stop of this.feeds.values()) stop();
    this.feeds.clear();
    for (const stop of this.placeSubs) stop();
    this.placeSubs = [];
  }

  private onEvent(id: string, event: ChannelEvent): void {
    const me = this.store.get().user?.id;
    this.set((s) => {
      const before = s.timelines[id] ?? emptyTimeline;
      const known = event.__typename === "MessageSent" && before.messages.some((m) => m.id === event.message.id);
      const timelines = { ...s.timelines, [id]: applyEvent(before, event) };
      let readStates = s.readStates;
      const open = placeId(s.place) === id && isVisible();
      if (event.__typename === "MessageSent" && !known && event.message.author.id !== me && !open) {
        const rs = s.readStates[id] ?? { channelId: id, lastReadMessageId: null, unreadCount: 0, mentionCount: 0 };
        readStates = {
          ...s.readStates,
          [id]: { ...rs, unreadCount: rs.unreadCount + 1, mentionCount: rs.mentionCount + (me && mentions(event.message.body, me) ? 1 : 0) },
        };
      }
      // A message ends its author's typing there, whatever the signal's expiry said.
      let typing = s.typing;
      if (event.__typename === "MessageSent" && s.typing[id]?.some((t) => t.userId === event.message.author.id)) {
        typing = { ...s.typing, [id]: s.typing[id].filter((t) => t.userId !== event.message.author.id) };
      }
      return { timelines, readStates, typing };
    });
    if (placeId(this.store.get().place) === id) this.markOpenRead();
    // Nothing tells members that someone joined; a message from someone the member list does
    // not know is the sign to read it again.
    if (event.__typename === "MessageSent") {
      const s = this.store.get();
      const server = s.servers.find((sv) => sv.channels.some((c) => c.id === id));
      const members = server && s.members[server.id];
      if (server && members && !members.some((m) => m.user.id === event.message.author.id)) {
        void this.loadMembers(server.id).catch(() => undefined);
      }
    }
  }

  // --- places ------------------------------------------------------------------------------

  async go(place: Place, push = true): Promise<void> {
    if (place.kind === "home") {
      const first = this.store.get().servers[0];
      const channel = first?.channels.find((c) => !c.archived) ?? first?.channels[0];
      if (first && channel && !push) place = { kind: "channel", serverId: first.id, channelId: channel.id };
    }
    if (push && typeof history !== "undefined") history.pushState(null, "", pathOf(place));
    else if (typeof history !== "undefined") history.replaceState(null, "", pathOf(place));
    this.set({ place });
    for (const stop of this.placeSubs) stop();
    this.placeSubs = [];
    const id = placeId(place);
    const rt = this.realtime;
    if (!id || !rt) return;
    this.placeSubs.push(
      rt.resumable<G.TypingSubscription>(Op.Typing, () => ({ channelId: id }), (data) =>
        this.set((s) => ({ typing: { ...s.typing, [id]: applyTyping(s.typing[id] ?? [], data.typing) } })),
      ),
    );
    const presenceVars = place.kind === "channel" ? { serverId: place.serverId } : { conversationId: id };
    this.placeSubs.push(
      rt.resumable<G.PresenceSubscription>(Op.Presence, () => presenceVars, (data) => {
        const { user, status } = data.presence;
        this.set((s) => ({ presence: { ...s.presence, [user.id]: status } }));
        if (place.kind === "channel" && !this.store.get().members[place.serverId]?.some((m) => m.user.id === user.id)) {
          void this.loadMembers(place.serverId);
        }
      }),
    );
    try {
      if (place.kind === "channel") void this.loadMembers(place.serverId).catch((e) => this.notify(e));
      if (!this.store.get().timelines[id]?.loaded) await this.loadNewest(id);
      this.markOpenRead();
    } catch (error) {
      this.notify(error);
    }
  }

  private kindOf(id: string): "channel" | "conversation" {
    const place = this.store.get().place;
    if (placeId(place) === id) return place.kind === "conversation" ? "conversation" : "channel";
    return this.store.get().conversations.some((c) => c.id === id) ? "conversation" : "channel";
  }

  async loadNewest(id: string): Promise<void> {
    const page = await this.history(id, null);
    if (page) this.set((s) => ({ timelines: { ...s.timelines, [id]: applyPage(s.timelines[id] ?? emptyTimeline, page, false) } }));
  }

  /** One page further back; false when there is nothing more. */
  async loadOlder(id: string): Promise<boolean> {
    for (;;) {
      const timeline = this.store.get().timelines[id];
      if (!timeline?.hasOlder || !timeline.olderCursor) return false;
      const page = await this.history(id, timeline.olderCursor);
      if (!page) return false;
      const known = new Set(timeline.messages.map((m) => m.id));
      this.set((s) => ({ timelines: { ...s.timelines, [id]: applyPage(s.timelines[id] ?? emptyTimeline, page, true) } }));
      if (page.edges.length === 0) return false;
      // A page the live feed delivered already (a channel followed since before it was
      // opened) adds nothing to scroll up to: read on to the first page that does.
      if (page.edges.some((e) => !known.has(e.node.id))) return true;
    }
  }

  private async history(id: string, before: string | null) {
    if (this.kindOf(id) === "conversation") {
      const data = await this.api.request<G.ConversationHistoryQuery, G.ConversationHistoryQueryVariables>(Op.ConversationHistory, { id, before, last: PAGE });
      return data.conversation?.messages ?? null;
    }
    const data = await this.api.request<G.ChannelHistoryQuery, G.ChannelHistoryQueryVariables>(Op.ChannelHistory, { id, before, last: PAGE });
    return data.channel?.messages ?? null;
  }

  /** Marks the open place read up to its newest message, when the page is visible. */
  markOpenRead(): void {
    const s = this.store.get();
    const id = placeId(s.place);
    if (!id || !isVisible()) return;
    const messages = s.timelines[id]?.messages ?? [];
    const newest = messages[messages.length - 1];
    if (!newest) return;
    const rs = s.readStates[id];
    if (rs && rs.unreadCount === 0 && rs.mentionCount === 0 && this.readMarks.get(id) === newest.id) return;
    this.readMarks.set(id, newest.id);
    this.set((st) => ({ readStates: { ...st.readStates, [id]: { ...(st.readStates[id] ?? { channelId: id, lastReadMessageId: null }), unreadCount: 0, mentionCount: 0, lastReadMessageId: newest.id } } }));
    const input = this.kindOf(id) === "conversation" ? { conversationId: id, messageId: newest.id } : { channelId: id, messageId: newest.id };
    const marked = this.api
      .request<G.MarkReadMutation, G.MarkReadMutationVariables>(Op.MarkRead, { input })
      .catch((error) => {
        this.readMarks.delete(id);
        console.warn("markRead failed", error);
      })
      .finally(() => this.marking.delete(marked));
    this.marking.add(marked);
  }

  // --- messages ----------------------------------------------------------------------------

  /** Everyone the user can mention or see named here: the server's members or the conversation's people. */
  people(): Person[] {
    const s = this.store.get();
    const place = s.place;
    const people: Person[] = s.user ? [s.user] : [];
    if (place.kind === "channel") people.push(...(s.members[place.serverId] ?? []).map((m) => m.user));
    if (place.kind === "conversation") people.push(...(s.conversations.find((c) => c.id === place.conversationId)?.participants ?? []));
    return people;
  }

  /** Sends `body` to the open place; throws (the composer keeps the text) when it fails. */
  async send(text: string): Promise<void> {
    const id = placeId(this.store.get().place);
    if (!id) return;
    const body = encodeMentions(text, this.people());
    const input = this.kindOf(id) === "conversation" ? { conversationId: id, body } : { channelId: id, body };
    const data = await this.api.request<G.SendMessageMutation, G.SendMessageMutationVariables>(Op.SendMessage, { input });
    // The message ended this user's typing line for the others: the next keystroke starts it again.
    this.lastTyping = 0;
    this.own(id, data.sendMessage);
  }

  async edit(id: string, messageId: string, body: string): Promise<void> {
    const data = await this.api.request<G.EditMessageMutation, G.EditMessageMutationVariables>(Op.EditMessage, { input: { messageId, body } });
    this.own(id, data.editMessage);
  }

  async remove(id: string, messageId: string): Promise<void> {
    const data = await this.api.request<G.DeleteMessageMutation, G.DeleteMessageMutationVariables>(Op.DeleteMessage, { id: messageId });
    this.own(id, data.deleteMessage);
  }

  private own(id: string, message: G.MessageFieldsFragment): void {
    this.set((s) => ({ timelines: { ...s.timelines, [id]: applyOwn(s.timelines[id] ?? emptyTimeline, message) } }));
  }

  /** Tells the others the user is typing, at most every 2 s. */
  typing(): void {
    const id = placeId(this.store.get().place);
    const now = Date.now();
    if (!id || now - this.lastTyping < 2000) return;
    this.lastTyping = now;
    this.api
      .request<G.StartTypingMutation, G.StartTypingMutationVariables>(Op.StartTyping, { channelId: id })
      // `false`: too close to the previous signal, dropped; the next keystroke a second on retries.
      .then((data) => {
        if (!data.startTyping) this.lastTyping = now - 1000;
      })
      .catch(() => undefined);
  }

  async setPresence(status: "ONLINE" | "AWAY"): Promise<void> {
    this.set({ ownPresence: status });
    await this.api.request<G.SetPresenceMutation, G.SetPresenceMutationVariables>(Op.SetPresence, { status });
  }

  // --- servers -----------------------------------------------------------------------------

  async loadMembers(serverId: string): Promise<void> {
    const members: Member[] = [];
    let after: string | null = null;
    // Pages of 50 (a page costs its selection once per member); at most 1,000 members shown.
    for (let page = 0; page < 20; page++) {
      const data: G.MembersQuery = await this.api.request<G.MembersQuery, G.MembersQueryVariables>(Op.Members, { serverId, after });
      const connection = data.server?.members;
      members.push(...(connection?.edges.map((e) => e.node) ?? []));
      if (!connection?.pageInfo.hasNextPage) break;
      after = connection.pageInfo.endCursor;
    }
    this.set((s) => ({ members: { ...s.members, [serverId]: members } }));
  }

  async createServer(name: string): Promise<void> {
    const data = await this.api.request<G.CreateServerMutation, G.CreateServerMutationVariables>(Op.CreateServer, { name });
    // A server starts without channels; one to talk in straight away.
    await this.api.request<G.CreateChannelMutation, G.CreateChannelMutationVariables>(Op.CreateChannel, {
      input: { serverId: data.createServer.id, name: "general" },
    });
    await this.reloadLists();
    await this.openServer(data.createServer.id);
  }

  async join(code: string): Promise<void> {
    const data = await this.api.request<G.JoinServerMutation, G.JoinServerMutationVariables>(Op.JoinServer, { code: code.trim() });
    await this.reloadLists();
    await this.openServer(data.joinServer.id);
  }

  async openServer(serverId: string): Promise<void> {
    const server = this.store.get().servers.find((s) => s.id === serverId);
    const channel = server?.channels.find((c) => !c.archived) ?? server?.channels[0];
    if (channel) await this.go({ kind: "channel", serverId, channelId: channel.id });
  }

  async leave(serverId: string): Promise<void> {
    await this.api.request<G.LeaveServerMutation, G.LeaveServerMutationVariables>(Op.LeaveServer, { serverId });
    await this.reloadLists();
    await this.go({ kind: "home" });
  }

  async createInvite(serverId: string, maxUses?: number, expiresInSeconds?: number): Promise<G.CreateInviteMutation["createInvite"]> {
    const data = await this.api.request<G.CreateInviteMutation, G.CreateInviteMutationVariables>(Op.CreateInvite, {
      input: { serverId, maxUses, expiresInSeconds },
    });
    return data.createInvite;
  }

  async revokeInvite(code: string): Promise<void> {
    await this.api.request<G.RevokeInviteMutation, G.RevokeInviteMutationVariables>(Op.RevokeInvite, { code });
  }

  async createChannel(serverId: string, name: string, isPrivate: boolean): Promise<void> {
    const data = await this.api.request<G.CreateChannelMutation, G.CreateChannelMutationVariables>(Op.CreateChannel, {
      input: { serverId, name, private: isPrivate },
    });
    await this.reloadLists();
    await this.go({ kind: "channel", serverId, channelId: data.createChannel.id });
  }

  async renameServer(serverId: string, name: string): Promise<void> {
    await this.api.request<G.RenameServerMutation, G.RenameServerMutationVariables>(Op.RenameServer, { serverId, name });
    await this.reloadLists();
  }

  async renameChannel(channelId: string, name: string): Promise<void> {
    await this.api.request<G.RenameChannelMutation, G.RenameChannelMutationVariables>(Op.RenameChannel, { channelId, name });
    await this.reloadLists();
  }

  async archiveChannel(channelId: string): Promise<void> {
    await this.api.request<G.ArchiveChannelMutation, G.ArchiveChannelMutationVariables>(Op.ArchiveChannel, { channelId });
    await this.reloadLists();
  }

  async setRole(serverId: string, userId: string, role: G.Role): Promise<void> {
    await this.api.request<G.SetMemberRoleMutation, G.SetMemberRoleMutationVariables>(Op.SetMemberRole, { input: { serverId, userId, role } });
    await this.loadMembers(serverId);
  }

  async removeMember(serverId: string, userId: string): Promise<void> {
    await this.api.request<G.RemoveMemberMutation, G.RemoveMemberMutationVariables>(Op.RemoveMember, { input: { serverId, userId } });
    await this.loadMembers(serverId);
  }

  async ban(serverId: string, userId: string, reason?: string): Promise<void> {
    await this.api.request<G.BanUserMutation, G.BanUserMutationVariables>(Op.BanUser, { input: { serverId, userId, reason: reason || undefined } });
    await this.loadMembers(serverId);
  }

  async unban(serverId: string, userId: string): Promise<void> {
    await this.api.request<G.UnbanUserMutation, G.UnbanUserMutationVariables>(Op.UnbanUser, { input: { serverId, userId } });
  }

  async bans(serverId: string): Promise<G.BansQuery["server"]> {
    const data = await this.api.request<G.BansQuery, G.BansQueryVariables>(Op.Bans, { serverId });
    return data.server;
  }

  async openConversation(userIds: string[]): Promise<void> {
    const data = await this.api.request<G.OpenConversationMutation, G.OpenConversationMutationVariables>(Op.OpenConversation, { userIds });
    await this.reloadLists();
    await this.go({ kind: "conversation", conversationId: data.openDirectConversation.id });
  }
}

function isVisible(): boolean {
  return typeof document === "undefined" || document.visibilityState === "visible";
}
