// API errors as people read them: by `extensions.code`, never as raw JSON.

export type ErrorCode =
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "CONFLICT"
  | "RATE_LIMITED"
  | "BAD_USER_INPUT"
  | "UNAVAILABLE"
  | "INTERNAL"
  | "NETWORK";

export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode | string,
    /** The server's own message, shown as detail where it helps. */
    readonly detail: string,
  ) {
    super(describe(code, detail));
    this.name = "ApiError";
  }
}

/** A sentence for a person, from an error code and the server's message. */
export function describe(code: string, detail: string): string {
  switch (code) {
    case "UNAUTHENTICATED":
      return "Your session has ended. Please sign in again.";
    case "FORBIDDEN":
      return "You don't have permission to do that.";
    case "NOT_FOUND":
      return "That no longer exists, or you can't see it.";
    case "CONFLICT":
      return conflict(detail);
    case "RATE_LIMITED":
      return "You're doing that too often. Wait a moment and try again.";
    case "BAD_USER_INPUT":
      return detail ? `That didn't work: ${firstSentence(detail)}` : "That input isn't valid.";
    case "UNAVAILABLE":
      return "The server is busy or restarting. Try again in a moment.";
    case "NETWORK":
      return "Can't reach the server. Check your connection; we'll keep trying.";
    default:
      return "Something went wrong on the server. Try again.";
  }
}

function conflict(detail: string): string {
  if (/username/i.test(detail)) return "That username is taken. Pick another one.";
  return detail ? `That clashes with something that exists: ${firstSentence(detail)}` : "That already exists.";
}

function firstSentence(text: string): string {
  const trimmed = text.trim();
  return trimmed.length > 200 ? `${trimmed.slice(0, 200)}…` : trimmed;
}

/** The first error of a GraphQL response body, as an ApiError. */
export function fromGraphQLErrors(errors: ReadonlyArray<{ message?: string; extensions?: { code?: string } }>): ApiError {
  const first = errors[0] ?? {};
  return new ApiError(first.extensions?.code ?? "INTERNAL", first.message ?? "");
}

export function messageOf(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  return describe("INTERNAL", "");
}
