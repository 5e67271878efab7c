import { describe, expect, it } from "vitest";
import { GraphQLClient } from "./client";
import { Session } from "./session";
import { ApiError, describe as describeCode } from "./errors";

function jwt(exp: number): string {
  const b64 = (o: object) => btoa(JSON.stringify(o)).replace(/=+$/, "");
  return `${b64({ alg: "none" })}.${b64({ exp })}.sig`;
}
const user = { id: "u1", username: "alice", displayName: "Alice" };
const NOW = 1_000_000;

type Reply = { data?: unknown; errors?: Array<{ message: string; extensions: { code: string } }>; extensions?: Record<string, string> };
function fakeServer(replies: Array<(body: { query: string; variables: Record<string, unknown> }, headers: Record<string, string>) => Reply>) {
  const seen: Array<{ query: string; headers: Record<string, string> }> = [];
  const fetchImpl = async (_url: unknown, init?: RequestInit) => {
    const body = JSON.parse(String(init?.body));
    const headers = init?.headers as Record<string, string>;
    seen.push({ query: body.query, headers });
    const reply = replies.shift();
    if (!reply) throw new Error("unexpected request");
    return new Response(JSON.stringify(reply(body, headers)));
  };
  return { fetchImpl: fetchImpl as typeof fetch, seen };
}
const unauthenticated: Reply = { errors: [{ message: "expired", extensions: { code: "UNAUTHENTICATED" } }] };

describe("GraphQLClient", () => {
  it("refreshes once, silently, when the server says UNAUTHENTICATED, and retries", async () => {
    const session = new Session(null);
    session.set({ accessToken: jwt(NOW + 600), refreshToken: "r1", user });
    const server = fakeServer([
      () => unauthenticated,
      (body) => {
        expect(body.variables.refreshToken).toBe("r1");
        return { data: { refreshToken: { accessToken: jwt(NOW + 900), refreshToken: "r2", user } } };
      },
      (_b, headers) => {
        expect(headers.authorization).toBe(`Bearer ${jwt(NOW + 900)}`);
        return { data: { me: user } };
      },
    ]);
    const client = new GraphQLClient(session, "/graphql", server.fetchImpl, () => NOW);
    await expect(client.request("query { me { id } }")).resolves.toEqual({ me: user });
    expect(session.current?.refreshToken).toBe("r2");
  });

  it("ends the session when the refresh is refused", async () => {
    const session = new Session(null);
    session.set({ accessToken: jwt(NOW + 600), refreshToken: "r1", user });
    const server = fakeServer([() => unauthenticated, () => unauthenticated]);
    const client = new GraphQLClient(session, "/graphql", server.fetchImpl, () => NOW);
    await expect(client.request("query { me { id } }")).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
    expect(session.current).toBeNull();
  });

  it("refreshes an expired access token before sending, once for concurrent requests", async () => {
    const session = new Session(null);
    session.set({ accessToken: jwt(NOW - 1), refreshToken: "r1", user });
    let refreshes = 0;
    const server = fakeServer([
      () => {
        refreshes++;
        return { data: { refreshToken: { accessToken: jwt(NOW + 900), refreshToken: "r2", user } } };
      },
      () => ({ data: { a: 1 } }),
      () => ({ data: { a: 2 } }),
    ]);
    const client = new GraphQLClient(session, "/graphql", server.fetchImpl, () => NOW);
    await Promise.all([client.request("query { a }"), client.request("query { a }")]);
    expect(refreshes).toBe(1);
  });

  it("keeps the session when the server cannot be reached, and says so readably", async () => {
    const session = new Session(null);
    session.set({ accessToken: jwt(NOW + 600), refreshToken: "r1", user });
    const client = new GraphQLClient(session, "/graphql", (async () => {
      throw new TypeError("Failed to fetch");
    }) as typeof fetch, () => NOW);
    const error = (await client.request("query { me { id } }").catch((e: unknown) => e)) as ApiError;
    expect(error).toBeInstanceOf(ApiError);
    expect(error.code).toBe("NETWORK");
    expect(error.message).not.toContain("{");
    expect(session.current).not.toBeNull();
  });

  it("sends the newest consistency token with queries, not mutations", async () => {
    const session = new Session(null);
    const server = fakeServer([
      () => ({ data: { createServer: { id: "s" } }, extensions: { consistencyToken: "t1" } }),
      () => ({ data: { servers: [] } }),
    ]);
    const client = new GraphQLClient(session, "/graphql", server.fetchImpl, () => NOW);
    await client.request("mutation { createServer(input: {name: \"x\"}) { id } }");
    await client.request("query { servers { id } }");
    expect(server.seen[0].headers["x-consistency-token"]).toBeUndefined();
    expect(server.seen[1].headers["x-consistency-token"]).toBe("t1");
  });

  it("every error code reads as a sentence", () => {
    for (const code of ["UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "CONFLICT", "RATE_LIMITED", "BAD_USER_INPUT", "UNAVAILABLE", "NETWORK", "WHATEVER"]) {
      const text = describeCode(code, "detail");
      expect(text).toMatch(/^[A-Z].*[.!:a-z]/);
      expect(text).not.toContain(code);
    }
  });
});
