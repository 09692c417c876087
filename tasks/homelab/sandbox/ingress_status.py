"""Stand-in for ingress-nginx's status publisher: each nginx Ingress gets the ingress Service's address.

On the real homelab the ingress-nginx controller writes its LoadBalancer
Service's address into the status of every Ingress it serves; Argo CD counts an
Ingress healthy only once that address is there. The sandbox runs no ingress
controller (its pods are simulated), so this small process does that one job:
every few seconds it reads the Service's status and copies its addresses into
the status of each Ingress of class ``nginx`` whose status differs. It sends
nothing anywhere but the sandbox's API server, and answers ``/healthz`` on
127.0.0.1 once its last pass succeeded.

Run by ``sandbox.up`` as ``python -m homelab.sandbox.ingress_status``.
"""

from __future__ import annotations

import argparse
import http.server
import threading
import time
from typing import Any

INGRESS_CLASS = "nginx"


def wanted_status(service: Any) -> list[dict[str, str]]:
    """The Service's LoadBalancer addresses as an Ingress status lists them ([] until MetalLB assigns one)."""
    found = []
    for entry in ((service or {}).get("status") or {}).get("loadBalancer", {}).get("ingress") or []:
        found.append({k: v for k, v in entry.items() if k in ("ip", "hostname")})
    return found


def served(ingress: dict[str, Any]) -> bool:
    return (ingress.get("spec") or {}).get("ingressClassName") == INGRESS_CLASS


def one_pass(api: Any, core: Any, networking: Any, service_ns: str, service_name: str) -> int:
    """Bring every nginx Ingress's status in line with the Service's; returns how many it patched."""
    from kubernetes.client.exceptions import ApiException

    try:
        service = api.sanitize_for_serialization(core.read_namespaced_service(service_name, service_ns))
    except ApiException as err:
        if err.status != 404:
            raise
        service = None
    addresses = wanted_status(service)
    patched = 0
    for item in api.sanitize_for_serialization(networking.list_ingress_for_all_namespaces()).get("items", []):
        if not served(item):
            continue
        current = ((item.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if current == addresses:
            continue
        body = {"status": {"loadBalancer": {"ingress": addresses}}}
        meta = item["metadata"]
        networking.patch_namespaced_ingress_status(meta["name"], meta["namespace"], body)
        patched += 1
    return patched


class Health:
    """Whether the last pass succeeded, for ``/healthz``."""

    def __init__(self) -> None:
        self.ok = False


def serve_health(port: int, health: Health) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            good = self.path == "/healthz" and health.ok
            self.send_response(200 if good else 503)
            self.end_headers()
            self.wfile.write(b"ok\n" if good else b"not ready\n")

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--context", required=True)
    parser.add_argument("--service", required=True, help="NAMESPACE/NAME of the ingress controller's Service")
    parser.add_argument("--health-port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=3.0)
    args = parser.parse_args()
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=args.kubeconfig, context=args.context)  # type: ignore[no-untyped-call]
    core, networking = client.CoreV1Api(api), client.NetworkingV1Api(api)
    service_ns, _, service_name = args.service.partition("/")
    health = Health()
    serve_health(args.health_port, health)
    while True:
        try:
            patched = one_pass(api, core, networking, service_ns, service_name)
            health.ok = True
            if patched:
                print(f"published the ingress address into {patched} Ingress status(es)", flush=True)
        except Exception as err:  # a stand-in controller keeps going, as a real one would
            health.ok = False
            print(f"pass failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
