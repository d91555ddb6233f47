"""Writes N signed Segment track events, one per line as `<X-Signature>\t<body>`, for the
load benchmark (scripts/bench-serve). Each event has its own messageId and userId, and the
four shipped Segment rules' events come in turn, so every request is a first delivery that
matches a rule. The events are dated now: ingest refuses signed events dated over 7 days ago.

Usage: python sign_bodies.py SECRET COUNT PREFIX > bodies.tsv
"""

import hashlib
import hmac
import json
import sys
from datetime import datetime, timedelta, timezone

EVENTS = [
    ("trial_started", lambda i: {"plan": "pro", "source": "google_ads"}),
    ("plan_upgraded", lambda i: {"previous_plan": "starter", "new_plan": "growth"}),
    ("feature_milestone", lambda i: {"milestone": f"{i % 500} reports", "feature_name": "Dashboards"}),
    ("churn_signal", lambda i: {"ltv": 100 + i % 900, "signal_type": "seat_drop", "tenure_days": i % 365}),
]


def main() -> None:
    secret, count, prefix = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3]
    out = sys.stdout
    now = datetime.now(timezone.utc)

    def at(ms_before: int) -> str:
        return (now - timedelta(milliseconds=ms_before)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    for i in range(count):
        name, properties = EVENTS[i % len(EVENTS)]
        user = f"usr_{prefix}_{i}"
        event = {
            "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
            "context": {
                "library": {"name": "analytics-node", "version": "6.2.0"},
                "ip": "108.0.78.21",
                "traits": {"email": f"{user}@example.com", "plan": "starter"},
            },
            "event": name,
            "integrations": {},
            "messageId": f"bench-{prefix}-{i}",
            "properties": properties(i),
            "receivedAt": at(0),
            "sentAt": at(97),
            "timestamp": at(17),
            "originalTimestamp": at(114),
            "type": "track",
            "userId": user,
        }
        body = json.dumps(event, separators=(",", ":"))
        signature = hmac.new(secret, body.encode(), hashlib.sha1).hexdigest()
        out.write(f"{signature}\t{body}\n")


if __name__ == "__main__":
    main()
