import { render } from "preact";
import { App } from "./state/app";
import { Root } from "./ui/Root";
import "./styles.css";

const app = new App();
// Exposed for the end-to-end tests' diagnostics only; the app never reads it.
(window as unknown as { aether: App }).aether = app;
render(<Root app={app} />, document.getElementById("app")!);
void app.boot();
