# Accepts OTLP/HTTP exports and discards them, counting bytes and requests.
import http.server, sys, threading
stats = {"requests": 0, "bytes": 0}
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        self.rfile.read(n)
        stats["requests"] += 1; stats["bytes"] += n
        self.send_response(200); self.send_header("content-type", "application/x-protobuf"); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
    def do_GET(self):
        body = ("%d %d\n" % (stats["requests"], stats["bytes"])).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
