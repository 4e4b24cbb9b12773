"""A small OpenAI-compatible chat server on 127.0.0.1 for the judge tests (there is no internet here, and the real
API is never called): subclass ``FakeChatServer``, answer ``do_POST`` with ``reply``/``send``, serve it with
``serve``."""

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeChatServer(BaseHTTPRequestHandler):
    """Quiet handler with the two ways to answer ``/v1/chat/completions``."""

    def log_message(self, *args):
        pass

    def send(self, code: int, payload: dict, headers: dict | None = None):
        raw = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def reply(self, body: dict, content: str):
        """A chat completion whose message is ``content``."""
        self.send(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}]})


@contextlib.contextmanager
def serve(handler):
    """Serve ``handler`` on a free loopback port; yields the base URL (``http://127.0.0.1:<port>/v1``)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
