// Socket.IO with a room per chat channel, as a Node.js chat server is commonly built: a client
// connects over WebSocket (no long-polling), emits `join` with a channel, and hears `message`
// events of that room. Messages arrive through `POST /publish`.
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { announce, port, publishing, stopWithStdin } from './publish.mjs';

const http = createServer();
const io = new Server(http, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
});
io.on('connection', (socket) => {
  socket.on('join', (channel) => socket.join(String(channel)));
});
// Engine.IO answers its own path; everything else is ours.
http.on('request', (request, response) => {
  if (!request.url.startsWith('/socket.io/')) publishing((channel, body) => {
    io.to(channel).emit('message', { channel, body });
  })(request, response);
});
http.listen(port(), '127.0.0.1', () => announce(http));
stopWithStdin(http);
