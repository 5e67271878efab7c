// Every GraphQL operation the client sends, in one place: `npm run codegen` reads this file
// and writes their result and variable types to generated.ts. Features the API gains later
// (replies, threads, reactions, pins) add their fields to MessageFields and their events to
// ChannelEvents here, then to state/timeline.ts.

const USER = /* GraphQL */ `
  fragment UserFields on User {
    id
    username
    displayName
  }
`;

const MESSAGE = /* GraphQL */ `
  fragment MessageFields on Message {
    id
    body
    createdAt
    editedAt
    deleted
    authorBlocked
    sequence
    channelId
    conversationId
    author {
      ...UserFields
    }
  }
`;

const READ_STATE = /* GraphQL */ `
  fragment ReadStateFields on ReadState {
    channelId
    lastReadMessageId
    unreadCount
    mentionCount
  }
`;

const AUTH = /* GraphQL */ `
  fragment AuthFields on AuthPayload {
    accessToken
    refreshToken
    user {
      ...UserFields
    }
  }
`;

export const Register = /* GraphQL */ `
  mutation Register($input: RegisterInput!) {
    register(input: $input) {
      ...AuthFields
    }
  }
  ${AUTH}
  ${USER}
`;

export const Login = /* GraphQL */ `
  mutation Login($input: LoginInput!) {
    login(input: $input) {
      ...AuthFields
    }
  }
  ${AUTH}
  ${USER}
`;

export const Refresh = /* GraphQL */ `
  mutation Refresh($refreshToken: String!) {
    refreshToken(refreshToken: $refreshToken) {
      ...AuthFields
    }
  }
  ${AUTH}
  ${USER}
`;

export const Logout = /* GraphQL */ `
  mutation Logout {
    logout
  }
`;

export const Me = /* GraphQL */ `
  query Me {
    me {
      ...UserFields
    }
  }
  ${USER}
`;

export const Servers = /* GraphQL */ `
  query Servers {
    servers {
      id
      name
      owner {
        id
      }
      channels {
        id
        serverId
        name
        kind
        private
        archived
        readState {
          ...ReadStateFields
        }
      }
    }
  }
  ${READ_STATE}
`;

export const Members = /* GraphQL */ `
  query Members($serverId: ID!, $after: String) {
    server(id: $serverId) {
      id
      members(first: 50, after: $after) {
        totalCount
        pageInfo {
          hasNextPage
          endCursor
        }
        edges {
          node {
            role
            displayLabel
            user {
              ...UserFields
            }
          }
        }
      }
    }
  }
  ${USER}
`;

export const Bans = /* GraphQL */ `
  query Bans($serverId: ID!) {
    server(id: $serverId) {
      id
      bans(first: 50) {
        userId
        reason
        bannedAt
        bannedBy {
          ...UserFields
        }
      }
    }
  }
  ${USER}
`;

export const Conversations = /* GraphQL */ `
  query Conversations {
    conversations(first: 50) {
      id
      participants {
        ...UserFields
      }
      readState {
        ...ReadStateFields
      }
    }
  }
  ${USER}
  ${READ_STATE}
`;

export const ChannelHistory = /* GraphQL */ `
  query ChannelHistory($id: ID!, $before: String, $last: Int) {
    channel(id: $id) {
      id
      messages(last: $last, before: $before) {
        pageInfo {
          hasPreviousPage
          startCursor
          endCursor
        }
        edges {
          cursor
          node {
            ...MessageFields
          }
        }
      }
    }
  }
  ${MESSAGE}
  ${USER}
`;

export const ConversationHistory = /* GraphQL */ `
  query ConversationHistory($id: ID!, $before: String, $last: Int) {
    conversation(id: $id) {
      id
      messages(last: $last, before: $before) {
        pageInfo {
          hasPreviousPage
          startCursor
          endCursor
        }
        edges {
          cursor
          node {
            ...MessageFields
          }
        }
      }
    }
  }
  ${MESSAGE}
  ${USER}
`;

export const CreateServer = /* GraphQL */ `
  mutation CreateServer($name: String!) {
    createServer(input: { name: $name }) {
      id
      name
    }
  }
`;

export const RenameServer = /* GraphQL */ `
  mutation RenameServer($serverId: ID!, $name: String!) {
    renameServer(serverId: $serverId, name: $name) {
      id
      name
    }
  }
`;

export const CreateChannel = /* GraphQL */ `
  mutation CreateChannel($input: CreateChannelInput!) {
    createChannel(input: $input) {
      id
      name
    }
  }
`;

export const RenameChannel = /* GraphQL */ `
  mutation RenameChannel($channelId: ID!, $name: String!) {
    renameChannel(channelId: $channelId, name: $name) {
      id
      name
    }
  }
`;

