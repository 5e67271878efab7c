import { describe, expect, it } from "vitest";
import { heightBefore, visibleWindow } from "./virtual";

describe("visibleWindow", () => {
  it("renders a few dozen rows of a thousand", () => {
    const heights = Array.from({ length: 1000 }, () => 40);
    const w = visibleWindow(heights, 20_000, 600, 5);
    expect(w.total).toBe(40_000);
    expect(w.start).toBe(495);
    expect(w.end).toBe(520);
    expect(w.offsetTop).toBe(495 * 40);
    expect(w.end - w.start).toBeLessThan(40);
  });

  it("at the bottom, the last rows", () => {
    const heights = Array.from({ length: 100 }, (_, i) => (i % 2 ? 30 : 50));
    const w = visibleWindow(heights, 4000 - 300, 300, 0);
    expect(w.end).toBe(100);
    expect(heightBefore(heights, w.start)).toBe(w.offsetTop);
  });

  it("an empty list", () => {
    expect(visibleWindow([], 0, 500)).toEqual({ start: 0, end: 0, offsetTop: 0, total: 0 });
  });
});
