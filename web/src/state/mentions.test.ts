import { describe, expect, it } from "vitest";
import { encodeMentions, segments } from "./mentions";

const bob = { id: "0190-b0b", username: "bob_1", displayName: "Bob" };

describe("mentions", () => {
  it("turns @username of known people into <@id>, nothing else", () => {
    expect(encodeMentions("hi @bob_1, and @nobody", [bob])).toBe("hi <@0190-b0b>, and @nobody");
    expect(encodeMentions("@BOB_1 first", [bob])).toBe("<@0190-b0b> first");
    expect(encodeMentions("mail bob@bob_1.org", [bob])).toBe("mail bob@bob_1.org");
  });

  it("splits a body into text and mentions, unknown ids left as typed", () => {
    const people = new Map([[bob.id, bob]]);
    expect(segments("hey <@0190-b0b>! <@other> <b>x</b>", people)).toEqual([
      { text: "hey " },
      { mention: "0190-b0b", name: "@Bob" },
      { text: "! " },
      { text: "<@other>" },
      { text: " <b>x</b>" },
    ]);
    expect(segments("", people)).toEqual([]);
  });
});