export const ArchiveChannel = /* GraphQL */ `
  mutation ArchiveChannel($channelId: ID!) {
    archiveChannel(channelId: $channelId) {
      id
      archived
    }
  }
`;

export const CreateInvite = /* GraphQL */ `
  mutation CreateInvite($input: CreateInviteInput!) {
    createInvite(input: $input) {
      code
      maxUses
      uses
      expiresAt
    }
  }
`;

export const RevokeInvite = /* GraphQL */ `
  mutation RevokeInvite($code: String!) {
    revokeInvite(code: $code)
  }
`;

export const JoinServer = /* GraphQL */ `
  mutation JoinServer($code: String!) {
    joinServer(inviteCode: $code) {
      id
      name
    }
  }
`;

export const LeaveServer = /* GraphQL */ `
  mutation LeaveServer($serverId: ID!) {
    leaveServer(serverId: $serverId)
  }
`;

export const SetMemberRole = /* GraphQL */ `
  mutation SetMemberRole($input: SetMemberRoleInput!) {
    setMemberRole(input: $input) {
      role
    }
  }
`;

export const RemoveMember = /* GraphQL */ `
  mutation RemoveMember($input: ModerateMemberInput!) {
    removeMember(input: $input)
  }
`;

export const BanUser = /* GraphQL */ `
  mutation BanUser($input: ModerateMemberInput!) {
    banUser(input: $input)
  }
`;

export const UnbanUser = /* GraphQL */ `
  mutation UnbanUser($input: UnbanUserInput!) {
    unbanUser(input: $input)
  }
`;

export const OpenConversation = /* GraphQL */ `
  mutation OpenConversation($userIds: [ID!]!) {
    openDirectConversation(userIds: $userIds) {
      id
    }
  }
`;

export const SendMessage = /* GraphQL */ `
  mutation SendMessage($input: SendMessageInput!) {
    sendMessage(input: $input) {
      ...MessageFields
    }
  }
  ${MESSAGE}
  ${USER}
`;

export const EditMessage = /* GraphQL */ `
  mutation EditMessage($input: EditMessageInput!) {
    editMessage(input: $input) {
      ...MessageFields
    }
  }
  ${MESSAGE}
  ${USER}
`;

export const DeleteMessage = /* GraphQL */ `
  mutation DeleteMessage($id: ID!) {
    deleteMessage(messageId: $id) {
      ...MessageFields
    }
  }
  ${MESSAGE}
  ${USER}
`;

export const MarkRead = /* GraphQL */ `
  mutation MarkRead($input: MarkReadInput!) {
    markRead(input: $input) {
      ...ReadStateFields
    }
  }
  ${READ_STATE}
`;

export const StartTyping = /* GraphQL */ `
  mutation StartTyping($channelId: ID!) {
    startTyping(channelId: $channelId)
  }
`;

export const SetPresence = /* GraphQL */ `
  mutation SetPresence($status: SettablePresence!) {
    setPresence(status: $status)
  }
`;

const EVENT = /* GraphQL */ `
  fragment ChannelEventFields on ChannelEvent {
    __typename
    cursor
    ... on MessageSent {
      message {
        ...MessageFields
      }
    }
    ... on MessageEdited {
      message {
        ...MessageFields
      }
    }
    ... on MessageDeleted {
      messageId
    }
  }
`;

export const ChannelEvents = /* GraphQL */ `
  subscription ChannelEvents($channelId: ID!, $after: String) {
    channelEvents(channelId: $channelId, after: $after) {
      ...ChannelEventFields
    }
  }
  ${EVENT}
  ${MESSAGE}
  ${USER}
`;

export const ConversationEvents = /* GraphQL */ `
  subscription ConversationEvents($conversationId: ID!, $after: String) {
    conversationEvents(conversationId: $conversationId, after: $after) {
      ...ChannelEventFields
    }
  }
  ${EVENT}
  ${MESSAGE}
  ${USER}
`;

export const ServerEvents = /* GraphQL */ `
  subscription ServerEvents($serverId: ID!) {
    serverEvents(serverId: $serverId) {
      kind
      serverId
    }
  }
`;

export const UserEvents = /* GraphQL */ `
  subscription UserEvents {
    userEvents {
      __typename
      ... on MembershipChanged {
        serverId
        member
        role
      }
      ... on ConversationOpened {
        conversation {
          id
        }
      }
      ... on ResyncNeeded {
        missed
      }
    }
  }
`;

export const Typing = /* GraphQL */ `
  subscription Typing($channelId: ID!) {
    typing(channelId: $channelId) {
      channelId
      typing
      expiresAt
      user {
        ...UserFields
      }
    }
  }
  ${USER}
`;

export const Presence = /* GraphQL */ `
  subscription Presence($serverId: ID, $conversationId: ID) {
    presence(serverId: $serverId, conversationId: $conversationId) {
      status
      user {
        id
      }
    }
  }
`;
