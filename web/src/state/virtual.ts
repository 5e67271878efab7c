// Windowing for the timeline: only the rows near the viewport are in the DOM, whatever the
// length of the history. Heights are measured once rendered and estimated before.

export interface Window {
  start: number;
  end: number; // exclusive
  offsetTop: number; // pixels above `start`
  total: number; // pixels of the whole list
}

/** The rows to render for a viewport at `scrollTop` of `viewport` pixels. */
export function visibleWindow(
  heights: readonly number[],
  scrollTop: number,
  viewport: number,
  overscan = 8,
): Window {
  let total = 0;
  let start = -1;
  let end = heights.length;
  let offsetTop = 0;
  for (let i = 0; i < heights.length; i++) {
    const top = total;
    total += heights[i];
    if (start < 0 && total > scrollTop) {
      start = i;
      offsetTop = top;
    }
    if (start >= 0 && end === heights.length && top >= scrollTop + viewport) end = i;
  }
  if (start < 0) start = Math.max(0, heights.length - 1);
  const from = Math.max(0, start - overscan);
  const to = Math.min(heights.length, end + overscan);
  for (let i = from; i < start; i++) offsetTop -= heights[i];
  return { start: from, end: to, offsetTop: Math.max(0, offsetTop), total };
}

/** Pixels the rows before index `count` take: how far to scroll after prepending them. */
export function heightBefore(heights: readonly number[], count: number): number {
  let sum = 0;
  for (let i = 0; i < count && i < heights.length; i++) sum += heights[i];
  return sum;
}
