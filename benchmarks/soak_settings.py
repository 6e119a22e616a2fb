"""Settings shared by the soak's processes (the fake, our app, the Authlib app), from
``BENCH_*`` environment variables set by the runner (``benchmarks.soak``). Nothing heavy is
imported here, so each app process holds only its own code."""

from __future__ import annotations

import os

PORT = os.environ.get("BENCH_APP_PORT", "5000")
FAKE_URL = os.environ.get("BENCH_FAKE_URL", "http://127.0.0.1:5001")
USERS = int(os.environ.get("BENCH_USERS", "1000"))
#: Refresh this many seconds before expiry: our margin, and Authlib's leeway.
MARGIN = float(os.environ.get("BENCH_MARGIN", "5"))
CLIENT_ID, CLIENT_SECRET = "soak-client", "soak-secret"
REDIRECT_URI = f"http://127.0.0.1:{PORT}/callback/"
SECRET_KEY = "soak-benchmark-secret-key-not-for-production"
