// The one way every peer server is fed: `POST /publish` with `{"channel": "...", "body": "..."}`
// hands the message to `deliver(channel, body)` and answers 204. Anything else is a 404.
// Each server prints `listening <port>` once it accepts connections, so the benchmark that
// started it knows where it is.

export function publishing(deliver) {
  return (request, response) => {
    if (request.method !== 'POST' || request.url !== '/publish') {
      if (!response.headersSent) response.writeHead(404).end();
      return;
    }
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
      let message;
      try {
        message = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        response.writeHead(400).end();
        return;
      }
      deliver(String(message.channel), String(message.body));
      response.writeHead(204).end();
    });
  };
}

/// The port from `--port N` (0, any free port, by default).
export function port() {
  const at = process.argv.indexOf('--port');
  return at >= 0 ? Number(process.argv[at + 1]) : 0;
}

export function announce(server) {
  console.log(`listening ${server.address().port}`);
}

// The benchmark closes our standard input when it is done (or dies): stop then.
export function stopWithStdin(server) {
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
