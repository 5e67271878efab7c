import { useState } from "preact/hooks";
import { messageOf } from "../api/errors";
import type { App } from "../state/app";

export function Auth({ app }: { app: App }) {
  const [mode, setMode] = useState<"signin" | "register">("signin");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const username = String(form.get("username") ?? "").trim();
    const password = String(form.get("password") ?? "");
    setBusy(true);
    setError(null);
    try {
      if (mode === "register") await app.register(username, password, String(form.get("displayName") ?? "").trim());
      else await app.signIn(username, password);
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="auth">
      <h1>AetherConnect</h1>
      <div class="tabs" role="tablist" aria-label="Account">
        <button role="tab" aria-selected={mode === "signin"} onClick={() => setMode("signin")}>
          Sign in
        </button>
        <button role="tab" aria-selected={mode === "register"} onClick={() => setMode("register")}>
          Create account
        </button>
      </div>
      <form onSubmit={submit} aria-label={mode === "signin" ? "Sign in" : "Create account"}>
        <label>
          Username
          <input name="username" autoComplete="username" required minLength={1} autoFocus />
        </label>
        {mode === "register" && (
          <label>
            Display name
            <input name="displayName" autoComplete="nickname" />
          </label>
        )}
        <label>
          Password
          <input name="password" type="password" autoComplete={mode === "signin" ? "current-password" : "new-password"} required />
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {mode === "signin" ? "Sign in" : "Create account"}
        </button>
      </form>
    </main>
  );
}
