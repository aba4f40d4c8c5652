"""A local OTLP/HTTP trace receiver for the e2e stack (loopback only): it keeps the spans the
stack's processes export, so a test can check that one chat is one trace across replicas."""

from __future__ import annotations

import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class TraceStore:
    """Span names and the exporting component, by trace id (hex)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: dict[str, list[tuple[str, str]]] = defaultdict(list)

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self._lock:
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                component = attributes.get("enclave.component", "?")
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self._spans[span.trace_id.hex()].append((component, span.name))

    def spans(self, trace_id: str) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._spans.get(trace_id, []))


def start_receiver() -> tuple[ThreadingHTTPServer, TraceStore]:
    """Serve POST /v1/traces on 127.0.0.1 (a free port) until ``server.shutdown()``."""
    store = TraceStore()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if self.path.endswith("/v1/traces"):
                store.add(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, store
