/** Internal type. DO NOT USE DIRECTLY. */
type Exact<T extends { [key: string]: unknown }> = { [K in keyof T]: T[K] };
/** Internal type. DO NOT USE DIRECTLY. */
export type Incremental<T> = T | { [P in keyof T]?: P extends ' $fragmentName' | '__typename' ? T[P] : never };
export type ChannelKind =
  | 'ANNOUNCEMENT'
  | 'TEXT'
  | 'VOICE';

export type CreateChannelInput = {
  kind?: ChannelKind;
  name: string;
  private?: boolean;
  serverId: string;
};

export type CreateInviteInput = {
  expiresInSeconds?: number | null | undefined;
  maxUses?: number | null | undefined;
  serverId: string;
};

export type EditMessageInput = {
  body: string;
  messageId: string;
};

export type LoginInput = {
  password: string;
  username: string;
};

export type MarkReadInput = {
  channelId?: string | null | undefined;
  conversationId?: string | null | undefined;
  /** The newest message the user has seen: everything up to it counts as read. */
  messageId: string;
};

export type ModerateMemberInput = {
  /** Why, for the audit log: 1–512 characters. */
  reason?: string | null | undefined;
  serverId: string;
  userId: string;
};

/** What a user shows as. */
export type PresenceStatus =
  | 'AWAY'
  | 'OFFLINE'
  | 'ONLINE';

export type RegisterInput = {
  displayName?: string | null | undefined;
  password: string;
  username: string;
};

export type Role =
  | 'ADMIN'
  | 'GUEST'
  | 'MEMBER'
  | 'MODERATOR'
  | 'OWNER';

export type SendMessageInput = {
  /** With `threadRootId`: also show the reply in the channel's history. */
  alsoToChannel?: boolean;
  body: string;
  channelId?: string | null | undefined;
  conversationId?: string | null | undefined;
  /**
   * A message of the same channel or conversation this one replies to; the reply shows
   * it quoted (`Message.replyTo`).
   */
  replyToId?: string | null | undefined;
  /**
   * A root message of the same channel or conversation: the message is a reply in its
   * thread (`thread(rootId)`), not in the channel's history unless `alsoToChannel`.
   */
  threadRootId?: string | null | undefined;
};

export type ServerEventKind =
  | 'CHANNEL_ARCHIVED'
  | 'CHANNEL_CREATED'
  /**
   * The channel moved (`category`, `position`); the others' places may have changed too:
   * re-read `server.channels`.
   */
  | 'CHANNEL_MOVED'
  | 'CHANNEL_RENAMED'
  | 'CHANNEL_TOPIC_CHANGED'
  | 'CHANNEL_UNARCHIVED'
  /** `actorId` dismissed the flag or reports; the message stays as it is. */
  | 'FLAG_DISMISSED'
  | 'MEMBER_BANNED'
  | 'MEMBER_JOINED'
  | 'MEMBER_LEFT'
  | 'MEMBER_REMOVED'
  | 'MEMBER_ROLE_CHANGED'
  /**
   * The model stage flagged a message (`messageId`, by `userId`; `reason` says why). This
   * and the next four are told to MODERATOR and up only: the moderation queue, live.
   */
  | 'MESSAGE_FLAGGED'
  /** The message was hidden: by `actorId`, or by the model stage when `actorId` is null. */
  | 'MESSAGE_HIDDEN'
  | 'MESSAGE_PINNED'
  /** `actorId` reported the message, with `reason`. */
  | 'MESSAGE_REPORTED'
  /** `actorId` restored the message. */
  | 'MESSAGE_RESTORED'
  | 'MESSAGE_UNPINNED'
  /** `userId` owns the server now; `actorId`, the previous owner, is an ADMIN. */
  | 'OWNERSHIP_TRANSFERRED'
  /** The server was deleted; the subscription ends after this event. */
  | 'SERVER_DELETED'
  | 'SERVER_RENAMED';

export type SetMemberRoleInput = {
  role: Role;
  serverId: string;
  userId: string;
};

/** What a client may set; `OFFLINE` follows from its connections closing. */
export type SettablePresence =
  | 'AWAY'
  | 'ONLINE';

export type UnbanUserInput = {
  serverId: string;
  userId: string;
};

export type UserFieldsFragment = { id: string, username: string, displayName: string };

