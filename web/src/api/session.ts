// The signed-in session's tokens.
//
// Storage choice (see docs/web-client.md): the access token lives only in memory. The refresh
// token lives in memory and is mirrored to sessionStorage, so a reload keeps the user signed
// in, but it is per tab (no two tabs race to rotate one token) and is gone when the tab closes.
// Every refresh rotates it (the server refuses a reused one and ends the whole session), so a
// copied token is worth one use at most. No cookie is set: the API takes bearer tokens only.

import type { UserFieldsFragment } from "./generated";

export interface Tokens {
  accessToken: string;
  refreshToken: string;
  user: UserFieldsFragment;
}

const KEY = "aether.session";

export interface SessionStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export class Session {
  private tokens: Tokens | null = null;
  private listeners = new Set<() => void>();

  constructor(private readonly storage: SessionStorageLike | null) {
    const saved = storage?.getItem(KEY);
    if (saved) {
      try {
        const { refreshToken, user } = JSON.parse(saved);
        // No access token after a reload: the first request refreshes.
        if (typeof refreshToken === "string" && user?.id) this.tokens = { accessToken: "", refreshToken, user };
      } catch {
        storage?.removeItem(KEY);
      }
    }
  }

  get current(): Tokens | null {
    return this.tokens;
  }

  set(tokens: Tokens): void {
    this.tokens = tokens;
    this.storage?.setItem(KEY, JSON.stringify({ refreshToken: tokens.refreshToken, user: tokens.user }));
    this.emit();
  }

  clear(): void {
    if (!this.tokens) return;
    this.tokens = null;
    this.storage?.removeItem(KEY);
    this.emit();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }
}

/** Seconds since the epoch at which a JWT expires, or 0 when it cannot be read. */
export function expiresAt(jwt: string): number {
  const part = jwt.split(".")[1];
  if (!part) return 0;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp : 0;
  } catch {
    return 0;
  }
}

/** Whether an access token is missing or expires within `marginSeconds`. */
export function isStale(jwt: string, nowSeconds: number, marginSeconds = 30): boolean {
  return !jwt || expiresAt(jwt) - marginSeconds <= nowSeconds;
}
