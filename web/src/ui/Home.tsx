import { useState } from "preact/hooks";
import { messageOf } from "../api/errors";
import type { App } from "../state/app";

export function Home({ app }: { app: App }) {
  const [error, setError] = useState<string | null>(null);
  const run = (action: (form: FormData) => Promise<void>) => async (event: Event) => {
    event.preventDefault();
    setError(null);
    const formEl = event.currentTarget as HTMLFormElement;
    try {
      await action(new FormData(formEl));
      formEl.reset();
    } catch (e) {
      setError(messageOf(e));
    }
  };
  return (
    <div class="home">
      <h2>Get started</h2>
      <form aria-label="Create a server" onSubmit={run((f) => app.createServer(String(f.get("name") ?? "").trim()))}>
        <label>
          Server name
          <input name="name" required maxLength={100} />
        </label>
        <button class="primary" type="submit">
          Create server
        </button>
      </form>
      <form aria-label="Join a server" onSubmit={run((f) => app.join(String(f.get("code") ?? "")))}>
        <label>
          Invite code
          <input name="code" required autoComplete="off" />
        </label>
        <button class="primary" type="submit">
          Join server
        </button>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