export type MessageFieldsFragment = { id: string, body: string, createdAt: string, editedAt: string | null, deleted: boolean, authorBlocked: boolean, sequence: number, channelId: string | null, conversationId: string | null, author: { id: string, username: string, displayName: string } };

export type ReadStateFieldsFragment = { channelId: string, lastReadMessageId: string | null, unreadCount: number, mentionCount: number };

export type AuthFieldsFragment = { accessToken: string, refreshToken: string, user: { id: string, username: string, displayName: string } };

export type RegisterMutationVariables = Exact<{
  input: RegisterInput;
}>;


export type RegisterMutation = { register: { accessToken: string, refreshToken: string, user: { id: string, username: string, displayName: string } } };

export type LoginMutationVariables = Exact<{
  input: LoginInput;
}>;


export type LoginMutation = { login: { accessToken: string, refreshToken: string, user: { id: string, username: string, displayName: string } } };

export type RefreshMutationVariables = Exact<{
  refreshToken: string;
}>;


export type RefreshMutation = { refreshToken: { accessToken: string, refreshToken: string, user: { id: string, username: string, displayName: string } } };

export type LogoutMutationVariables = Exact<{ [key: string]: never; }>;


export type LogoutMutation = { logout: boolean };

export type MeQueryVariables = Exact<{ [key: string]: never; }>;


export type MeQuery = { me: { id: string, username: string, displayName: string } };

export type ServersQueryVariables = Exact<{ [key: string]: never; }>;


export type ServersQuery = { servers: Array<{ id: string, name: string, owner: { id: string }, channels: Array<{ id: string, serverId: string, name: string, kind: ChannelKind, private: boolean, archived: boolean, readState: { channelId: string, lastReadMessageId: string | null, unreadCount: number, mentionCount: number } }> }> };

export type MembersQueryVariables = Exact<{
  serverId: string;
  after?: string | null | undefined;
}>;


export type MembersQuery = { server: { id: string, members: { totalCount: number, pageInfo: { hasNextPage: boolean, endCursor: string | null }, edges: Array<{ node: { role: Role, displayLabel: string, user: { id: string, username: string, displayName: string } } }> } } | null };

export type BansQueryVariables = Exact<{
  serverId: string;
}>;


export type BansQuery = { server: { id: string, bans: Array<{ userId: string, reason: string | null, bannedAt: string, bannedBy: { id: string, username: string, displayName: string } }> } | null };

export type ConversationsQueryVariables = Exact<{ [key: string]: never; }>;


export type ConversationsQuery = { conversations: Array<{ id: string, participants: Array<{ id: string, username: string, displayName: string }>, readState: { channelId: string, lastReadMessageId: string | null, unreadCount: number, mentionCount: number } }> };

export type ChannelHistoryQueryVariables = Exact<{
  id: string;
  before?: string | null | undefined;
  last?: number | null | undefined;
}>;


export type ChannelHistoryQuery = { channel: { id: string, messages: { pageInfo: { hasPreviousPage: boolean, startCursor: string | null, endCursor: string | null }, edges: Array<{ cursor: string, node: { id: string, body: string, createdAt: string, editedAt: string | null, deleted: boolean, authorBlocked: boolean, sequence: number, channelId: string | null, conversationId: string | null, author: { id: string, username: string, displayName: string } } }> } } | null };

export type ConversationHistoryQueryVariables = Exact<{
  id: string;
  before?: string | null | undefined;
  last?: number | null | undefined;
}>;


export type ConversationHistoryQuery = { conversation: { id: string, messages: { pageInfo: { hasPreviousPage: boolean, startCursor: string | null, endCursor: string | null }, edges: Array<{ cursor: string, node: { id: string, body: string, createdAt: string, editedAt: string | null, deleted: boolean, authorBlocked: boolean, sequence: number, channelId: string | null, conversationId: string | null, author: { id: string, username: string, displayName: string } } }> } } | null };

export type CreateServerMutationVariables = Exact<{
  name: string;
}>;


export type CreateServerMutation = { createServer: { id: string, name: string } };

export type RenameServerMutationVariables = Exact<{
  serverId: string;
  name: string;
}>;


export type RenameServerMutation = { renameServer: { id: string, name: string } };

export type CreateChannelMutationVariables = Exact<{
  input: CreateChannelInput;
}>;


export type CreateChannelMutation = { createChannel: { id: string, name: string } };

export type RenameChannelMutationVariables = Exact<{
  channelId: string;
  name: string;
}>;


