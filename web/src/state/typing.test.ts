import { describe, expect, it } from "vitest";
import { activeTypists, applyTyping, typingLine } from "./typing";

const ev = (id: string, typing: boolean, at: number) => ({
  typing,
  expiresAt: new Date(at).toISOString(),
  user: { id, displayName: id.toUpperCase() },
});

describe("typing", () => {
  it("renews, stops and expires signals", () => {
    let t = applyTyping([], ev("a", true, 5000));
    t = applyTyping(t, ev("b", true, 3000));
    t = applyTyping(t, ev("a", true, 9000));
    expect(typingLine(activeTypists(t, 1000))).toBe("A and B are typing…".replace("A and B", "B and A"));
    expect(typingLine(activeTypists(t, 4000))).toBe("A is typing…");
    t = applyTyping(t, ev("a", false, 0));
    expect(typingLine(activeTypists(t, 1000))).toBe("B is typing…");
    expect(typingLine([])).toBe("");
  });
});
