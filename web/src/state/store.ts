// A minimal observable store: the app's state is one immutable object; components read a
// slice with `useStore` and re-render when that slice changes.

import { useEffect, useState } from "preact/hooks";

export class Store<S> {
  private listeners = new Set<() => void>();
  constructor(private state: S) {}

  get(): S {
    return this.state;
  }

  update(change: (state: S) => S): void {
    const next = change(this.state);
    if (next === this.state) return;
    this.state = next;
    for (const listener of this.listeners) listener();
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export function useStore<S, T>(store: Store<S>, select: (state: S) => T): T {
  const [value, setValue] = useState(() => select(store.get()));
  useEffect(() => {
    const check = () => setValue(() => select(store.get()));
    check();
    return store.subscribe(check);
  });
  return value;
}