export type RenameChannelMutation = { renameChannel: { id: string, name: string } };

export type ArchiveChannelMutationVariables = Exact<{
  channelId: string;
}>;


export type ArchiveChannelMutation = { archiveChannel: { id: string, archived: boolean } };

export type CreateInviteMutationVariables = Exact<{
  input: CreateInviteInput;
}>;


export type CreateInviteMutation = { createInvite: { code: string, maxUses: number | null, uses: number, expiresAt: string | null } };

export type RevokeInviteMutationVariables = Exact<{
  code: string;
}>;


export type RevokeInviteMutation = { revokeInvite: boolean };

export type JoinServerMutationVariables = Exact<{
  code: string;
}>;


export type JoinServerMutation = { joinServer: { id: string, name: string } };

export type LeaveServerMutationVariables = Exact<{
  serverId: string;
}>;


export type LeaveServerMutation = { leaveServer: boolean };

export type SetMemberRoleMutationVariables = Exact<{
  input: SetMemberRoleInput;
}>;


export type SetMemberRoleMutation = { setMemberRole: { role: Role } };

export type RemoveMemberMutationVariables = Exact<{
  input: ModerateMemberInput;
}>;


export type RemoveMemberMutation = { removeMember: boolean };

export type BanUserMutationVariables = Exact<{
  input: ModerateMemberInput;
}>;


export type BanUserMutation = { banUser: boolean };

export type UnbanUserMutationVariables = Exact<{
  input: UnbanUserInput;
}>;


export type UnbanUserMutation = { unbanUser: boolean };

export type OpenConversationMutationVariables = Exact<{
  userIds: Array<string> | string;
}>;


export type OpenConversationMutation = { openDirectConversation: { id: string } };

export type SendMessageMutationVariables = Exact<{
  input: SendMessageInput;
}>;


export type SendMessageMutation = { sendMessage: { id: string, body: string, createdAt: string, editedAt: string | null, deleted: boolean, authorBlocked: boolean, sequence: number, channelId: string | null, conversationId: string | null, author: { id: string, username: string, displayName: string } } };

export type EditMessageMutationVariables = Exact<{
  input: EditMessageInput;
}>;


export type EditMessageMutation = { editMessage: { id: string, body: string, createdAt: string, editedAt: string | null, deleted: boolean, authorBlocked: boolean, sequence: number, channelId: string | null, conversationId: string | null, author: { id: string, username: string, displayName: string } } };

export type DeleteMessageMutationVariables = Exact<{
  id: string;
}>;


export type DeleteMessageMutation = { deleteMessage: { id: string, body: string, createdAt: string, editedAt: string | null, deleted: boolean, authorBlocked: boolean, sequence: number, channelId: string | null, conversationId: string | null, author: { id: string, username: string, displayName: string } } };

export type MarkReadMutationVariables = Exact<{
  input: MarkReadInput;
}>;


export type MarkReadMutation = { markRead: { channelId: string, lastReadMessageId: string | null, unreadCount: number, mentionCount: number } };

export type StartTypingMutationVariables = Exact<{
  channelId: string;
}>;


export type StartTypingMutation = { startTyping: boolean };

export type SetPresenceMutationVariables = Exact<{
  status: SettablePresence;
}>;


export type SetPresenceMutation = { setPresence: PresenceStatus };

type ChannelEventFields_MessageDeleted_Fragment = { __typename: 'MessageDeleted', messageId: string, cursor: string };

type ChannelEventFields_MessageEdited_Fragment = { __typename: 'MessageEdited', cursor: string, message: { id: string, body: string, createdAt: string, editedAt: string | null, deleted: boolean, authorBlocked: boolean, sequence: number, channelId: string | null, conversationId: string | null, author: { id: string, username: string, displayName: string } } };

type ChannelEventFields_MessageHidden_Fragment = { __typename: 'MessageHidden', cursor: string };

type ChannelEventFields_MessagePinned_Fragment = { __typename: 'MessagePinned', cursor: string };

type ChannelEventFields_MessageRestored_Fragment = { __typename: 'MessageRestored', cursor: string };

type ChannelEventFields_MessageSent_Fragment = { __typename: 'MessageSent', cursor: string, message: { id: string, body: string, createdAt: string, editedAt: string | null, deleted: boolean, authorBlocked: boolean, sequence: number, channelId: string | null, conversationId: string | null, author: { id: string, username: string, displayName: string } } };

