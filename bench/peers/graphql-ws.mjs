// A GraphQL subscription server as an Apollo or NestJS stack serves one: `graphql-ws` over `ws`
// with `graphql-js`, `subscription($c: String!) { message(channel: $c) { channel body } }`,
// and an in-memory pub/sub with a set of listeners per channel. Messages arrive through
// `POST /publish`.
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { useServer } from 'graphql-ws/lib/use/ws';
import { buildSchema } from 'graphql';
import { announce, port, publishing, stopWithStdin } from './publish.mjs';

const schema = buildSchema(`
  type Query { ok: Boolean }
  type Message { channel: String! body: String! }
  type Subscription { message(channel: String!): Message! }
`);

const rooms = new Map();

// One subscriber's stream of a channel's messages: queued while it is not waiting for one.
function listen(channel) {
  const queue = [];
  let waiting = null;
  let listeners = rooms.get(channel);
  if (!listeners) {
    listeners = new Set();
    rooms.set(channel, listeners);
  }
  const listener = (message) => {
    if (waiting) {
      const wake = waiting;
      waiting = null;
      wake({ value: { message }, done: false });
    } else {
      queue.push({ message });
    }
  };
  listeners.add(listener);
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    next() {
      if (queue.length > 0) return Promise.resolve({ value: queue.shift(), done: false });
      return new Promise((resolve) => {
        waiting = resolve;
      });
    },
    return() {
      listeners.delete(listener);
      if (listeners.size === 0) rooms.delete(channel);
      if (waiting) waiting({ value: undefined, done: true });
      return Promise.resolve({ value: undefined, done: true });
    },
  };
}

const roots = { subscription: { message: ({ channel }) => listen(channel) } };

const http = createServer(
  publishing((channel, body) => {
    const listeners = rooms.get(channel);
    if (!listeners) return;
    const message = { channel, body };
    for (const listener of listeners) listener(message);
  }),
);
const sockets = new WebSocketServer({ server: http, path: '/graphql', perMessageDeflate: false });
useServer({ schema, roots }, sockets);
http.listen(port(), '127.0.0.1', () => announce(http));
stopWithStdin(http);
