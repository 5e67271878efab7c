// The typed client for queries and mutations: one POST per operation, the access token in
// `Authorization: Bearer`, at most one silent refresh when the server says UNAUTHENTICATED,
// then the session ends and the app shows sign-in. Mutations hand back a consistency token
// (`extensions.consistencyToken`); later queries send the newest in `x-consistency-token`, so
// the user reads their own writes (a server just created is in `servers`).

import { ApiError, fromGraphQLErrors } from "./errors";
import { Refresh } from "./operations";
import type { RefreshMutation, RefreshMutationVariables } from "./generated";
import { Session, isStale } from "./session";

type Fetch = typeof fetch;

export class GraphQLClient {
  private consistency: string | null = null;
  private refreshing: Promise<boolean> | null = null;

  constructor(
    readonly session: Session,
    private readonly endpoint = "/graphql",
    private readonly fetchImpl: Fetch = (...args) => fetch(...args),
    private readonly now: () => number = () => Date.now() / 1000,
  ) {}

  /** Runs one operation as the signed-in user (or anonymously when signed out). */
  async request<TData, TVars extends object = Record<string, never>>(query: string, variables?: TVars): Promise<TData> {
    const tokens = this.session.current;
    if (tokens && isStale(tokens.accessToken, this.now())) await this.refresh();
    try {
      return await this.send<TData>(query, variables, this.session.current?.accessToken);
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "UNAUTHENTICATED" || !this.session.current) throw error;
      // Once, silently: the access token may have expired in flight.
      if (!(await this.refresh())) throw error;
      try {
        return await this.send<TData>(query, variables, this.session.current?.accessToken);
      } catch (again) {
        if (again instanceof ApiError && again.code === "UNAUTHENTICATED") this.session.clear();
        throw again;
      }
    }
  }

  /**
   * Trades the refresh token for a new pair, once at a time however many callers ask. Ends
   * the session when the server refuses (expired, reused or signed out): `false`.
   */
  refresh(): Promise<boolean> {
    if (!this.refreshing) {
      this.refreshing = this.rotate().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  /** A fresh access token for the WebSocket's `connection_init`, or null when signed out. */
  async accessToken(): Promise<string | null> {
    const tokens = this.session.current;
    if (!tokens) return null;
    if (isStale(tokens.accessToken, this.now())) await this.refresh();
    return this.session.current?.accessToken ?? null;
  }

  private async rotate(): Promise<boolean> {
    const tokens = this.session.current;
    if (!tokens) return false;
    try {
      const data = await this.send<RefreshMutation>(Refresh, { refreshToken: tokens.refreshToken } satisfies RefreshMutationVariables, undefined);
      this.session.set(data.refreshToken);
      return true;
    } catch (error) {
      // A server that cannot be reached has not refused the token: keep it for later.
      if (error instanceof ApiError && (error.code === "NETWORK" || error.code === "UNAVAILABLE")) throw error;
      this.session.clear();
      return false;
    }
  }

  private async send<TData>(query: string, variables: object | undefined, accessToken: string | undefined): Promise<TData> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (accessToken) headers.authorization = `Bearer ${accessToken}`;
    const isMutation = /^\s*mutation\b/.test(query);
    if (!isMutation && this.consistency) headers["x-consistency-token"] = this.consistency;
    let response: Response;
    try {
      response = await this.fetchImpl(this.endpoint, { method: "POST", headers, body: JSON.stringify({ query, variables }) });
    } catch (error) {
      throw new ApiError("NETWORK", String(error));
    }
    let body: { data?: TData | null; errors?: Array<{ message?: string; extensions?: { code?: string } }>; extensions?: { consistencyToken?: string } };
    try {
      body = await response.json();
    } catch {
      throw new ApiError(response.status >= 500 ? "UNAVAILABLE" : "INTERNAL", `HTTP ${response.status}`);
    }
    if (body.errors?.length) throw fromGraphQLErrors(body.errors);
    if (body.extensions?.consistencyToken) this.consistency = body.extensions.consistencyToken;
    if (body.data == null) throw new ApiError("INTERNAL", "empty response");
    return body.data;
  }
}