type ChannelEventFields_MessageUnpinned_Fragment = { __typename: 'MessageUnpinned', cursor: string };

type ChannelEventFields_ReactionChanged_Fragment = { __typename: 'ReactionChanged', cursor: string };

type ChannelEventFields_ThreadReplied_Fragment = { __typename: 'ThreadReplied', cursor: string };

export type ChannelEventFieldsFragment =
  | ChannelEventFields_MessageDeleted_Fragment
  | ChannelEventFields_MessageEdited_Fragment
  | ChannelEventFields_MessageHidden_Fragment
  | ChannelEventFields_MessagePinned_Fragment
  | ChannelEventFields_MessageRestored_Fragment
  | ChannelEventFields_MessageSent_Fragment
  | ChannelEventFields_MessageUnpinned_Fragment
  | ChannelEventFields_ReactionChanged_Fragment
  | ChannelEventFields_ThreadReplied_Fragment
;

export type ChannelEventsSubscriptionVariables = Exact<{
  channelId: string;
  after?: string | null | undefined;
}>;


export type ChannelEventsSubscription = { channelEvents:
    | { __typename: 'MessageDeleted', messageId: string, cursor: string }
    | { __typename: 'MessageEdited', cursor: string, message: { id: string, body: string, createdAt: string, editedAt: string | null, deleted: boolean, authorBlocked: boolean, sequence: number, channelId: string | null, conversationId: string | null, author: { id: string, username: string, displayName: string } } }
    | { __typename: 'MessageHidden', cursor: string }
    | { __typename: 'MessagePinned', cursor: string }
    | { __typename: 'MessageRestored', cursor: string }
    | { __typename: 'MessageSent', cursor: string, message: { id: string, body: string, createdAt: string, editedAt: string | null, deleted: boolean, authorBlocked: boolean, sequence: number, channelId: string | null, conversationId: string | null, author: { id: string, username: string, displayName: string } } }
    | { __typename: 'MessageUnpinned', cursor: string }
    | { __typename: 'ReactionChanged', cursor: string }
    | { __typename: 'ThreadReplied', cursor: string }
   };

export type ConversationEventsSubscriptionVariables = Exact<{
  conversationId: string;
  after?: string | null | undefined;
}>;


export type ConversationEventsSubscription = { conversationEvents:
    | { __typename: 'MessageDeleted', messageId: string, cursor: string }
    | { __typename: 'MessageEdited', cursor: string, message: { id: string, body: string, createdAt: string, editedAt: string | null, deleted: boolean, authorBlocked: boolean, sequence: number, channelId: string | null, conversationId: string | null, author: { id: string, username: string, displayName: string } } }
    | { __typename: 'MessageHidden', cursor: string }
    | { __typename: 'MessagePinned', cursor: string }
    | { __typename: 'MessageRestored', cursor: string }
    | { __typename: 'MessageSent', cursor: string, message: { id: string, body: string, createdAt: string, editedAt: string | null, deleted: boolean, authorBlocked: boolean, sequence: number, channelId: string | null, conversationId: string | null, author: { id: string, username: string, displayName: string } } }
    | { __typename: 'MessageUnpinned', cursor: string }
    | { __typename: 'ReactionChanged', cursor: string }
    | { __typename: 'ThreadReplied', cursor: string }
   };

export type ServerEventsSubscriptionVariables = Exact<{
  serverId: string;
}>;


export type ServerEventsSubscription = { serverEvents: { kind: ServerEventKind, serverId: string } };

export type UserEventsSubscriptionVariables = Exact<{ [key: string]: never; }>;


export type UserEventsSubscription = { userEvents:
    | { __typename: 'ConversationChanged' }
    | { __typename: 'ConversationLeft' }
    | { __typename: 'ConversationOpened', conversation: { id: string } }
    | { __typename: 'MembershipChanged', serverId: string, member: boolean, role: Role | null }
    | { __typename: 'MessageModerated' }
    | { __typename: 'ResyncNeeded', missed: number }
   };

export type TypingSubscriptionVariables = Exact<{
  channelId: string;
}>;


export type TypingSubscription = { typing: { channelId: string, typing: boolean, expiresAt: string, user: { id: string, username: string, displayName: string } } };

export type PresenceSubscriptionVariables = Exact<{
  serverId?: string | null | undefined;
  conversationId?: string | null | undefined;
}>;


export type PresenceSubscription = { presence: { status: PresenceStatus, user: { id: string } } };
