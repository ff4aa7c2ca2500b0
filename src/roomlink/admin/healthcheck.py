"""``python -m roomlink.admin.healthcheck``: exit 0 when the admin server's /healthz says ok.

The container's HEALTHCHECK runs it (the slim image has no curl). Standard library
only, so that it starts fast. ``ROOMLINK_HEALTH_URL`` overrides the address, which is
the admin server of the image's own config by default.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:9090/healthz"


def main() -> int:
    url = os.environ.get("ROOMLINK_HEALTH_URL") or DEFAULT_URL
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        print(f"unhealthy: {url} answered {err.code}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if body.get("status") != "ok":
        print(f"unhealthy: {json.dumps(body)[:500]}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
