import { useEffect, useState } from "preact/hooks";
import type { App } from "../state/app";
import { useStore } from "../state/store";
import { Auth } from "./Auth";
import { Shell } from "./Shell";

type Theme = "light" | "dark";

function initialTheme(): Theme {
  const saved = localStorage.getItem("aether.theme");
  if (saved === "light" || saved === "dark") return saved;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function Root({ app }: { app: App }) {
  const user = useStore(app.store, (s) => s.user);
  const booting = useStore(app.store, (s) => s.booting);
  const [theme, setTheme] = useState<Theme>(initialTheme);
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
  }, [theme]);
  const toggleTheme = () => {
    const next = theme === "dark" ? "light" : "dark";
    localStorage.setItem("aether.theme", next);
    setTheme(next);
  };
  if (booting && user) return <p class="loading" role="status">Loading…</p>;
  return user ? <Shell app={app} theme={theme} onToggleTheme={toggleTheme} /> : <Auth app={app} />;
}
