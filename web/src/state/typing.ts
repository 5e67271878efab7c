// Who is typing where: signals expire at the server's `expiresAt` unless renewed, and a
// `typing: false` ends one at once.

export interface Typist {
  userId: string;
  name: string;
  expiresAt: number; // ms since epoch
}

export function applyTyping(
  typists: readonly Typist[],
  event: { typing: boolean; expiresAt: string; user: { id: string; displayName: string } },
): readonly Typist[] {
  const others = typists.filter((t) => t.userId !== event.user.id);
  if (!event.typing) return others;
  return [...others, { userId: event.user.id, name: event.user.displayName, expiresAt: Date.parse(event.expiresAt) }];
}

export function activeTypists(typists: readonly Typist[], now: number): readonly Typist[] {
  return typists.filter((t) => t.expiresAt > now);
}

/** "Alice is typing…", "Alice and Bob are typing…", "Several people are typing…". */
export function typingLine(typists: readonly Typist[]): string {
  const names = typists.map((t) => t.name);
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return "Several people are typing…";
}
